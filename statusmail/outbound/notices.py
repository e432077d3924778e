"""Automatic answers to a sender: an over-long update, a rejected post.

Each is ``Auto-Submitted: auto-replied`` (RFC 3834 §5) and counts against
``policy.auto_answers_per_hour`` for its recipient, so that a robot nobody recognised
cannot keep a loop going: past the cap the answer is skipped and the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from statusmail.config import Settings
from statusmail.logs import redact
from statusmail.outbound.compose import Draft, build_message
from statusmail.outbound.outbox import auto_answers_left, enqueue
from statusmail.store.models import User

log = logging.getLogger(__name__)


def queue_notice(session: Session, settings: Settings, user: User, template: str, *, subject: str,
                 context: dict[str, Any], in_reply_to: str = "", kind: str = "notice") -> int | None:
    """Queue one automatic answer to ``user``, unless their hourly cap is reached; its
    outbox id."""
    if auto_answers_left(session, user.email, settings) <= 0:
        log.warning("not answering %s: auto_answers_per_hour reached", redact(user.email))
        return None
    draft = Draft(to=user.email, to_name=user.name, subject=subject, template=f"notice/{template}",
                  context={"name": user.name or user.email, **context}, auto_submitted="auto-replied",
                  in_reply_to=in_reply_to,
                  references=[in_reply_to] if in_reply_to else [], user_id=user.id)
    return enqueue(session, build_message(draft, settings), settings, kind=kind, to=user.email, user_id=user.id)


@dataclass(frozen=True)
class QueueNotice:
    """A decision's automatic answer to its sender (a :class:`~statusmail.store.changes.Change`)."""

    settings: Settings
    user: User
    template: str
    subject: str
    context: dict[str, Any] = field(default_factory=dict)
    in_reply_to: str = ""
    kind: str = "notice"

    def apply(self, session: Session) -> bool:
        return queue_notice(session, self.settings, self.user, self.template, subject=self.subject,
                            context=self.context, in_reply_to=self.in_reply_to, kind=self.kind) is not None
