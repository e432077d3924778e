"""The brevity rule: how long a post is, and whether it may be posted.

Length is counted as a reader sees it (SPEC §3): NFC code points after collapsing runs
of whitespace, each URL counted as 23 characters however long it is (the length of a
shortened link), so a long link never costs someone their update.
"""

from __future__ import annotations

import re
import unicodedata

URL_LENGTH = 23
# Bounded: one character class and a possessive-free simple repetition; no nesting.
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, ends stripped."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def count_chars(text: str) -> int:
    """The post's length under the brevity rule."""
    flat = normalize(text)
    urls = URL.findall(flat)
    return len(flat) - sum(len(u) for u in urls) + URL_LENGTH * len(urls)
