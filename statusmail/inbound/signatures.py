"""Signatures learned per sender (SPEC §3): closing lines that a sender's earlier mails
ended with are that sender's signature, with or without a ``-- `` line.

After the usual trimming, the last two to six non-blank lines of a post's text are its
closing blocks. Each is counted per sender (``closings``: a hash, never the text's
meaning). A block that ended at least :data:`EARLIER_MAILS` earlier mails of the same
sender is a signature and is cut (the longest such block); a closing line seen once, or
a single line ("Thanks!"), never is, and a block is never the whole text.

Cheap on the ingest path: a text of fewer than three non-blank lines (most status
updates) costs nothing; a longer one one indexed read of at most five hashes, and its
counts are a :class:`NoteClosings` change the recorder applies with the post.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from statusmail.inbound.incoming import Incoming
from statusmail.store.models import Closing, User, utcnow

EARLIER_MAILS = 3  # a block that ended three earlier mails is a signature
MIN_LINES, MAX_LINES = 2, 6
MAX_LINE_CHARS = 100
CLOSINGS = Closing.__table__  # type: ignore[attr-defined]


def closing_blocks(text: str) -> list[tuple[int, str]]:
    """(index of the block's first line, hash) for each closing block, longest first.

    A block is the last k non-blank lines (k = 2 … 6), compared by their words: spacing
    and blank lines do not matter. The whole text is a block too (so a mail that is only
    the signature is recognised, and kept whole), but a text of fewer than three
    non-blank lines has none: it costs nothing."""
    lines = text.split("\n")
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if len(nonblank) <= MIN_LINES:
        return []
    blocks = []
    for size in range(min(MAX_LINES, len(nonblank)), MIN_LINES - 1, -1):
        chosen = nonblank[-size:]
        if any(len(lines[i].strip()) > MAX_LINE_CHARS for i in chosen):
            continue
        words = "\n".join(" ".join(lines[i].split()).lower() for i in chosen)
        blocks.append((chosen[0], hashlib.sha256(words.encode("utf-8")).hexdigest()[:32]))
    return blocks


def learned_signature(session: Session, user: User, hashes: list[str]) -> set[str]:
    """Which of these closing blocks ended at least EARLIER_MAILS earlier mails of ``user``."""
    if user.id is None or not hashes:
        return set()
    rows = session.execute(SEEN, {"user_id": user.id, "hashes": hashes, "needed": EARLIER_MAILS})
    return {row[0] for row in rows}


SEEN = (select(CLOSINGS.c.digest)
        .where(CLOSINGS.c.user_id == bindparam("user_id"), CLOSINGS.c.digest.in_(bindparam("hashes", expanding=True)),
               CLOSINGS.c.seen >= bindparam("needed")))


def cut_learned_signature(mail: Incoming) -> None:
    """Cut the sender's learned signature from the end of the text, and count this
    mail's closing blocks for the next ones."""
    blocks = closing_blocks(mail.text)
    if not blocks or mail.user is None:
        return
    known = learned_signature(mail.session, mail.user, [digest for _, digest in blocks])
    mail.changes.append(NoteClosings(mail.user, tuple(digest for _, digest in blocks)))
    first = next(i for i, line in enumerate(mail.text.split("\n")) if line.strip())
    if blocks[0][0] == first and blocks[0][1] in known:
        return  # the mail is only the signature: never emptied, never cut to a stub
    for start, digest in blocks:  # longest first
        if digest in known and start != first:
            lines = mail.text.split("\n")
            cut = "\n".join(lines[start:]).strip("\n")
            mail.text = "\n".join(lines[:start]).rstrip()
            mail.removed = "\n".join(part for part in (cut, mail.removed) if part)
            return


@dataclass(frozen=True)
class NoteClosings:
    """Count one mail's closing blocks for its sender (a :class:`~statusmail.store.changes.Change`)."""

    user: User
    digests: tuple[str, ...]

    def apply(self, session: Session) -> bool:
        dialect = session.get_bind().dialect.name
        build = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now = utcnow()
        insert = build(CLOSINGS).values([{"user_id": self.user.id, "digest": d, "seen": 1, "last_seen": now}
                                          for d in self.digests])
        session.execute(insert.on_conflict_do_update(
            index_elements=["user_id", "digest"],
            set_={"seen": CLOSINGS.c.seen + 1, "last_seen": insert.excluded.last_seen}))
        return False
