"""One message on its way through the pipeline, and what the stages learned about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlmodel import Session

from statusmail.config import Settings
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Outcome
from statusmail.inbound.recipients import Kind
from statusmail.store.changes import Change
from statusmail.store.models import Post, User, utcnow


@dataclass
class Incoming:
    raw: bytes
    envelope: Envelope
    settings: Settings
    session: Session
    now: datetime = field(default_factory=utcnow)
    msg: EmailMessage | None = None
    defects: list[str] = field(default_factory=list)
    message_id: str = ""
    dedupe_key: str = ""
    kind: Kind = Kind.POST
    token: str = ""  # the reply token or bounce key from the recipient address
    sender: str = ""  # the From address, lowercase
    sender_name: str = ""
    user: User | None = None
    new_user: bool = False
    unauthenticated: bool = False  # failed sender_auth but held, not refused (IMAP)
    parent: Post | None = None
    text: str = ""  # the post's text
    removed: str = ""  # what trimming cut (quotes, signatures), kept for moderators
    tags: list[str] = field(default_factory=list)
    mentioned: list[User] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    post_id: int | None = None  # the stored post's id
    queued: bool = False  # a stage wrote mail to the outbox (notification, notice, command answer)
    changes: list[Change] = field(default_factory=list)  # applied by the recorder, never by a stage

    @property
    def message(self) -> EmailMessage:
        assert self.msg is not None, "parse_message runs first"
        return self.msg

    @property
    def subject(self) -> str:
        from statusmail.inbound.parse import header_text

        return header_text(self.message, "Subject")

    def log_entry(self, outcome: Outcome) -> dict[str, Any]:
        """The log row's values for a stored outcome; its dedupe key makes a redelivery a no-op."""
        from statusmail.inbound.parse import without_surrogates as clean

        return dict(
            received_at=self.now, message_id=clean(self.message_id), dedupe_key=self.dedupe_key or None,
            sender=clean(self.sender or self.envelope.mail_from), recipients=clean(", ".join(self.envelope.rcpt_tos)),
            peer=self.envelope.peer, source=self.envelope.source, outcome=outcome.status,
            reason=outcome.reason.name.lower(), detail=clean(outcome.detail[:1000]),
            post_id=self.post_id, raw=self.raw, defects="; ".join(self.defects)[:1000])
