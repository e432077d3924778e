"""Where the IMAP poller is in its folder: the ``imap_state`` row of each account and folder.

The poller's progress is saved by :class:`SaveProgress`, a change it hands the pipeline
with each message, so the last UID handled commits in the same transaction as the
message's outcome: after a crash, either both are there or neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from statusmail.store.db import transaction
from statusmail.store.models import ImapState


@dataclass(frozen=True)
class SaveProgress:
    """The folder's UIDVALIDITY and the highest UID recorded under it."""

    mailbox: str
    uidvalidity: int
    uid: int

    def apply(self, session: Session) -> bool:
        row = session.get(ImapState, self.mailbox) or ImapState(mailbox=self.mailbox)
        if row.uidvalidity != self.uidvalidity:
            row.uidvalidity, row.last_uid = self.uidvalidity, 0
        row.last_uid = max(row.last_uid, self.uid)
        session.add(row)
        return False


def load_state(engine: Engine, mailbox: str) -> tuple[int, int]:
    """(UIDVALIDITY, last UID handled) of a folder; (0, 0) before its first round."""
    with transaction(engine) as session:
        row = session.get(ImapState, mailbox)
        return (row.uidvalidity, row.last_uid) if row else (0, 0)


def save_state(engine: Engine, mailbox: str, uidvalidity: int, last_uid: int) -> None:
    with transaction(engine) as session:
        row = session.get(ImapState, mailbox) or ImapState(mailbox=mailbox)
        row.uidvalidity, row.last_uid = uidvalidity, last_uid
        session.add(row)
