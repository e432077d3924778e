"""What hold patterns are matched against (SPEC §5): the text with its disguises removed.

A pattern like ``Confidential`` must still match ``Conf\\u200bidential`` (a zero-width
space), ``Confi\\u00addential`` (a soft hyphen), ``Ｃｏｎｆｉｄｅｎｔｉａｌ`` (full-width),
``Confide\\u0301ntial`` (a combining accent) and ``Сonfidential`` (a Cyrillic С). So the
text is NFKC-normalized, format characters (Unicode category Cf) and combining marks
are dropped, and every remaining non-ASCII letter that Unicode's confusables data
(UTS #39 ``confusables.txt``, via the maintained ``confusable_homoglyphs`` package)
lists as a look-alike of a Latin letter or digit is replaced by it. The folded text is
only ever matched, never stored or shown: it is a hodgepodge, as UTS #39 warns.
"""

from __future__ import annotations

import functools
import unicodedata

from confusable_homoglyphs import confusables


def fold(text: str) -> str:
    """``text`` with invisible characters, marks and look-alikes folded away."""
    if text.isascii():
        return text  # ordinary mail: nothing to fold, no cost
    # Look-alikes first (NFKC turns some of them into other scripts' letters: U+03F9
    # GREEK CAPITAL LUNATE SIGMA, a C to the eye, becomes Σ), then compatibility forms.
    looks = "".join(ch if ch.isascii() else _latin(ch) for ch in text)
    decomposed = unicodedata.normalize("NFKD", looks)
    kept = "".join(ch for ch in decomposed if not _invisible(ch))
    composed = unicodedata.normalize("NFKC", kept)
    if composed.isascii():
        return composed
    return "".join(ch if ch.isascii() else _latin(ch) for ch in composed)


@functools.lru_cache(maxsize=4096)
def _invisible(ch: str) -> bool:
    """Format characters (zero-width space, soft hyphen, bidi controls...) and
    combining marks: nothing a reader sees as a letter of its own."""
    return not ch.isascii() and unicodedata.category(ch) in ("Cf", "Mn", "Me")


@functools.lru_cache(maxsize=4096)
def _latin(ch: str) -> str:
    """The Latin letter or digit ``ch`` is confusable with, keeping its case where the
    data allows; ``ch`` itself when it looks like none."""
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"])
    if not found:
        return ch
    candidates = [h["c"] for h in found[0]["homoglyphs"] if h["c"].isascii() and h["c"].isalnum()]
    if not candidates:
        return ch
    if ch.isupper() and candidates == ["l"]:
        return "I"  # UTS #39's prototype for I-like letters is l; hold patterns say I
    same_case = [c for c in candidates if c.isalpha() and c.isupper() == ch.isupper()]
    return (same_case or candidates)[0]
