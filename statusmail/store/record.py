"""Recording a batch of inbound decisions: the one place the inbound pipeline writes.

The stages decide (DESIGN 1); :func:`record_batch` writes what a batch of them decided,
in the caller's transaction, with one statement per table for the whole batch: log rows,
new users, posts, tags, mentions. The rare writes (command effects, bounces, the mail a
decision queues) are :class:`~statusmail.store.changes.Change` objects, applied in order
once the rows they refer to exist. A refused decision writes only its log row, so no
message needs a SAVEPOINT of its own: nothing a stage did has to be undone.

Ids are given out before the INSERTs (SQLite: after the largest, which is safe because
the batch holds the write lock since BEGIN IMMEDIATE; PostgreSQL: from the column's
sequence), so a log row names its post and a root post names itself as its thread in
the same statement that writes it, with no UPDATE afterwards.

Later decisions of a batch see the earlier ones through :class:`Pending`: their dedupe
keys, their new users (for :func:`~statusmail.store.users.find_user`), handles, posts
per author, replies per thread and answers per check-in question. A post may reply to
a post decided earlier in the same batch (a :class:`NewPost` as its ``parent``): ids
are given out in the batch's order, so the parent's id and thread are known when the
reply's row is written. Two processes on PostgreSQL can still race on one Message-ID: the log
row's ``ON CONFLICT DO NOTHING`` decides, and the decision that lost writes nothing but
a duplicate's log row.

This module and ``store/direct.py`` are the ingest fast path; nothing else in the
pipeline knows about it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from statusmail.store.changes import Change
from statusmail.store.db import insert_plan
from statusmail.store.direct import Direct, on_driver
from statusmail.store.models import InboundLog, Mention, Post, PostTag, User
from statusmail.store.users import USERS_BY_EMAIL

LOG = InboundLog.__table__  # type: ignore[attr-defined]
POSTS = Post.__table__  # type: ignore[attr-defined]
USERS = User.__table__  # type: ignore[attr-defined]


@dataclass
class NewPost:
    """A post a decision will store; ``id`` is set when it is recorded."""

    author: User
    body: str
    trimmed: str
    created_at: datetime
    parent: Post | NewPost | None  # a NewPost: a post decided earlier in this batch
    message_id: str
    thread_index: str
    status: str = "visible"
    status_reason: str = ""
    tags: list[str] = field(default_factory=list)
    mentioned: list[User] = field(default_factory=list)  # their ids are read when recorded
    checkin_id: int | None = None  # the daily question this post answers (SPEC §7)
    id: int | None = None

    @property
    def thread_id(self) -> int | None:
        """The thread's id, as for a :class:`Post`; None until the batch is recorded when
        the thread begins in this batch."""
        return self.parent.thread_id if self.parent is not None else self.id


@dataclass
class Decision:
    """What one message asks the store to write. ``stored`` False: only its log row."""

    log: dict[str, Any]  # InboundLog values but ``id`` and ``post_id``
    stored: bool = True
    new_user: User | None = None  # a sender to register; its ``id`` is set when recorded
    post: NewPost | None = None
    changes: list[Change] = field(default_factory=list)
    # Filled in by record_batch:
    log_id: int | None = None
    duplicate: bool = False  # another process stored the same message first
    queued: bool = False  # a change wrote mail to the outbox


# A thread: its id, or for one that begins in this batch (no id yet) its root's identity.
ThreadKey = int | tuple[str, int]


@dataclass
class Pending:
    """What the decided but not yet recorded messages of this batch will write."""

    keys: set[str] = field(default_factory=set)
    users_by_handle: dict[str, User] = field(default_factory=dict)
    posts_by: Counter[str] = field(default_factory=Counter)  # by author address
    replies_by: Counter[tuple[str, ThreadKey]] = field(default_factory=Counter)  # by (author address, thread)
    answers: dict[int, NewPost] = field(default_factory=dict)  # the first visible answer by check-in id


PENDING = "statusmail.pending"  # session.info key


def thread_key(parent: Post | NewPost) -> ThreadKey:
    """The thread that a reply to ``parent`` joins."""
    if parent.thread_id is not None:
        return parent.thread_id
    return ("new", id(nearest_stored_or_root(parent)))


def nearest_stored_or_root(post: Post | NewPost) -> Post | NewPost:
    """Up the parents of a post decided in this batch: the first one already stored, or
    the batch's own root of its thread."""
    while isinstance(post, NewPost) and post.parent is not None:
        post = post.parent
    return post


def pending(session: Session) -> Pending:
    """The batch's pending decisions, as the next decision of the same batch reads them."""
    found = session.info.get(PENDING)
    if found is None:
        found = session.info[PENDING] = Pending()
    return found


def note_decision(session: Session, decision: Decision) -> None:
    """Make a final decision visible to the rest of the batch, before it is recorded."""
    if not decision.stored:
        return
    batch = pending(session)
    if decision.log.get("dedupe_key"):
        batch.keys.add(decision.log["dedupe_key"])
    if decision.new_user is not None:
        session.info.setdefault(USERS_BY_EMAIL, {})[decision.new_user.email] = decision.new_user
        batch.users_by_handle[decision.new_user.handle] = decision.new_user
    post = decision.post
    if post is not None:
        batch.posts_by[post.author.email] += 1
        if post.parent is not None:
            batch.replies_by[(post.author.email, thread_key(post.parent))] += 1
        if post.checkin_id is not None and post.status == "visible":
            batch.answers.setdefault(post.checkin_id, post)


def already_recorded(session: Session, dedupe_key: str) -> int | None:
    """The log entry that stored this message before (0 for one earlier in the batch), or None."""
    if dedupe_key in pending(session).keys:
        return 0
    return SEEN.scalar(session, {"key": dedupe_key})


SEEN = Direct(select(LOG.c.id).where(LOG.c.dedupe_key == bindparam("key")).limit(1))


def record_batch(session: Session, decisions: list[Decision]) -> None:
    """Write every decision of a batch in the caller's transaction; ids and flags land
    on the decisions. Raises on database trouble: the caller's transaction is lost."""
    if not decisions:
        return
    posts = [d.post for d in decisions if d.stored and d.post is not None]
    for post, post_id in zip(posts, next_ids(session, "posts", len(posts))):
        post.id = post_id
    insert_log_rows(session, decisions)
    # A sender registered by a message that lost its race is registered all the same:
    # later messages of the batch may be theirs (the winner registered them too, and
    # the INSERT keeps the winner's row).
    insert_users(session, [d.new_user for d in decisions if d.stored and d.new_user is not None])
    kept = [d for d in decisions if d.stored and not d.duplicate]
    insert_posts(session, [d.post for d in kept if d.post is not None])
    for decision in kept:
        for change in decision.changes:
            decision.queued = change.apply(session) or decision.queued
    session.info.pop(PENDING, None)


def insert_log_rows(session: Session, decisions: list[Decision]) -> None:
    """One row per decision; a stored one that lost a race for its dedupe key is marked
    ``duplicate`` and logged as such instead."""
    ids = next_ids(session, "inbound_log", len(decisions))
    rows = []
    for decision, log_id in zip(decisions, ids):
        decision.log_id = log_id
        post = decision.post if decision.stored else None
        values = {**decision.log, "post_id": post.id if post else None}
        if post is not None and not values.get("message_id"):
            # A mail without a Message-ID got one for its post (publish.decide_post): the
            # row names its post by it, as by id, so whatever reads the log sees it.
            values["message_id"] = post.message_id
        row = {name: values[name] if name in values else default() for name, default in LOG_COLUMNS.items()}
        rows.append({"id": log_id, **row})
    insert_rows(session, "inbound_log", rows, on_conflict="dedupe_key")
    keyed = [d for d in decisions if d.log.get("dedupe_key")]
    if not keyed:
        return
    present = {row[0] for row in on_driver(session, lambda cursor, dialect: cursor.execute(
        f"SELECT id FROM inbound_log WHERE id IN ({', '.join(str(d.log_id) for d in keyed)})")).fetchall()}
    lost = [d for d in keyed if d.log_id not in present]
    for decision in lost:
        decision.duplicate = True
        if decision.post is not None:
            decision.post.id = None
    if lost:  # rare: another process on the same database stored these first
        again = [{**rows[decisions.index(d)], "dedupe_key": None, "raw": None, "post_id": None,
                  "message_id": d.log.get("message_id", ""),  # not the id of a post never stored
                  "reason": "duplicate", "detail": "stored by another process first", "outcome": "accepted"}
                 for d in lost]
        for decision, row, log_id in zip(lost, again, next_ids(session, "inbound_log", len(lost))):
            row["id"] = decision.log_id = log_id
        insert_rows(session, "inbound_log", again)


def insert_users(session: Session, users: list[User]) -> None:
    """Register the batch's new senders; one that another process registered meanwhile
    keeps that process's row."""
    if not users:
        return
    for user, user_id in zip(users, next_ids(session, "users", len(users))):
        user.id = user_id
    insert_rows(session, "users", [row_of(user) for user in users], on_conflict="email")
    wanted = {user.email: user for user in users}
    found = session.execute(select(USERS.c.email, USERS.c.id).where(USERS.c.email.in_(list(wanted))))
    for email, user_id in found:
        wanted[email].id = user_id


def insert_posts(session: Session, posts: list[NewPost]) -> None:
    """The posts with their tags and mentions, a statement per table."""
    if not posts:
        return
    rows = []
    for post in posts:  # in the batch's order: a parent of the same batch comes before its replies
        assert post.id is not None and post.author.id is not None
        if isinstance(post.parent, NewPost) and post.parent.id is None:
            # The parent's message lost its race to another process (a duplicate), whose
            # row this batch does not know: the reply begins a thread of its own.
            post.parent = None
        parent = post.parent
        rows.append({"id": post.id, "author_id": post.author.id, "body": post.body, "trimmed": post.trimmed,
                     "created_at": post.created_at, "thread_id": post.thread_id,
                     "parent_id": parent.id if parent else None, "status": post.status,
                     "status_reason": post.status_reason, "message_id": post.message_id,
                     "thread_index": post.thread_index})
    insert_rows(session, "posts", rows)
    tags = [{"post_id": post.id, "tag": tag} for post in posts for tag in post.tags]
    if tags:
        insert_rows(session, "post_tags", tags)
    mentions = [{"post_id": post.id, "user_id": uid} for post in posts
                for uid in sorted({user.id for user in post.mentioned if user.id is not None})]
    if mentions:
        insert_rows(session, "mentions", mentions)


def row_of(instance: SQLModel) -> dict[str, Any]:
    """A model instance's column values, its defaults filled in when it was built."""
    return {column.key: getattr(instance, column.key) for column in type(instance).__table__.columns}  # type: ignore[attr-defined]


TABLES = {"inbound_log": LOG, "users": USERS, "posts": POSTS,
          "post_tags": PostTag.__table__, "mentions": Mention.__table__}  # type: ignore[attr-defined]
# Every column of a log row but the id, with a maker of its default.
LOG_COLUMNS = insert_plan(InboundLog)[1]
INSERTS: dict[tuple[str, str, str], Direct] = {}


def insert_rows(session: Session, table_name: str, rows: list[dict[str, Any]], on_conflict: str = "") -> None:
    """INSERT ``rows`` (all with the same keys) as one executemany on the driver;
    ``on_conflict`` names a unique column whose clashes are skipped, not raised."""
    dialect = session.get_bind().dialect.name
    key = (table_name, dialect, on_conflict)
    statement = INSERTS.get(key)
    if statement is None:
        table = TABLES[table_name]
        build = postgresql.insert if dialect == "postgresql" else sqlite.insert
        insert = build(table)
        if on_conflict:
            insert = insert.on_conflict_do_nothing(index_elements=[on_conflict])
        statement = INSERTS[key] = Direct(insert, [column.key for column in table.columns])
    statement.execute_many(session, rows)


def next_ids(session: Session, table_name: str, count: int) -> list[int]:
    """``count`` unused ids of ``table_name``, in order, without writing a row.

    On SQLite the caller holds the write lock (``begin_immediate``) for the transaction."""
    if count == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        cursor = on_driver(session, lambda c, _: c.execute(
            f"SELECT nextval(pg_get_serial_sequence('{table_name}', 'id')) FROM generate_series(1, {count})"))
        return sorted(row[0] for row in cursor.fetchall())
    # SQLite: the batch holds the write lock (BEGIN IMMEDIATE), so nobody else takes these.
    cursor = on_driver(session, lambda c, _: c.execute(f"SELECT coalesce(max(id), 0) FROM {table_name}"))
    last = cursor.fetchone()[0]
    return list(range(last + 1, last + 1 + count))


def recent_posts(session: Session, user: User, since: datetime) -> int:
    """Posts by ``user`` at or after ``since``, those decided earlier in this batch included."""
    stored = 0
    if user.id is not None:
        stored = POSTS_SINCE.scalar(session, {"author_id": user.id, "since": since}) or 0
    return stored + pending(session).posts_by[user.email]


POSTS_SINCE = Direct(select(func.count()).select_from(POSTS)
                     .where(POSTS.c.author_id == bindparam("author_id"), POSTS.c.created_at >= bindparam("since")))


def recent_replies(session: Session, user: User, parent: Post | NewPost, since: datetime) -> int:
    """Replies by ``user`` in the thread of ``parent`` at or after ``since``, this batch's
    included (a thread begun in this batch has only those)."""
    thread = thread_key(parent)
    stored = 0
    if user.id is not None and isinstance(thread, int):
        stored = REPLIES_SINCE.scalar(session, {"author_id": user.id, "thread_id": thread, "since": since}) or 0
    return stored + pending(session).replies_by[(user.email, thread)]


REPLIES_SINCE = Direct(select(func.count()).select_from(POSTS)
                       .where(POSTS.c.author_id == bindparam("author_id"), POSTS.c.thread_id == bindparam("thread_id"),
                              POSTS.c.parent_id.is_not(None), POSTS.c.created_at >= bindparam("since")))


def answer_in_batch(session: Session, checkin_id: int | None) -> NewPost | None:
    """The first visible answer to this check-in question decided earlier in this batch."""
    return pending(session).answers.get(checkin_id) if checkin_id is not None else None


def handle_taken_in_batch(session: Session, handle: str) -> bool:
    return handle in pending(session).users_by_handle


def users_registered_in_batch(session: Session, handles: list[str]) -> list[User]:
    """The batch's new users with these handles (a post may mention a sender of the same batch)."""
    known = pending(session).users_by_handle
    return [known[h] for h in handles if h in known]
