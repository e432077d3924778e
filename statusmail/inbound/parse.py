"""Intake: parse the bytes, recognise a redelivery, decide what kind of mail this is.

Parsing uses ``email.policy.default`` and never trusts a header to be well formed:
:func:`header_text` turns any header, however broken, into a string or "". A message
with no header fields at all, or beyond the caps on header count and MIME parts, is
refused (``554 5.6.0``): nothing sensible can be made of it, and saying so beats a
dropped connection.

Parsing is bounded (SPEC §3, #16): :func:`prescan` counts MIME
boundaries, delimiter lines and nested containers in the raw bytes with a few C-speed
scans, and refuses a message over a cap before the email package builds a tree of it
(866,000 empty parts took 28 s to parse; the scan refuses them in milliseconds). Encoded
words decode only with real mail charsets (``inbound/charsets.py``), a structured header
with absurd comment nesting is not parsed at all, and a From or Subject the policy
cannot read makes the message unparseable: ``554 5.6.0``, final, never 451.
"""

from __future__ import annotations

import dataclasses
import email
import functools
import hashlib
import re
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import cast

from statusmail.inbound.charsets import real_encoded_words
from statusmail.inbound.envelope import SMTP_SOURCES
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.memo import remember_short
from statusmail.inbound.outcome import Discarded, Reason, Refused
from statusmail.inbound.recipients import Kind, classify_recipient
from statusmail.store.record import already_recorded

MAX_HEADERS = 500
# Bounds on the header section, checked on the bytes before anything parses it: the
# policy's address parser costs about 50 µs per address, so a From listing 300,000
# addresses kept a writer busy for minutes, and a million folded lines cost seconds.
MAX_HEADER_BYTES = 256 * 1024  # the whole header section
MAX_FIELD_BYTES = 64 * 1024  # one field, folded lines and all (DKIM and ARC sets are a few KiB)
MAX_ADDRESSES = 1000  # "@" in one address field: a post has one author and a few recipients
ADDRESS_FIELDS = frozenset({
    b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"delivered-to", b"return-path",
    b"resent-from", b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc",
})
HEADER_END = re.compile(rb"\r?\n\r?\n")
FIELD_START = re.compile(rb"^(?=[^ \t\r\n])", re.MULTILINE)
MAX_PARTS = 200
MAX_DEPTH = 20
MAX_COMMENT_PARENS = 64  # "(" in one structured header; RFC 5322 comments are rare and flat
MAX_BOUNDARY = 200  # octets; RFC 2046 §5.1.1 allows 70
MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
PRIORITY = (Kind.COMMAND, Kind.BOUNCE, Kind.REPLY, Kind.POST)


class CachingPolicy(policy.EmailPolicy):
    """``policy.default``, parsing each header value once.

    The standard policy builds a new header object, with a full RFC 5322 parse, every
    time a header is read: a message's Content-Type alone is parsed again for every
    ``get_content_type()``. The stages read the same few headers many times, and every
    message carries much the same Content-Type, so a bounded cache of (name, value) to
    header object makes reading a header cost a dictionary lookup. Header objects are
    immutable strings, safe to share between messages. Only values of one line's length
    are kept (RFC 5322 §2.1.1), so the cache stays a few megabytes whatever is sent.
    """

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name") or not isinstance(value, str):
            return super().header_fetch_parse(name, value)
        if len(value) > _HEADER_CACHE_VALUE:
            return self.parse_header(name, value)
        key = (name.lower(), value)
        header = _HEADER_CACHE.get(key)
        if header is None:
            header = self.parse_header(name, value)
            if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
                _HEADER_CACHE.clear()  # crude but bounded; refilling costs one parse per header
            _HEADER_CACHE[key] = header
        return header

    def parse_header(self, name: str, value: str) -> object:
        """The policy's parse, decoding only with real charsets; any failure (a line
        break decoded into an address, a surrogate, comments nested thousands deep) is
        :class:`UnreadableHeader`, which the email package's own parser passes on."""
        if "(" in value and value.count("(") > MAX_COMMENT_PARENS and not is_free_text(name):
            raise UnreadableHeader(f"{name}: more than {MAX_COMMENT_PARENS} comment parentheses")
        try:
            return super().header_fetch_parse(name, real_encoded_words(value))
        except (ValueError, UnicodeError, LookupError, RecursionError, IndexError, TypeError, AttributeError) as exc:
            raise UnreadableHeader(f"{name}: {type(exc).__name__}") from None


class UnreadableHeader(ValueError):
    """A header the policy cannot turn into a value."""


_HEADER_CACHE: dict[tuple[str, str], object] = {}
_HEADER_CACHE_SIZE = 4096
_HEADER_CACHE_VALUE = 998  # characters
PARSING = CachingPolicy()


def header_text(msg: EmailMessage, name: str) -> str:
    """A header's decoded value as one string; "" when absent or unreadable.

    Free text in plain ASCII without an encoded word (RFC 2047 §2: they start "=?")
    decodes to itself, unfolded: that is returned without the policy's parse. The
    Subject differs in every message, so the parse cache never helps it, and its parse
    was 0.13 ms of the 0.86 ms the writer spent on a message (bench/ingest.py's).
    """
    if is_free_text(name):
        value = raw_value(msg, name)
        if value is not None and value.isascii() and "=?" not in value:
            return "".join(value.splitlines())
    try:
        value = msg.get(name)
    except Exception:  # unreadable: as it arrived, encoded words and all
        raw = raw_value(msg, name)
        return "" if raw is None else "".join(without_surrogates(raw).splitlines())
    if value is None:
        return ""
    try:
        return without_surrogates(str(value))
    except Exception:
        return ""


def readable_header(msg: EmailMessage, name: str) -> str:
    """A header the message cannot do without, decoded; unparseable when it cannot be
    (``554 5.6.0``: the sender's MTA must not retry what will never parse)."""
    if is_free_text(name):
        raw = raw_value(msg, name)
        if raw is None or (raw.isascii() and "=?" not in raw):
            return "" if raw is None else "".join(raw.splitlines())  # nothing to decode: no parse
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception as exc:
        raise Refused(Reason.UNPARSEABLE, f"{name} header cannot be decoded ({exc})") from None
    if name.lower() != "subject" and ("\r" in text or "\n" in text):
        raise Refused(Reason.UNPARSEABLE, f"{name} header decodes to a line break")
    return without_surrogates(text)


@functools.cache
def is_free_text(name: str) -> bool:
    """Whether the policy reads ``name`` as unstructured text (Subject, Comments, most
    X- fields), not as addresses, dates or MIME parameters."""
    factory = cast(HeaderRegistry, PARSING.header_factory)
    return issubclass(factory.registry.get(name.lower(), factory.default_class), UnstructuredHeader)


def raw_value(msg: EmailMessage, name: str) -> str | None:
    """A header's first value as it arrived (surrogates and all), or None."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def raw_header(msg: EmailMessage, name: str) -> str:
    """A header's first value as it arrived, without the RFC 5322 parse.

    For Message-ID, In-Reply-To and References, which hold no encoded words and are
    searched with a pattern anyway: they differ in every message, so the parse cache
    never helps them, and their full parse was the costliest header read left.
    """
    value = raw_value(msg, name)
    return "" if value is None else without_surrogates(value)


def without_surrogates(text: str) -> str:
    """Undecodable 8-bit header bytes arrive as lone surrogates (RFC 6532 allows UTF-8;
    anything else is junk); read them as UTF-8 where they are, replace them where not,
    so no database driver ever sees a surrogate."""
    if text.isascii() or not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate a codec produced, not an undecodable byte
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@remember_short(_HEADER_CACHE_VALUE, 4096)
def mailboxes(value: str) -> tuple[tuple[str, str], ...]:
    """The (display name, address) pairs of an address header's value (``getaddresses``).

    Remembered for values of one line's length, like the header cache: a company's From
    lines repeat, and the stages read the same one twice (robots, require_one_sender).
    """
    return tuple(getaddresses([value]))


def first_message_id(value: str) -> str:
    match = MESSAGE_ID.search(value)
    return match.group(0) if match else ""


def message_ids(value: str) -> list[str]:
    return MESSAGE_ID.findall(value)


def count_parts(msg: Message, depth: int = 0) -> int:
    """Parts in the MIME tree; raises ValueError past the depth cap."""
    if depth > MAX_DEPTH:
        raise ValueError("MIME tree too deep")
    payload = msg.get_payload() if msg.is_multipart() else None
    if not isinstance(payload, list):
        return 1
    return 1 + sum(count_parts(part, depth + 1) for part in payload if isinstance(part, Message))


def refuse_oversized(mail: Incoming) -> None:
    """Over ``smtp.max_message_bytes``, from any source: refused on the size the transport
    announced (IMAP's RFC822.SIZE, so the bytes were never fetched) or on the bytes."""
    limit = mail.settings.smtp.max_message_bytes
    size = max(mail.envelope.size, len(mail.raw))
    if size > limit:
        raise Refused(Reason.TOO_LARGE, f"{size} bytes, over smtp.max_message_bytes ({limit})")


def header_bounds_problem(raw: bytes) -> str:
    """Why the header section is beyond the bounds parsing may cost, or "".

    Linear scans of the bytes (regular expressions and ``bytes.count`` in C), before
    the email package sees them, so whatever was sent the work is bounded.
    """
    end = HEADER_END.search(raw, 0, MAX_HEADER_BYTES + 4)
    if end is None:
        if len(raw) > MAX_HEADER_BYTES:
            return f"header section over {MAX_HEADER_BYTES} bytes"
        block = raw
    else:
        block = raw[:end.start() + 1]
    if len(block) > MAX_HEADER_BYTES:
        return f"header section over {MAX_HEADER_BYTES} bytes"
    starts = [match.start() for match in FIELD_START.finditer(block)]
    if len(starts) > MAX_HEADERS:
        return f"more than {MAX_HEADERS} header fields"
    for start, stop in zip(starts, [*starts[1:], len(block)]):
        if stop - start > MAX_FIELD_BYTES:
            name = block[start:block.find(b":", start, start + 80)].decode("ascii", "replace")
            return f"header field {name[:80]!r} over {MAX_FIELD_BYTES} bytes"
        colon = block.find(b":", start, min(stop, start + 80))
        if colon > 0 and block[start:colon].strip().lower() in ADDRESS_FIELDS:
            if block.count(b"@", colon, stop) > MAX_ADDRESSES:
                name = block[start:colon].decode("ascii", "replace")
                return f"more than {MAX_ADDRESSES} addresses in {name}"
    return ""


# Both are matched against the message folded to lower case (see prescan).
BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,%d})"|([^\s;"]{1,%d}))' % (MAX_BOUNDARY, MAX_BOUNDARY))
CONTAINER = re.compile(rb"^content-type[ \t]*:[ \t\r\n]*(?:multipart|message)/", re.MULTILINE)


def prescan(raw: bytes) -> str:
    """Which structural cap the raw message crosses, or "" (before any parse).

    Upper bounds on the MIME tree (the header section is :func:`header_bounds_problem`'s),
    each a scan at C speed that stops at the cap: declared boundaries, delimiter lines of
    those boundaries (a part each), and multipart or message containers (the nesting).
    The exact counts after parsing (:func:`count_parts`) still apply; this only keeps the
    parser from ever seeing a message far beyond them.

    The patterns run on a lower-case copy: ASCII folding keeps every offset, so a
    boundary is cut from ``raw`` with its case intact, and a case-sensitive pattern with
    a literal prefix is searched several times faster than ``re.IGNORECASE`` (8.7 MB of
    empty parts: 95 ms before).
    """
    folded = raw.lower()
    if b"multipart/" not in folded and b"message/" not in folded:
        return ""
    if folded.count(b"content-type") > MAX_PARTS and len(CONTAINER.findall(folded)) > MAX_PARTS:
        return f"more than {MAX_PARTS} nested MIME containers"
    boundaries: set[bytes] = set()
    for match in BOUNDARY.finditer(folded):
        group = 1 if match.start(1) >= 0 else 2
        boundaries.add(raw[match.start(group):match.end(group)])
        if len(boundaries) > MAX_PARTS:
            return f"more than {MAX_PARTS} MIME boundaries"
    if boundaries:
        delimiter = re.compile(rb"^--(?:" + b"|".join(re.escape(b) for b in boundaries) + rb")", re.MULTILINE)
        limit = MAX_PARTS + 2 * len(boundaries)  # each multipart: its parts' delimiters, and a close
        for seen, _ in enumerate(delimiter.finditer(raw)):
            if seen > limit:
                return f"more than {MAX_PARTS} MIME parts"
    return ""


def parse_message(mail: Incoming) -> None:
    """Parse the raw bytes; refuse what has no headers or exceeds the structural caps.

    What the email package cannot parse at all (a RecursionError on deep nesting, say)
    is refused for good, like any other unparseable message: retrying cannot help.
    """
    raw = mail.raw
    problem = header_bounds_problem(raw)
    if problem:
        raise Refused(Reason.UNPARSEABLE, problem)
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"")
        mail.defects.append("NUL bytes removed")
    crossed = prescan(raw)
    if crossed:
        raise Refused(Reason.UNPARSEABLE, crossed + " (refused before parsing)")
    try:
        msg = email.message_from_bytes(raw, policy=PARSING)
    except (RecursionError, MemoryError):
        raise Refused(Reason.UNPARSEABLE, "the email parser gave up on its structure (nesting)") from None
    except UnreadableHeader as exc:
        raise Refused(Reason.UNPARSEABLE, f"the MIME structure cannot be parsed ({exc})") from None
    except Exception as exc:
        raise Refused(Reason.UNPARSEABLE, f"the email parser failed: {type(exc).__name__}") from None
    assert isinstance(msg, EmailMessage)
    mail.msg = msg
    mail.defects.extend(type(d).__name__ for d in msg.defects)
    if not msg.keys():
        raise Refused(Reason.UNPARSEABLE, "no header fields found")
    if len(msg.keys()) > MAX_HEADERS:
        raise Refused(Reason.UNPARSEABLE, f"more than {MAX_HEADERS} header fields")
    try:
        parts = count_parts(msg)
    except (ValueError, RecursionError):
        raise Refused(Reason.UNPARSEABLE, f"MIME nesting deeper than {MAX_DEPTH}") from None
    if parts > MAX_PARTS:
        raise Refused(Reason.UNPARSEABLE, f"more than {MAX_PARTS} MIME parts")
    for name in ("From", "Subject"):
        readable_header(msg, name)
    mail.message_id = first_message_id(raw_header(msg, "Message-ID"))


def read_return_path(mail: Incoming) -> None:
    """Without an SMTP envelope (IMAP, ``inject`` without ``--mail-from``, ``reprocess``),
    the envelope sender is the topmost Return-Path, which the final delivery wrote from
    MAIL FROM (RFC 5321 §4.4), so the envelope checks apply to every source."""
    envelope = mail.envelope
    if envelope.source in SMTP_SOURCES or (envelope.source == "inject" and envelope.mail_from):
        return
    value = raw_value(mail.message, "Return-Path")
    if value is None:
        # No record of the envelope: take the From address, as an MTA that saw only
        # the header would, so that an empty sender is never mistaken for a bounce's.
        if envelope.mail_from:
            return
        value = raw_value(mail.message, "From") or ""
    addresses = [address for _, address in mailboxes(without_surrogates(value)) if address]
    mail_from = addresses[0] if addresses else ("<>" if "<>" in value.replace(" ", "") else "")
    if mail_from:
        mail.envelope = dataclasses.replace(envelope, mail_from=mail_from)


def dedupe_key_for(message_id: str, raw: bytes, sender: str = "") -> str:
    """One key per message and sender: its Message-ID, or a hash of the bytes when it has
    none. Per sender (SPEC §3): whoever learns a Message-ID cannot suppress someone
    else's post by sending it first."""
    if message_id:
        return "mid:" + hashlib.sha256(f"{sender}\n{message_id}".encode("utf-8", "surrogateescape")).hexdigest()
    return "raw:" + hashlib.sha256(raw).hexdigest()


def from_address(mail: Incoming) -> str:
    """The first From address as identity knows it (base address, lowercase), or ""."""
    from statusmail.store.users import base_address

    found = [address for _, address in mailboxes(header_text(mail.message, "From")) if address]
    return base_address(found[0], mail.settings.policy.recipient_delimiter) if found else ""


def refuse_duplicate(mail: Incoming) -> None:
    """A Message-ID already stored is answered 250 and changes nothing (SPEC §3)."""
    mail.dedupe_key = dedupe_key_for(mail.message_id, mail.raw, from_address(mail))
    seen = already_recorded(mail.session, mail.dedupe_key)
    if seen is not None:
        raise Discarded(Reason.DUPLICATE, f"same message as log entry {seen}")


def classify(mail: Incoming) -> None:
    """Post, reply, command or bounce, from the recipient addresses.

    The envelope decides; a message injected without one is addressed by its To, Cc
    and Delivered-To headers, and failing those goes to the status address.
    """
    candidates = list(mail.envelope.rcpt_tos)
    if not candidates:
        headers = [header_text(mail.message, name) for name in ("Delivered-To", "To", "Cc")]
        candidates = [address for _, address in getaddresses(headers) if address]
    found = [r for r in (classify_recipient(a, mail.settings) for a in candidates) if r is not None]
    if not found:
        if mail.envelope.rcpt_tos:
            raise Refused(Reason.UNKNOWN_RECIPIENT, "no recipient is a statusmail address")
        mail.kind = Kind.POST
        return
    best = min(found, key=lambda r: PRIORITY.index(r.kind))
    mail.kind, mail.token = best.kind, best.detail
