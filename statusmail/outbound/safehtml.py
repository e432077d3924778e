"""The one place where HTML is made from user text.

User text is escaped first and only then are URLs turned into links, so nothing the
user typed can become markup. No HTML a user sent is ever kept: incoming HTML is
converted to text (``inbound/htmltext.py``). Should a feature ever keep user HTML, its
sanitizer belongs here, and it is nh3 (bleach stopped releases in June 2026).
"""

from __future__ import annotations

import re

import markupsafe

# Matches in already-escaped text: no <, >, " or whitespace can be inside a URL here.
URL = re.compile(r"\bhttps?://[^\s<>\"']+", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?)]'"


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

