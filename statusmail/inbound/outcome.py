"""What the inbound pipeline decided about one message, and what each decision means.

A stage ends the pipeline by raising :class:`PipelineStop` with a :class:`Reason`; a
message that runs through every stage is posted. The reason alone decides everything
else, in one table, :data:`DISPOSITIONS`: the status in ``statusmail log`` (and so the
exit code of ``statusmail inject``), the SMTP reply, what the IMAP poller does with the
message, and whether the sender gets an answer by mail. The code a sender sees, the log
and the mailbox can therefore never disagree.

SMTP replies: basic and enhanced status codes agree in class (RFC 3463 §2: a 4xx reply
carries 4.x.x). Outages and rate limits are 4xx so the sender's MTA retries; policy
refusals and mail that cannot be parsed are 5xx, final. Refusals are answered in the
dialogue and never by a mail (no backscatter); a message answered by mail is one whose
sender the gateway trusts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from statusmail.errors import StatusmailError


class Reason(enum.StrEnum):
    POSTED = "posted"
    REPLIED = "reply posted"
    COMMANDS = "commands answered"
    KEYWORD = "reply keyword done"  # mute, unmute, unsubscribe as a reply (SPEC §3)
    LIKED = "like recorded"  # +1, like or a thumbs up as a reply: no post, no mail
    DUPLICATE = "already received"
    BOUNCE = "delivery report recorded"
    HELD = "held for moderation"
    TOO_LONG = "too long"
    ROBOT = "automatic mail"
    CHECKIN_SKIPPED = "check-in skipped"
    UNTRUSTED_PEER = "peer not in trusted_networks"
    TLS_REQUIRED = "STARTTLS required first"
    AUTH_REQUIRED = "SMTP AUTH required first"
    UNKNOWN_RECIPIENT = "no such recipient"
    UNKNOWN_TOKEN = "unknown reply address"
    DOMAIN_NOT_ALLOWED = "sender domain not allowed"
    UNKNOWN_SENDER = "sender not registered"
    BANNED = "sender banned"
    NOT_AUTHENTICATED = "sender not authenticated"
    WRONG_REPLIER = "reply address belongs to another recipient"
    CLOSED_THREAD = "thread closed"
    TOO_MANY_REFUSALS = "too many refusals in one session"
    TOO_LARGE = "message too large"
    LINE_TOO_LONG = "line longer than 1000 octets"
    UNPARSEABLE = "message cannot be parsed"
    EMPTY = "no text"
    NOTHING_NEW = "no new text after trimming"  # quotes and signatures only: the sender is told
    RATE_LIMITED = "too many posts this hour"
    STORE_UNAVAILABLE = "database unavailable"
    INTERNAL_ERROR = "internal error"


class Status(enum.StrEnum):
    """The values of ``statusmail log --outcome``."""

    ACCEPTED = "accepted"  # the sender's MTA may forget the message; inject exits 0
    HELD = "held"  # stored, waiting for a moderator; inject exits 0
    REFUSED = "refused"  # not taken (5xx) or not now (4xx); inject exits 1


class Mailbox(enum.StrEnum):
    """Where the IMAP poller puts a message once its outcome is stored."""

    PROCESSED = "processed"  # imap.processed_folder
    FAILED = "failed"  # imap.failed_folder
    RETRY = "retry"  # left in the folder, run again later (what a 4xx asks of an MTA)


@dataclass(frozen=True)
class Disposition:
    """What one reason means to every party."""

    status: Status
    smtp: str  # the reply line to DATA (or to the command that was refused)
    mailbox: Mailbox
    answered: bool  # the sender is told by mail (capped by policy.auto_answers_per_hour)

    @property
    def stored(self) -> bool:
        """Whether the decision's effects are recorded; a refusal writes only its log row."""
        return self.status is not Status.REFUSED


def accepted(smtp: str, *, answered: bool = False) -> Disposition:
    return Disposition(Status.ACCEPTED, smtp, Mailbox.PROCESSED, answered)


def refused(smtp: str) -> Disposition:
    return Disposition(Status.REFUSED, smtp, Mailbox.FAILED, False)


def deferred(smtp: str) -> Disposition:
    return Disposition(Status.REFUSED, smtp, Mailbox.RETRY, False)


# Reply texts that tests and the listener name directly.
OK_POSTED = "250 2.0.0 OK: posted"
OK_REPLIED = "250 2.0.0 OK: reply posted"
OK_HELD = "250 2.0.0 OK: held for moderation"
OK_COMMANDS = "250 2.0.0 OK: commands answered by mail"
OK_KEYWORD = "250 2.0.0 OK: done, not posted; confirmed by mail"
OK_LIKED = "250 2.0.0 OK: like recorded, not posted"
OK_NOTHING_NEW = "250 2.0.0 OK: not posted, no new text; the sender was told by mail"
OK_DUPLICATE = "250 2.0.0 OK: already received"
OK_NOTED = "250 2.0.0 OK"
OK_SKIPPED = "250 2.0.0 OK: check-in skipped, nothing posted"
OK_TOO_LONG = "250 2.0.0 OK: not posted, too long; the sender was told by mail"
REFUSED_POLICY = "550 5.7.1"
REFUSED_RECIPIENT = "550 5.1.1 No such recipient here"
REFUSED_TOO_LARGE = "552 5.3.4 Message too big for this gateway"
# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF; §4.2.2 gives 500.
REFUSED_LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
REFUSED_UNPARSEABLE = "554 5.6.0 Message cannot be parsed"
REFUSED_SESSION = "421 4.7.0 Too many refusals in this session, closing connection"
REFUSED_EMPTY = "550 5.6.0 No status text found in the message"
DEFERRED_RATE = "451 4.7.1 Too many posts this hour, try again later"
DEFERRED_STORE = "451 4.3.0 Database unavailable, try again later"
DEFERRED_ERROR = "451 4.3.0 Temporary failure, try again later"

DISPOSITIONS: dict[Reason, Disposition] = {
    Reason.POSTED: accepted(OK_POSTED),
    Reason.REPLIED: accepted(OK_REPLIED),
    Reason.COMMANDS: accepted(OK_COMMANDS, answered=True),
    Reason.KEYWORD: accepted(OK_KEYWORD, answered=True),
    Reason.LIKED: accepted(OK_LIKED),
    Reason.DUPLICATE: accepted(OK_DUPLICATE),
    Reason.BOUNCE: accepted(OK_NOTED),
    Reason.HELD: Disposition(Status.HELD, OK_HELD, Mailbox.PROCESSED, False),
    # Not posted, and the (verified) sender is told how long it was and what the limit is.
    Reason.TOO_LONG: accepted(OK_TOO_LONG, answered=True),
    # RFC 3834 §2: never answer automatic mail; accepting and dropping it answers no one.
    Reason.ROBOT: accepted(OK_NOTED),
    # A reply "skip" to the daily question (SPEC §7): the day is recorded as skipped.
    Reason.CHECKIN_SKIPPED: accepted(OK_SKIPPED),
    Reason.UNTRUSTED_PEER: refused(f"{REFUSED_POLICY} Not a trusted peer for this gateway"),
    Reason.TLS_REQUIRED: refused("530 5.7.0 Must issue a STARTTLS command first"),
    Reason.AUTH_REQUIRED: refused("530 5.7.0 Authentication required"),
    Reason.UNKNOWN_RECIPIENT: refused(REFUSED_RECIPIENT),
    Reason.UNKNOWN_TOKEN: refused(REFUSED_RECIPIENT),
    Reason.DOMAIN_NOT_ALLOWED: refused(f"{REFUSED_POLICY} Sender domain may not post here"),
    Reason.UNKNOWN_SENDER: refused(f"{REFUSED_POLICY} Sender is not a registered user"),
    Reason.BANNED: refused(f"{REFUSED_POLICY} Sender may not post here"),
    Reason.NOT_AUTHENTICATED: refused(f"{REFUSED_POLICY} Sender could not be authenticated"),
    Reason.WRONG_REPLIER: refused(f"{REFUSED_POLICY} This reply address belongs to someone else"),
    # SPEC §3 Closed threads: the reply names nothing of the thread it tried to join.
    Reason.CLOSED_THREAD: refused(f"{REFUSED_POLICY} This thread does not take replies"),
    # Postfix's smtpd_hard_error_limit: the session is closed, the rest is one log entry.
    # 421 (RFC 5321 §3.8) closes the session, not a message's fate; nothing of the
    # session is stored, and a later session is answered on its own.
    Reason.TOO_MANY_REFUSALS: deferred(REFUSED_SESSION),
    Reason.TOO_LARGE: refused(REFUSED_TOO_LARGE),
    Reason.LINE_TOO_LONG: refused(REFUSED_LINE_TOO_LONG),
    Reason.UNPARSEABLE: refused(REFUSED_UNPARSEABLE),
    Reason.EMPTY: refused(REFUSED_EMPTY),
    Reason.NOTHING_NEW: accepted(OK_NOTHING_NEW, answered=True),
    Reason.RATE_LIMITED: deferred(DEFERRED_RATE),
    Reason.STORE_UNAVAILABLE: deferred(DEFERRED_STORE),
    Reason.INTERNAL_ERROR: deferred(DEFERRED_ERROR),
}


def disposition(reason: Reason) -> Disposition:
    return DISPOSITIONS[reason]


def smtp_reply(reason: Reason) -> str:
    """The SMTP reply line for a pipeline reason."""
    return DISPOSITIONS[reason].smtp


class PipelineStop(StatusmailError):
    """A stage decided the message's fate; ``detail`` says why, for the log.

    What the stop means (refused, deferred, accepted without a post) is the reason's
    disposition, never the class: :class:`Refused`, :class:`Deferred` and
    :class:`Discarded` are names for reading a stage, nothing more.
    """

    def __init__(self, reason: Reason, detail: str = "", retry_at: datetime | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail or reason.value
        self.retry_at = retry_at  # a deferral: when trying again can succeed (the rate limit lifts)


Refused = Deferred = Discarded = PipelineStop


class Held(PipelineStop):
    """Stored, waiting for a moderator. Raised once, with every hold reason collected."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(Reason.HELD, "; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Outcome:
    """The pipeline's answer: why, and what it produced. Everything else is the reason's
    :class:`Disposition`."""

    reason: Reason
    detail: str = ""
    post_id: int | None = None
    log_id: int | None = None
    queued: bool = False  # mail was written to the outbox: the worker should look now
    retry_at: datetime | None = None  # deferred: the earliest time a retry can succeed, when known

    @property
    def disposition(self) -> Disposition:
        return DISPOSITIONS[self.reason]

    @property
    def status(self) -> Status:
        return self.disposition.status

    @property
    def accepted(self) -> bool:
        """True when the sender's MTA may forget the message (inject exits 0)."""
        return self.status is not Status.REFUSED
