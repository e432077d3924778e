"""Atom feeds (RFC 4287) with feedgen: the reader's feed and one per tag.

Entry ids are tag URIs (RFC 4151) made of the gateway's domain, the post's creation day
and its id: the same post has the same id in every feed and every run, whatever URL
the web is reached under. The feed's own id is its URL without the secret token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from feedgen.feed import FeedGenerator

from statusmail.config import Settings
from statusmail.outbound.notify import first_line

# XML 1.0 allows no C0 controls but tab, LF, CR (and no lone surrogates).
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
ENTRIES = 50


def xml_text(text: str) -> str:
    return NOT_XML.sub("\ufffd", text)


def entry_id(settings: Settings, view: dict[str, Any]) -> str:
    return f"tag:{settings.domain},{view['created_iso'][:10]}:post/{view['id']}"


def render(settings: Settings, title: str, path: str, views: Sequence[dict[str, Any]], updated_iso: str) -> bytes:
    """The feed document for ``views`` (post views from :mod:`statusmail.web.queries`)."""
    base = settings.web_url
    generator = FeedGenerator()
    generator.id(f"{base}{path}")
    generator.title(xml_text(title))
    generator.author({"name": xml_text(settings.gateway.site_name)})
    # The HTML page this is the feed of (RFC 4287 §4.2.7.2): the reader's feed is the
    # front page, a tag's feed the tag's page.
    page = "/" if path == "/feed.atom" else path.removesuffix(".atom")
    generator.link(href=f"{base}{page}", rel="alternate", type="text/html")
    generator.updated(updated_iso)
    generator.generator("statusmail")
    for view in views:
        entry = generator.add_entry(order="append")
        entry.id(entry_id(settings, view))
        heading = first_line(view["body"], 100) or "(no text)"
        entry.title(xml_text(f"Re: {view['thread_subject']}" if view["is_reply"] else heading))
        entry.author({"name": xml_text(view["author_name"]), "email": view["author_email"]})
        entry.link(href=f"{base}/posts/{view['thread_id']}#post-{view['id']}", rel="alternate", type="text/html")
        entry.content(xml_text(view["body"]), type="text")
        entry.published(view["created_iso"])
        entry.updated(view["created_iso"])
        for tag in view["tags"]:
            entry.category(term=tag, label=f"#{tag}", scheme=f"{base}/tags/")
    return generator.atom_str(pretty=False)
