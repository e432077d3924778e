"""Decide which part of a parsed message holds the text, and what of it is new.

The body is the first inline ``text/plain`` part outside attachments and
forwarded ``message/rfc822`` parts; when there is none (or it is blank) the
first inline ``text/html`` part is converted with ``htmltext``. Bytes are
decoded with the declared charset, then UTF-8, windows-1252 and latin-1, so
a wrong or unknown charset never loses the message; only real mail charsets
decode (``charsets.py``: no ``unicode_escape``, no UTF-7 lone surrogates). The decoded text is
trimmed of quotes and signatures by ``trimming``.

Messages arrive badly broken (missing boundaries, bogus charsets, 8-bit
headers); ``extract_body`` never raises. Input is capped so the work is
bounded whatever the sender sends.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

from statusmail.inbound import charsets
from statusmail.inbound.brevity import BLANKS
from statusmail.inbound.flowed import unflow
from statusmail.inbound.htmltext import html_to_text
from statusmail.inbound.trimming import MAX_CHARS, trim_reply

log = logging.getLogger(__name__)

MAX_PART_BYTES = 2_000_000
MAX_PARTS = 200
MAX_HTML_CHARS = 1_000_000
FALLBACK_CHARSETS = ("utf-8", "windows-1252", "latin-1")
LONG_BLANKS = re.compile(rf"(?:[^\S\n]|[{BLANKS}]){{64,}}")


@dataclass(frozen=True)
class Body:
    text: str
    removed: str
    from_html: bool


def extract_body(msg: EmailMessage) -> Body:
    """The new text of ``msg`` and what was cut from it, never raising."""
    try:
        body = _extract(msg)
    except Exception:  # a broken message must become a decision, not a crash
        log.warning("could not extract a body; treating it as empty", exc_info=True)
        return Body(text="", removed="", from_html=False)
    if charsets.has_surrogates(body.text) or charsets.has_surrogates(body.removed):
        from statusmail.inbound.parse import without_surrogates as clean

        return Body(text=clean(body.text), removed=clean(body.removed), from_html=body.from_html)
    return body


def _extract(msg: Message) -> Body:
    plain, html = find_text_parts(msg)
    if plain is not None:
        text = decode_part(plain, MAX_CHARS)
        if is_flowed(plain):
            text = unflow(text, delsp=flowed_delsp(plain))
        if text.strip() or html is None:
            trimmed = trim_reply(text)
            return Body(text=trimmed.text, removed=trimmed.removed, from_html=False)
    if html is not None:
        return body_from_html(decode_part(html, MAX_HTML_CHARS))
    return Body(text="", removed="", from_html=False)


def is_flowed(part: Message) -> bool:
    try:
        return str(part.get_param("format", "", header="content-type")).lower() == "flowed"
    except Exception:  # broken parameters: read the text as it is
        return False


def flowed_delsp(part: Message) -> bool:
    try:
        return str(part.get_param("delsp", "", header="content-type")).lower() == "yes"
    except Exception:
        return False


def find_text_parts(msg: Message) -> tuple[Message | None, Message | None]:
    """The first inline text/plain and text/html parts, attachments skipped."""
    plain: Message | None = None
    html: Message | None = None
    stack: list[Message] = [msg]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop(0)
        seen += 1
        ctype = _content_type(part)
        if ctype == "message/rfc822" or (part is not msg and is_attachment(part)):
            continue  # a forwarded message or a file, not what the sender typed
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack[0:0] = [c for c in children if isinstance(c, Message)]
                continue
        if ctype == "text/plain" or (ctype.startswith("multipart/") and part is msg):
            plain = plain or part  # a multipart without parts: read it as text
        elif ctype == "text/html":
            html = html or part
        if plain is not None and html is not None:
            break
    return plain, html


def is_attachment(part: Message) -> bool:
    """Content-Disposition: attachment, or any part that carries a filename."""
    try:
        disposition = (part.get_content_disposition() or "").lower()
        return disposition == "attachment" or bool(part.get_filename())
    except Exception:  # broken RFC 2231 parameters
        return False


def decode_part(part: Message, max_chars: int) -> str:
    """The part's text: declared charset, then UTF-8, windows-1252, latin-1."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the library could not undo
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    text = decode_bytes(payload[:MAX_PART_BYTES], declared_charset(part))
    # Long runs of blanks collapse before the cap (they collapse in the post anyway), so
    # 100,000 spaces cannot push the sender's words past it.
    return LONG_BLANKS.sub(" ", text.replace("\x00", ""))[:max_chars]


def declared_charset(part: Message) -> str | None:
    """The charset parameter, if it names a real mail charset."""
    try:
        charset = part.get_content_charset()
    except Exception:  # broken parameters
        return None
    return charsets.mail_charset(charset) if charset else None


def decode_bytes(payload: bytes, declared: str | None) -> str:
    """Decode strictly with each candidate; latin-1 always succeeds."""
    for charset in ((declared,) if declared else ()) + FALLBACK_CHARSETS:
        text = charsets.decode(payload, charset)
        if text is not None:
            return text
    return payload.decode("latin-1")


def body_from_html(html: str) -> Body:
    """Cut quotes by DOM, render, then trim the text as a safety net."""
    kept = html_to_text(html)
    trimmed = trim_reply(kept)
    full = html_to_text(html, cut_quotes=False)
    # What the DOM cut is what the full rendering has beyond the kept text.
    dom_removed = full[len(kept):] if full.startswith(kept) else full
    removed = "\n".join(part for part in (trimmed.removed, dom_removed.strip()) if part)
    return Body(text=trimmed.text, removed=removed, from_html=True)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"
