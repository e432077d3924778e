"""The tables. Schema changes go through alembic (``store/migrations``), never create_all.

Times are timezone-aware UTC datetimes (SQLModel's UTCDateTime refuses naive ones, which
is the point); :func:`utcnow` is the one clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, Text, UniqueConstraint, true
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)
    name: str = ""
    handle: str = Field(unique=True, index=True, max_length=64)
    role: str = "staff"  # staff | leader | admin
    team: str = ""
    manager_email: str = ""
    timezone: str = ""  # empty: digest.default_timezone
    digest: str = ""  # daily | weekly | off; empty: digest.default_frequency
    checkin: bool = Field(default=True, sa_column_kwargs={"server_default": true()})  # the daily question (SPEC §7)
    banned: bool = False
    ban_reason: str = ""
    hard_bounces: int = 0
    mail_suspended: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Post(SQLModel, table=True):
    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_thread_created", "thread_id", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="users.id", index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    trimmed: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    thread_id: int | None = None  # the root's id; the root's own id for a root (indexed with created_at)
    parent_id: int | None = Field(default=None, foreign_key="posts.id")
    status: str = Field(default="visible", index=True)  # visible | hidden | held | deleted
    status_reason: str = ""
    message_id: str = Field(default="", index=True, max_length=998)  # the author's original Message-ID
    thread_index: str = ""  # Outlook conversation index of the root (base64)


class PostTag(SQLModel, table=True):
    __tablename__ = "post_tags"
    post_id: int = Field(foreign_key="posts.id", primary_key=True)
    tag: str = Field(primary_key=True, index=True, max_length=100)


class Mention(SQLModel, table=True):
    __tablename__ = "mentions"
    post_id: int = Field(foreign_key="posts.id", primary_key=True)
    user_id: int = Field(foreign_key="users.id", primary_key=True, index=True)


class InboundLog(SQLModel, table=True):
    """Every message that reached the gateway, and every refusal, with its outcome."""

    __tablename__ = "inbound_log"
    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    message_id: str = Field(default="", max_length=998)
    # Set only for stored outcomes, so a redelivery is recognised and a refusal retried.
    dedupe_key: str | None = Field(default=None, unique=True, max_length=128)
    sender: str = ""
    recipients: str = ""
    peer: str = ""
    source: str = "smtp"  # smtp | lmtp | imap | inject | reprocess
    outcome: str = Field(index=True)  # accepted | held | refused
    reason: str = ""
    detail: str = ""
    post_id: int | None = Field(default=None)
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    defects: str = ""


class Outbox(SQLModel, table=True):
    """Every mail statusmail sends, composed in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    kind: str = ""  # notice | notification | command | digest | rejection
    to_addr: str = Field(index=True)
    envelope_from: str = ""
    subject: str = ""
    message_id: str = Field(index=True, max_length=998)
    post_id: int | None = Field(default=None, index=True)
    user_id: int | None = Field(default=None)
    status: str = "queued"  # queued | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    claimed_until: datetime | None = None
    last_error: str = ""
    sent_at: datetime | None = None
    bounce_key: str = Field(default="", index=True, max_length=64)


class OutboxBody(SQLModel, table=True):
    """The bytes of an outbox message, beside its row rather than in it.

    SQLite rewrites a whole row on every UPDATE, overflow pages included, so with the
    message inside the row each claim and each "sent" mark wrote a 50 KiB digest again,
    holding the one write lock that a digest run needs for its own batches.
    """

    __tablename__ = "outbox_bodies"
    outbox_id: int = Field(sa_column=Column(Integer, ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True))
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ReplyToken(SQLModel, table=True):
    """A reply address ``status+<token>@domain``: bound to one recipient and one post."""

    __tablename__ = "reply_tokens"
    __table_args__ = (UniqueConstraint("user_id", "post_id"),)
    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(unique=True, index=True, max_length=64)
    user_id: int = Field(foreign_key="users.id")
    post_id: int = Field(foreign_key="posts.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None


class Follow(SQLModel, table=True):
    __tablename__ = "follows"
    __table_args__ = (UniqueConstraint("user_id", "target_user_id", "tag"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    target_user_id: int | None = Field(default=None, foreign_key="users.id")
    tag: str = ""
    # An org-chart default the user turned off stays as a row with active=False,
    # so a later import does not follow them again.
    active: bool = True
    origin: str = "explicit"  # explicit | orgchart
    created_at: datetime = Field(default_factory=utcnow)


class Mute(SQLModel, table=True):
    __tablename__ = "mutes"
    user_id: int = Field(foreign_key="users.id", primary_key=True)
    thread_id: int = Field(foreign_key="posts.id", primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)


class Like(SQLModel, table=True):
    """A reader's like of a post (a ``+1``/``like``/👍 reply, SPEC §3): one per reader and post."""

    __tablename__ = "likes"
    user_id: int = Field(foreign_key="users.id", primary_key=True)
    post_id: int = Field(foreign_key="posts.id", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Digest(SQLModel, table=True):
    """One digest per user and period: the unique key makes a second one impossible."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("user_id", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    period: str = Field(max_length=32)  # e.g. 2026-11-26 or 2026-W48
    covered_until: datetime
    item_count: int = 0
    outbox_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = ""
    action: str = ""
    target: str = ""
    reason: str = ""


class Bounce(SQLModel, table=True):
    __tablename__ = "bounces"
    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow)
    outbox_id: int | None = None
    recipient: str = Field(index=True)
    status: str = ""
    hard: bool = False
    diagnostic: str = ""


class ImapState(SQLModel, table=True):
    __tablename__ = "imap_state"
    mailbox: str = Field(primary_key=True, max_length=300)
    uidvalidity: int = 0
    last_uid: int = 0


class WebSession(SQLModel, table=True):
    """A signed-in browser (SPEC §8). The cookie holds a random secret; only its SHA-256
    is stored, so a copy of the database signs nobody in. Rows, not process memory:
    several ``serve`` processes behind one load balancer share them, and sign-out ends
    the session everywhere."""

    __tablename__ = "web_sessions"
    secret_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class SignInToken(SQLModel, table=True):
    """A one-time sign-in link: valid 15 minutes, used once; stored as its SHA-256."""

    __tablename__ = "sign_in_tokens"
    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class SignInRequest(SQLModel, table=True):
    """Every ``POST /login``, known address or not: the per-address and per-client limits
    count these rows, so they hold across processes and answer alike for strangers."""

    __tablename__ = "sign_in_requests"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    email: str = Field(default="", index=True, max_length=320)
    client: str = Field(default="", index=True, max_length=64)


class Closing(SQLModel, table=True):
    """How many of a sender's mails ended with one closing block (a hash of its words):
    a block that ended enough earlier mails is that sender's signature (inbound/signatures.py)."""

    __tablename__ = "closings"
    user_id: int = Field(foreign_key="users.id", primary_key=True)
    digest: str = Field(primary_key=True, max_length=64)
    seen: int = 0
    last_seen: datetime = Field(default_factory=utcnow)


class Checkin(SQLModel, table=True):
    """One daily question to one user (SPEC §7): the unique (user, day) makes a second
    question for the same day impossible, and its token is the reply address that binds
    the answer to that user and day."""

    __tablename__ = "checkins"
    __table_args__ = (UniqueConstraint("user_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    day: str = Field(max_length=10, index=True)  # the user's local date, 2026-11-26
    token: str = Field(unique=True, max_length=64)
    outbox_id: int | None = None
    answer_post_id: int | None = Field(default=None, foreign_key="posts.id")  # the day's first answer
    skipped: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class CheckinMail(SQLModel, table=True):
    """One round-up (period: the answers' day) or leader's week (period: ISO week) per
    reader: the unique key makes a second one impossible, as for digests."""

    __tablename__ = "checkin_mails"
    __table_args__ = (UniqueConstraint("user_id", "kind", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    kind: str = Field(max_length=16)  # roundup | rollup
    period: str = Field(max_length=32)
    covered_until: datetime
    item_count: int = 0
    outbox_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
