"""Bounded memory for pure functions of what senders wrote.

Mail repeats itself: a company's mail carries the same few hundred From lines and a
handful of domains, so results computed from them are worth keeping. The text is the
sender's, though, so a cache keyed by it must not let a sender of huge headers fill
the gateway's memory: only strings up to a length are kept, longer ones are computed
every time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def remember_short(max_chars: int, entries: int) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
    """``functools.lru_cache(entries)`` for strings of at most ``max_chars`` characters."""
    def decorate(compute: Callable[[str], T]) -> Callable[[str], T]:
        cached = functools.lru_cache(maxsize=entries)(compute)

        @functools.wraps(compute)
        def lookup(text: str) -> T:
            return cached(text) if len(text) <= max_chars else compute(text)

        lookup.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return lookup
    return decorate
