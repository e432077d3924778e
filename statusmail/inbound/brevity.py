"""The brevity rule: what a post's text is, how long it is, and whether it may be posted.

One normalization (SPEC §3 "What is stored is what was counted"): :func:`normalize` is
the text that is stored, counted and mailed. NFC; runs of spaces, Unicode spaces and
the blank look-alikes (U+2800 BRAILLE PATTERN BLANK, Hangul fillers) collapsed to one
space; lines stripped; at most one blank line in a row; no leading or trailing blank.
Length is counted as a reader sees it: code points of that text with each run of
whitespace (a line break, a blank line) as one, and each URL of at most
:data:`MAX_URL_LENGTH` characters as 23 (the length of a shortened link), so a link
never costs someone their update and a 150,000-character "URL" is no way around it.
"""

from __future__ import annotations

import re
import unicodedata

URL_LENGTH = 23
MAX_URL_LENGTH = 2000  # longer "URLs" count their full length
# Bounded: one character class and a possessive-free simple repetition; no nesting.
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
# Characters that render as nothing but are not whitespace to Python (Unicode's
# "blank" look-alikes): they collapse like spaces, or they smuggle length and mentions.
BLANKS = "\u2800\u3164\u115f\u1160\uffa0\u180e"
HORIZONTAL = re.compile(rf"(?:[^\S\n]|[{BLANKS}])+")
WHITESPACE = re.compile(rf"[\s{BLANKS}]+")
BLANK_LINES = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """The post's text as stored, counted and mailed (see the module's docstring)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = HORIZONTAL.sub(" ", text)
    text = "\n".join(line.strip(" ") for line in text.split("\n"))
    return BLANK_LINES.sub("\n\n", text).strip("\n ")


def count_chars(text: str) -> int:
    """The post's length under the brevity rule."""
    flat = WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
    length = len(flat)
    for url in URL.findall(flat):
        if len(url) <= MAX_URL_LENGTH:
            length += URL_LENGTH - len(url)
    return length
