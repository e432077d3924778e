"""Finding ``#tags`` and ``@mentions`` in a post's text.

A tag is ``#`` followed by a word, not preceded by a word character or ``&`` (so
``C#`` and ``&#39;`` are not tags); tags are case-insensitive and stored lowercase.
A mention is ``@handle`` not preceded by a word character, so mail addresses are not
mentions. Handles are resolved to users by the caller.
"""

from __future__ import annotations

import re

TAG = re.compile(r"(?<![\w&])#(\w[\w-]{0,63})")
MENTION = re.compile(r"(?<![\w.@+-])@(\w[\w.-]{0,63})")


def find_tags(text: str) -> list[str]:
    """Distinct lowercase tags in order of first appearance, without ``#``."""
    seen: dict[str, None] = {}
    for match in TAG.finditer(text):
        seen.setdefault(match.group(1).rstrip("-").lower(), None)
    return [t for t in seen if t]


def find_handles(text: str) -> list[str]:
    """Distinct lowercase handles mentioned, without ``@``."""
    seen: dict[str, None] = {}
    for match in MENTION.finditer(text):
        seen.setdefault(match.group(1).rstrip(".-").lower(), None)
    return [h for h in seen if h]
