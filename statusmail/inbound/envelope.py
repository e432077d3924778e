"""The SMTP envelope of one message, however it arrived."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Envelope:
    mail_from: str = ""
    rcpt_tos: tuple[str, ...] = ()
    peer: str = ""
    source: str = "smtp"  # smtp | lmtp | imap | inject | reprocess
    # Names of checks the transport already did (e.g. "authres" trusted by IMAP config).
    notes: tuple[str, ...] = field(default=())
