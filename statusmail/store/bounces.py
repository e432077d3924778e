"""Bounces of our own mail: recorded per recipient, and scored against their address.

A hard bounce (a permanent failure, RFC 3463 class 5) counts against the user the mail
went to; :data:`HARD_BOUNCES_TO_SUSPEND` of them suspend mail to that address until an
admin resets it (``statusmail users set --reset-bounces``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session

from statusmail.logs import redact
from statusmail.store.models import Bounce
from statusmail.store.users import find_user

log = logging.getLogger(__name__)

HARD_BOUNCES_TO_SUSPEND = 3


@dataclass(frozen=True)
class BounceFact:
    status: str  # RFC 3463 enhanced status code
    hard: bool
    diagnostic: str = ""


def record_bounces(session: Session, outbox_id: int | None, recipient: str, facts: list[BounceFact]) -> None:
    """Store each report and score the recipient's address once if any was hard."""
    for fact in facts:
        session.add(Bounce(outbox_id=outbox_id, recipient=recipient, status=fact.status, hard=fact.hard,
                           diagnostic=fact.diagnostic[:500]))
    user = find_user(session, recipient)
    if user is None or not any(f.hard for f in facts):
        return
    user.hard_bounces += 1
    if user.hard_bounces >= HARD_BOUNCES_TO_SUSPEND and not user.mail_suspended:
        user.mail_suspended = True
        log.warning("mail to %s suspended after %d hard bounces", redact(user.email), user.hard_bounces)
    session.add(user)


@dataclass(frozen=True)
class RecordBounces:
    """A delivery report's change, as the inbound recorder applies it."""

    outbox_id: int | None
    recipient: str
    facts: tuple[BounceFact, ...]

    def apply(self, session: Session) -> bool:
        record_bounces(session, self.outbox_id, self.recipient, list(self.facts))
        return False
