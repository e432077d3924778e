"""What the inbound pipeline decided about one message.

A stage ends the pipeline by raising one of the :class:`PipelineStop` subclasses with a
:class:`Reason`; a message that runs through every stage is accepted. The reason alone
decides the SMTP reply (``gateway/replies.py``), so the code a sender sees and the
outcome in ``statusmail log`` can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from statusmail.errors import StatusmailError


class Reason(enum.StrEnum):
    # accepted
    POSTED = "posted"
    REPLIED = "reply posted"
    COMMANDS = "commands answered"
    DUPLICATE = "already received"
    BOUNCE = "delivery report recorded"
    # held
    HELD = "held for moderation"
    # refused, but answered by mail (the sender is a verified human)
    TOO_LONG = "too long"
    # discarded without an answer
    ROBOT = "automatic mail"
    # refused in the SMTP dialogue
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
    TOO_LARGE = "message too large"
    LINE_TOO_LONG = "line longer than 1000 octets"
    UNPARSEABLE = "message cannot be parsed"
    EMPTY = "no text"
    # deferred (4xx): the sender's MTA retries
    RATE_LIMITED = "too many posts this hour"
    STORE_UNAVAILABLE = "database unavailable"
    INTERNAL_ERROR = "internal error"


class PipelineStop(StatusmailError):
    """A stage decided the message's fate; ``detail`` says why, for the log."""

    status = "refused"

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail or reason.value


class Refused(PipelineStop):
    """Not accepted; the SMTP dialogue says no (5xx). Never answered by mail."""


class Deferred(PipelineStop):
    """Not accepted now; the sending MTA keeps it and tries again (4xx)."""


class Discarded(PipelineStop):
    """Accepted (250) and not posted: robots, bounces, over-long updates."""


class Held(PipelineStop):
    """Stored, waiting for a moderator. Raised once, with every hold reason collected."""

    status = "held"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(Reason.HELD, "; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Outcome:
    """The pipeline's answer: what happened, why, and what it produced."""

    status: str  # accepted | held | refused (the values of `statusmail log --outcome`)
    reason: Reason
    detail: str = ""
    post_id: int | None = None
    log_id: int | None = None
    queued: bool = False  # mail was written to the outbox: the worker should look now

    @property
    def accepted(self) -> bool:
        """True when the sender's MTA may forget the message (inject exits 0)."""
        return self.status in ("accepted", "held")
