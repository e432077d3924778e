"""Reading IMAP responses as aioimaplib hands them over, and writing mailbox names.

aioimaplib returns a command's untagged responses as a list of lines with the ``* ``
stripped, the tagged completion text last, and every literal (``{size}``) as the
``bytearray`` element that follows the line announcing it::

    [b'1 FETCH (UID 7 BODY[] {43}', bytearray(b'From: ...'), b')', b'Fetch completed.']

Servers order FETCH items as they like (Gmail sends ``UID`` after the body), may add
``FLAGS``, and may answer ``n:*`` with a UID below ``n`` (RFC 3501 §6.4.8: ``*`` is the
highest UID, so ``n:*`` is never empty). These functions are pure, so they are tested
on captured responses without a server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence

Line = bytes | bytearray

FETCH_START = re.compile(rb"(?:\* )?\d+ FETCH \(")
UID_ITEM = re.compile(rb"\bUID (\d+)")
SIZE_ITEM = re.compile(rb"\bRFC822\.SIZE (\d+)")
BODY_LITERAL = re.compile(rb"BODY\[\] \{(\d+)\}$")
UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
EXISTS = re.compile(rb"^(?:\* )?(\d+) EXISTS$")
# RFC 3501 §7.2.2: LIST (flags) delimiter name, where the delimiter is a quoted char or NIL.
LIST_DELIMITER = re.compile(rb'^(?:\* )?(?:LIST )?\([^)]*\) (?:NIL|"(\\.|[^"\\])")')


def parse_fetch(lines: Sequence[Line]) -> dict[int, bytes]:
    """UID -> message bytes from the untagged lines of ``UID FETCH ... (UID BODY.PEEK[])``.

    A message is kept only when both its UID and its ``BODY[]`` literal were seen; a
    FETCH that only reports flags, or a body the server sent as NIL, is left out.
    """
    found: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None
    literal_is_body = False
    for line in lines:
        if isinstance(line, bytearray):
            if literal_is_body:
                body = bytes(line)
            literal_is_body = False
            continue
        if FETCH_START.match(line):
            if uid is not None and body is not None:
                found[uid] = body
            uid, body = None, None
        item = UID_ITEM.search(line)
        if item:
            uid = int(item.group(1))
        literal_is_body = bool(BODY_LITERAL.search(line))
    if uid is not None and body is not None:
        found[uid] = body
    return found


def parse_sizes(lines: Sequence[Line]) -> dict[int, int]:
    """UID -> RFC822.SIZE from the untagged lines of ``UID FETCH ... (UID RFC822.SIZE)``."""
    found: dict[int, int] = {}
    for line in lines:
        if isinstance(line, bytearray) or not FETCH_START.match(line):
            continue
        uid, size = UID_ITEM.search(line), SIZE_ITEM.search(line)
        if uid and size:
            found[int(uid.group(1))] = int(size.group(1))
    return found


def uid_set(uids: Iterable[int]) -> str:
    """An RFC 3501 sequence set of UIDs, runs as ranges: ``1:3,7,9:12``."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    start = previous = ordered[0] if ordered else 0
    for uid in ordered[1:]:
        if uid != previous + 1:
            runs.append(f"{start}:{previous}" if previous > start else str(start))
            start = uid
        previous = uid
    if ordered:
        runs.append(f"{start}:{previous}" if previous > start else str(start))
    return ",".join(runs)


def parse_search(lines: Sequence[Line]) -> list[int]:
    """The numbers of ``* SEARCH n n n`` lines (aioimaplib passes only the numbers)."""
    numbers: list[int] = []
    for line in lines:
        if isinstance(line, bytearray):
            continue
        words = line.split()
        if words[:1] == [b"SEARCH"]:
            words = words[1:]
        if words and all(word.isdigit() for word in words):
            numbers.extend(int(word) for word in words)
    return numbers


def parse_uidvalidity(lines: Sequence[Line]) -> int | None:
    """UIDVALIDITY from a SELECT or EXAMINE response (RFC 3501 §2.3.1.1)."""
    for line in lines:
        match = UIDVALIDITY.search(bytes(line))
        if match:
            return int(match.group(1))
    return None


def parse_exists(lines: Sequence[Line]) -> int | None:
    """The message count of a SELECT or EXAMINE response."""
    for line in lines:
        match = EXISTS.match(bytes(line))
        if match:
            return int(match.group(1))
    return None


def parse_delimiter(lines: Sequence[Line]) -> str | None:
    """The hierarchy delimiter from ``LIST "" ""`` (RFC 3501 §6.3.8); None for a flat server."""
    for line in lines:
        match = LIST_DELIMITER.match(bytes(line))
        if match:
            quoted = match.group(1)
            return None if quoted is None else quoted[-1:].decode("ascii")
    return None


def listed(lines: Sequence[Line]) -> bool:
    """Whether a LIST response named any mailbox."""
    return any(LIST_DELIMITER.match(bytes(line)) for line in lines)


def mailbox_name(configured: str, delimiter: str | None) -> str:
    """The quoted wire form of a configured folder name.

    ``/`` in the configuration means the server's hierarchy delimiter (SPEC §2);
    non-ASCII names are sent in modified UTF-7 (RFC 3501 §5.1.3).
    """
    name = configured.replace("/", delimiter) if delimiter else configured
    return quote(encode_modified_utf7(name))


def encode_modified_utf7(name: str) -> str:
    """RFC 3501 §5.1.3: printable ASCII as is (``&`` as ``&-``), the rest as ``&<base64>-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def quote(text: str) -> str:
    """An IMAP quoted string (RFC 3501 §4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def response_text(lines: Sequence[Line]) -> str:
    """The tagged completion text (the last line), for error messages."""
    if not lines:
        return ""
    return bytes(lines[-1]).decode("utf-8", "replace").strip()[:200]
