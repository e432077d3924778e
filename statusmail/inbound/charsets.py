"""Which charsets may decode mail: the real ones, never Python's own codecs.

A charset name in a message (a Content-Type parameter, an RFC 2047 encoded word, an
RFC 2231 parameter) is looked up with :func:`codecs.lookup`, which also knows codecs no
mail client writes: ``unicode_escape`` turns ``\\u000a`` into a line break in a From
name, ``raw_unicode_escape`` and UTF-7 produce lone surrogates that no database driver
accepts. Only text codecs that are mail charsets decode; text that still comes out with
a surrogate was not decoded, and the caller falls back (a body) or refuses (a header).
"""

from __future__ import annotations

import codecs
import functools
import re

# Text codecs that Python ships but no mail charset registry (IANA) names: escapes,
# IDNA/punycode transforms, Windows-only code pages by alias, and the placeholder codecs.
PYTHON_ONLY = frozenset({"unicode_escape", "raw_unicode_escape", "escape", "idna", "punycode", "undefined",
                         "mbcs", "oem", "charmap", "unicode_internal", "palmos"})
# RFC 2047 §2: =?charset?encoding?encoded-text?=, charset maybe with an RFC 2231 *language.
ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,64})((?:\*[^?\s]{0,32})?\?[bBqQ]\?)")
REPLACEMENT = "unknown-8bit"  # what email.charset calls bytes of no known charset


@functools.lru_cache(maxsize=512)
def mail_charset(name: str) -> str | None:
    """The codec's name when ``name`` is a real mail charset, else None."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError, UnicodeError):
        return None
    canonical = info.name.replace("-", "_").lower()
    if not getattr(info, "_is_text_encoding", True) or canonical in PYTHON_ONLY:
        return None
    return info.name


def has_surrogates(text: str) -> bool:
    return not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text)


def decode(payload: bytes, charset: str) -> str | None:
    """``payload`` in ``charset``, strictly; None when that is no mail charset or the
    bytes are not text in it (including UTF-7 that decodes to a lone surrogate)."""
    codec = mail_charset(charset)
    if codec is None:
        return None
    try:
        text = payload.decode(codec)
    except (UnicodeError, LookupError):
        return None
    return None if has_surrogates(text) else text


def real_encoded_words(value: str) -> str:
    """``value`` with every encoded word of a non-mail charset marked ``unknown-8bit``,
    so the email package leaves its bytes undecoded (and reports a defect) instead of
    running them through a Python codec."""
    if "=?" not in value:
        return value
    return ENCODED_WORD.sub(lambda m: m.group(0) if mail_charset(m.group(1))
                            else f"=?{REPLACEMENT}{m.group(2)}", value)
