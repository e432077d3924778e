"""What a decision asks the store to change besides its post: the rare writes.

A stage never writes (DESIGN 1: stages decide, one function records). When a message
should change something other than the common rows the recorder writes itself (log row,
user, post, tags, mentions, tokens, outbox), the stage appends a :class:`Change` to the
decision (``Incoming.changes``); the recorder applies them, in order, in the batch's
transaction, and only for a decision that is not refused. Each change is a small frozen
dataclass named for what it does, with the one method that does it.
"""

from __future__ import annotations

from typing import Protocol

from sqlmodel import Session


class Change(Protocol):
    """One write a decision asks for; applied by the recorder, never by a stage.

    ``apply`` returns whether it queued mail, so the outbox worker is woken."""

    def apply(self, session: Session) -> bool: ...
