"""The SMTP envelope of one message, however it arrived."""

from __future__ import annotations

from dataclasses import dataclass, field

# Sources that carry a real SMTP envelope. The others (IMAP, inject without --mail-from,
# reprocess) take the envelope sender from the message's Return-Path, which the final
# delivery wrote from MAIL FROM (RFC 5321 §4.4): see parse.read_return_path.
SMTP_SOURCES = ("smtp", "lmtp")


@dataclass(frozen=True)
class Envelope:
    mail_from: str = ""
    rcpt_tos: tuple[str, ...] = ()
    peer: str = ""
    source: str = "smtp"  # smtp | lmtp | imap | inject | reprocess
    # Names of checks the transport already did (e.g. "authres" trusted by IMAP config).
    notes: tuple[str, ...] = field(default=())
    # The size the transport announced before sending the bytes (IMAP RFC822.SIZE): a
    # message over smtp.max_message_bytes is refused on it, and ``raw`` may then be empty.
    size: int = 0
