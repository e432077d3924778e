"""The one place where HTML is made from user text or kept from user HTML.

User text is escaped first and only then are URLs turned into links, so nothing the
user typed can become markup. Any HTML that must be kept goes through nh3 (the
maintained successor of bleach, which stopped releases in June 2026) with a small
allow-list.
"""

from __future__ import annotations

import re

import markupsafe
import nh3

# Matches in already-escaped text: no <, >, " or whitespace can be inside a URL here.
URL = re.compile(r"\bhttps?://[^\s<>\"']+", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?)]'"
ALLOWED_TAGS = {"a", "b", "blockquote", "br", "code", "em", "i", "li", "ol", "p", "pre", "strong", "ul"}


def linkify(text: str) -> markupsafe.Markup:
    """Escape ``text`` for HTML and turn http(s) URLs into links; newlines become <br>."""
    escaped = str(markupsafe.escape(text))

    def link(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in TRAILING_PUNCTUATION:
            tail = url[-1] + tail
            url = url[:-1]
        return f'<a href="{url}" style="color:#1a56db">{url}</a>{tail}'

    return markupsafe.Markup(URL.sub(link, escaped).replace("\n", "<br>\n"))


def sanitize(html: str) -> str:
    """Keep only harmless markup from HTML we did not write."""
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer")
