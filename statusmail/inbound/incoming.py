"""One message on its way through the pipeline, and the decision its stages reach.

Stages read the store and fill this in; they never write. :meth:`Incoming.decision`
turns the result into the :class:`~statusmail.store.record.Decision` that the recorder
writes for the whole batch (``store/record.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session

from statusmail.config import Settings
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Outcome, Reason
from statusmail.inbound.recipients import Kind
from statusmail.outbound.notices import QueueNotice
from statusmail.store.changes import Change
from statusmail.store.models import Checkin, Post, User, utcnow
from statusmail.store.record import Decision, NewPost


@dataclass
class Incoming:
    raw: bytes
    envelope: Envelope
    settings: Settings
    # The batch's session; set by pipeline.decide once the parse stages (which need no
    # store) are done, so that parsing never runs inside the transaction.
    session: Session = field(default=None)  # type: ignore[assignment]
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
    parent: Post | NewPost | None = None  # a NewPost: the day's first answer, earlier in this batch
    question: Checkin | None = None  # the daily question this answers (inbound/checkins.py)
    text: str = ""  # the post's text
    removed: str = ""  # what trimming cut (quotes, signatures), kept for moderators
    tags: list[str] = field(default_factory=list)
    mentioned: list[User] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    post: NewPost | None = None  # the post to store, once decided
    changes: list[Change] = field(default_factory=list)  # applied by the recorder, never by a stage

    @property
    def message(self) -> EmailMessage:
        assert self.msg is not None, "parse_message runs first"
        return self.msg

    @property
    def subject(self) -> str:
        from statusmail.inbound.parse import header_text

        return header_text(self.message, "Subject")

    def decision(self, outcome: Outcome) -> Decision:
        """What to record for this message. A refusal keeps only its log row (with the raw
        bytes, for ``statusmail reprocess``); a duplicate only a row saying so."""
        from statusmail.inbound.parse import without_surrogates as clean

        stored = outcome.disposition.stored and outcome.reason is not Reason.DUPLICATE
        log = dict(
            received_at=self.now, message_id=clean(self.message_id),
            dedupe_key=(self.dedupe_key or None) if stored else None,
            sender=clean(self.sender or self.envelope.mail_from), recipients=clean(", ".join(self.envelope.rcpt_tos)),
            peer=self.envelope.peer, source=self.envelope.source, outcome=outcome.status.value,
            reason=outcome.reason.name.lower(), detail=clean(outcome.detail[:1000]),
            raw=self.raw if keeps_raw(outcome, len(self.raw)) else None, defects="; ".join(self.defects)[:1000])
        if not stored:
            return Decision(log=log, stored=False)
        # Whether the sender gets an answer is the reason's to say, not the stage's.
        answered = outcome.disposition.answered
        changes = [c for c in self.changes if answered or not isinstance(c, QueueNotice)]
        return Decision(log=log, new_user=self.user if self.new_user else None, post=self.post, changes=changes)


# A refused message's bytes are kept (for ``statusmail reprocess``, say after adding its
# sender) up to this size: a status update is a few KiB even as HTML with a logo, and
# without a cap each refused worst-case message wrote its 10 MiB again (bench/hostile.py).
MAX_REFUSED_RAW = 256 * 1024


def keeps_raw(outcome: Outcome, size: int) -> bool:
    """Whether the log row keeps the raw bytes: not for a duplicate (the first has them),
    not over the size limit (over IMAP they were never fetched), not for a large refusal
    (5xx: the sender has it). A deferral keeps them: ``reprocess`` needs them after an
    internal error."""
    if outcome.reason in (Reason.DUPLICATE, Reason.TOO_LARGE):
        return False
    return not outcome.disposition.smtp.startswith("5") or size <= MAX_REFUSED_RAW
