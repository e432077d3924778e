"""Outlook's conversation headers: ``Thread-Index`` and ``Thread-Topic``.

Outlook groups and orders a conversation by its conversation index (MS-OXOMSG
§2.2.1.3, PidTagConversationIndex), sent base64-encoded as ``Thread-Index``, and by
``Thread-Topic``, the subject without reply prefixes (DESIGN decision 6: threads
look like threads in every client).

Layout of the index:

* a 22-byte header block: the reserved byte 0x01, five bytes of FILETIME, and the
  16-byte conversation GUID. FILETIME counts 100 ns since 1601-01-01 UTC. We write
  the layout Outlook desktop puts in the Thread-Index header it sends (and that the
  earlier MS-OXOMSG revisions describe): bits 55..16 of the FILETIME, i.e. the top
  eight bits, which are 0x01 for every date from 1829 to 2057 and so coincide with
  the reserved byte, and the low 16 bits are dropped (6.5 ms resolution). Exchange
  Online writes the current revision's variant, 0x01 followed by bits 63..24; its
  second byte is then 0x01 (a desktop-layout second byte of 0x01 would mean 1830),
  which is how :func:`child_thread_index` tells the two apart when reading.
* one 5-byte child block per reply: the delta code bit, 31 bits of time delta and
  8 random bits. The delta is the time since the header block's time; when it is
  below 2**49 (about 1.78 years; the spec's "high part AND 0x00FE0000 is zero") the
  delta code is 0 and bits 48..18 are stored, else 1 and bits 53..23.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from datetime import UTC, datetime

__all__ = ["child_thread_index", "descendant_thread_index", "new_thread_index", "thread_topic"]

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_HEADER_LEN = 22
_CHILD_LEN = 5
_RESERVED = 0x01
_MASK40 = (1 << 40) - 1
_MASK31 = (1 << 31) - 1
_SHORT_DELTA_LIMIT = 1 << 49  # MS-OXOMSG §2.2.1.3: delta code 0 below this
# The desktop layout can hold FILETIMEs whose top byte is 0x01 (1829 .. 2057).
_FT_MIN = 1 << 56
_FT_MAX = (2 << 56) - 1

# Reply and forward prefixes of common clients; compared case-insensitively.
_SUBJECT_PREFIXES = frozenset(
    {
        "re", "fw", "fwd", "aw", "wg", "sv", "vs", "vb", "antw", "antwort", "doorst",
        "tr", "rif", "r", "i", "rv", "enc", "res", "odp", "pd", "ynt", "ilt", "ref",
        "回复", "答复", "转发", "回覆", "轉寄",
    }
)


def new_thread_index(when: datetime, guid: bytes | None = None) -> str:
    """A root conversation index (22 bytes, base64) for a thread started at ``when``.

    ``guid`` (16 bytes) names the conversation; a random one is made when None. Store
    the result with the thread: every later message extends it.
    """
    if guid is None:
        guid = uuid.uuid4().bytes
    if len(guid) != 16:
        raise ValueError(f"a conversation GUID has 16 bytes, got {len(guid)}")
    filetime = min(max(_filetime(when), _FT_MIN), _FT_MAX)
    header = bytes([_RESERVED]) + ((filetime >> 16) & _MASK40).to_bytes(5, "big") + guid
    return base64.b64encode(header).decode("ascii")


def child_thread_index(parent: str, when: datetime, parent_time: datetime | None = None) -> str:
    """``parent`` (base64) extended by one child block for a message sent at ``when``.

    The block never records an earlier time than the parent's latest block or
    ``parent_time`` (the parent message's own time, if known), so a clock that runs
    behind cannot sort a reply above what it answers.

    Raises ValueError if ``parent`` is not a conversation index.
    """
    index = _decode(parent)
    header_time = _header_filetime(index)
    delta = max(_filetime(when) - header_time, _latest_child_delta(index), 0)
    if parent_time is not None:
        delta = max(delta, _filetime(parent_time) - header_time)
    if delta < _SHORT_DELTA_LIMIT:
        block = (delta >> 18) & _MASK31
    else:
        block = (1 << 31) | ((delta >> 23) & _MASK31)
    child = ((block << 8) | secrets.randbits(8)).to_bytes(_CHILD_LEN, "big")
    return base64.b64encode(index + child).decode("ascii")


def descendant_thread_index(root: str, path: list[tuple[datetime, int]]) -> str:
    """The index of a post ``len(path)`` levels below the root, the same in every copy.

    ``path`` holds, for each post from the root's first reply down to this one, its
    time and a number naming it (its id). Each level is one child block whose eight
    random bits come from that number, so every reader's mail about a post carries the
    same index and a reply's index extends its parent's: Outlook's conversation view
    then orders and nests the mail as the posts' tree. Raises ValueError for a ``root``
    that is not a conversation index.
    """
    index = _decode(root)
    header_time = _header_filetime(index)
    latest = 0
    for when, name in path:
        delta = max(_filetime(when) - header_time, latest, 0)
        latest = delta
        if delta < _SHORT_DELTA_LIMIT:
            block = (delta >> 18) & _MASK31
        else:
            block = (1 << 31) | ((delta >> 23) & _MASK31)
        index += ((block << 8) | (name & 0xFF)).to_bytes(_CHILD_LEN, "big")
    return base64.b64encode(index).decode("ascii")


def thread_topic(subject: str) -> str:
    """The subject without reply/forward prefixes (``Re:``, ``Fwd:``, ``AW:``,
    ``Re[2]:`` …), folded into one line: the value of ``Thread-Topic``."""
    text = " ".join(subject.split())
    while True:
        stripped = _strip_one_prefix(text)
        if stripped == text:
            return text
        text = stripped


def _filetime(when: datetime) -> int:
    """100 ns intervals since 1601-01-01 UTC; a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _decode(index: str) -> bytes:
    text = "".join(index.split())
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Thread-Index is not base64") from exc
    if len(raw) < _HEADER_LEN or (len(raw) - _HEADER_LEN) % _CHILD_LEN or raw[0] != _RESERVED:
        raise ValueError(f"Thread-Index of {len(raw)} bytes is not a conversation index")
    return raw


def _header_filetime(index: bytes) -> int:
    stamp = int.from_bytes(index[1:6], "big")
    if index[1] == _RESERVED:
        return stamp << 24  # Exchange Online layout: 0x01, then bits 63..24
    return (_RESERVED << 56) | (stamp << 16)  # Outlook desktop layout: bits 55..16


def _latest_child_delta(index: bytes) -> int:
    latest = 0
    for start in range(_HEADER_LEN, len(index), _CHILD_LEN):
        block = int.from_bytes(index[start : start + 4], "big")
        stored = block & _MASK31
        delta = stored << 23 if block >> 31 else stored << 18
        latest = max(latest, delta)
    return latest


def _strip_one_prefix(text: str) -> str:
    for colon in (":", "："):
        head, sep, rest = text.partition(colon)
        if not sep or len(head) > 12:
            continue
        word = head.strip().lower()
        # Counted forms: "Re[2]", "Re(2)", "Re^2" (some clients number replies).
        for opener in ("[", "(", "^"):
            if opener in word:
                word = word.split(opener, 1)[0].strip()
        if word in _SUBJECT_PREFIXES:
            return rest.strip()
    return text
