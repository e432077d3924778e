"""The durable outbox: the only way mail leaves statusmail.

A message is written as an outbox row in the same transaction as the change that caused
it (:func:`enqueue`), so a crash can neither lose it nor send mail about something that
was rolled back. The worker claims due rows with a lease, hands them to the transport
and marks them sent; a failure schedules the next attempt with exponential backoff and
jitter, and after :data:`MAX_ATTEMPTS` the row is marked failed, visible in
``statusmail outbox list`` until ``outbox retry``. On PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED`` so several ``serve`` processes share the work; a lease that
expires (a worker killed mid-send) makes the row due again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, NamedTuple, cast

from sqlalchemy import Engine, func, insert
from sqlmodel import Session, col, or_, select, update

from statusmail.config import Settings
from statusmail.errors import PermanentTransportError, StoreUnavailable, TransportError
from statusmail.inbound.recipients import bounce_address
from statusmail.logs import redact
from statusmail.outbound.transport import Transport
from statusmail.store.bounces import BounceFact, record_bounces
from statusmail.store.db import insert_values, transaction
from statusmail.store.direct import Direct
from statusmail.store.models import Outbox, OutboxBody, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=2)
LEASE = timedelta(minutes=5)
MARK_PATIENCE = timedelta(minutes=4)  # shorter than LEASE: no other worker may take the row meanwhile
BATCH = 50
MARK_EVERY = 25  # sent rows per "sent" commit (SentMarks)
MARK_WITHIN = 30.0  # seconds a sent row may wait for that commit
# Mails handed to the relay at once, each lane on its own connection. A message takes
# four round trips (aiosmtplib does not pipeline), so one connection spends most of its
# time waiting for the relay; MTAs open several to one destination for the same reason
# (Postfix allows 20). One lane against four: bench/outbox.py 980 -> 1,800-2,100 msg/s,
# bench/digest.py (10,000 digests) 148 -> 157 digests/s.
LANES = 4
FIRST_PAUSE = 0.05  # seconds between looks right after mail was sent; doubles while none comes
# Kinds that answer a sender automatically; capped by policy.auto_answers_per_hour.
AUTO_ANSWERS = ("notice", "command", "rejection")


@dataclass(frozen=True)
class Serialized:
    """A message as the outbox keeps it: the bytes for the relay and the headers a row lists."""

    raw: bytes
    subject: str
    message_id: str


def serialize(msg: EmailMessage) -> Serialized:
    return Serialized(msg.as_bytes(policy=SMTP), str(msg["Subject"] or ""), str(msg["Message-ID"]))


def row_values(mail: Serialized, settings: Settings, *, kind: str, to: str, user_id: int | None = None,
               post_id: int | None = None) -> dict[str, Any]:
    """The columns of an outbox row for ``mail``, with its own bounce address; the
    rest (queued, due now) are the table's defaults."""
    key = secrets.token_hex(8)
    return {"kind": kind, "to_addr": to, "envelope_from": bounce_address(key, settings), "subject": mail.subject,
            "message_id": mail.message_id, "post_id": post_id, "user_id": user_id, "bounce_key": key}


def enqueue(session: Session, msg: EmailMessage, settings: Settings, *, kind: str, to: str,
            user_id: int | None = None, post_id: int | None = None) -> int:
    """Record ``msg`` for sending, part of the caller's transaction; the outbox id.

    Plain INSERTs on the driver, like the pipeline's own rows (``store/direct.py``): a
    reply's notifications are queued on the ingest hot path."""
    mail = serialize(msg)
    outbox_id = insert_values(session, Outbox, **row_values(mail, settings, kind=kind, to=to, user_id=user_id,
                                                            post_id=post_id))
    ADD_BODY.execute(session, {"outbox_id": outbox_id, "raw": mail.raw})
    return outbox_id


ADD_BODY = Direct(OutboxBody.__table__.insert(), ["outbox_id", "raw"])  # type: ignore[attr-defined]


def enqueue_many(session: Session, mails: list[tuple[dict[str, Any], bytes]]) -> dict[int, int]:
    """Record many serialized messages, each as (:func:`row_values`, bytes), one per
    user; their outbox ids by user id.

    Core, not the ORM: a digest run queues thousands of rows, and nothing reads them back
    as objects. One statement per table, not one per row: with RETURNING, SQLAlchemy
    sends the rows as multi-row INSERTs (its "insertmanyvalues"), and the ids come back
    keyed by user, not by position, which SQLite does not promise."""
    if not mails:
        return {}
    connection = session.connection()
    query = insert(Outbox).returning(col(Outbox.user_id), col(Outbox.id))
    rows = connection.execute(query, [values for values, _ in mails])
    ids = {cast(int, user_id): cast(int, outbox_id) for user_id, outbox_id in rows}
    connection.execute(insert(OutboxBody), [{"outbox_id": ids[values["user_id"]], "raw": raw} for values, raw in mails])
    return ids


def auto_answers_left(session: Session, address: str, settings: Settings, now: datetime | None = None) -> int:
    """How many more automatic answers ``address`` may get this hour (a loop breaker)."""
    since = (now or utcnow()) - timedelta(hours=1)
    sent = session.exec(select(func.count()).select_from(Outbox).where(
        Outbox.to_addr == address, col(Outbox.kind).in_(AUTO_ANSWERS), Outbox.created_at >= since)).one()
    return max(0, settings.policy.auto_answers_per_hour - sent)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with full jitter, so a recovered relay is not stampeded."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds()))


class Claimed(NamedTuple):
    """An outbox row leased to this worker, with the bytes to send."""

    row: Outbox
    raw: bytes


def claim_due(engine: Engine, limit: int = BATCH, now: datetime | None = None) -> list[Claimed]:
    """Lease up to ``limit`` due rows to this worker, atomically.

    The lease is taken by a conditional UPDATE … RETURNING, so two workers that saw the
    same due rows (SQLite has no SKIP LOCKED) cannot both win one: sent is sent once.
    """
    now = now or utcnow()
    due = or_(col(Outbox.claimed_until).is_(None), col(Outbox.claimed_until) < now)
    with transaction(engine) as session:
        query = (select(Outbox.id).where(Outbox.status == "queued", Outbox.next_attempt_at <= now, due)
                 .order_by(col(Outbox.next_attempt_at), col(Outbox.id)).limit(limit))
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.exec(query))
        if not ids:
            return []
        won = session.exec(update(Outbox).where(col(Outbox.id).in_(ids), col(Outbox.status) == "queued", due)  # type: ignore[call-overload]
                           .values(claimed_until=now + LEASE).returning(Outbox.id))
        claimed = [row[0] for row in won]
        rows = session.exec(select(Outbox, OutboxBody.raw).join(OutboxBody, col(OutboxBody.outbox_id) == Outbox.id)
                            .where(col(Outbox.id).in_(claimed)).order_by(col(Outbox.id)))
        return [Claimed(row, raw) for row, raw in rows]


def mark_all_sent(engine: Engine, row_ids: list[int]) -> None:
    """One commit for every row the relay has taken since the last one.

    The relay already has these messages: failing to record that would send them again
    when their lease runs out. So a locked or unreachable database is waited out here,
    for most of the lease, rather than given up on (blocking: runs off the event loop).
    """
    delay, deadline = 0.05, time.monotonic() + MARK_PATIENCE.total_seconds()
    while True:
        try:
            with transaction(engine) as session:
                session.exec(update(Outbox).where(col(Outbox.id).in_(row_ids))
                             .values(status="sent", sent_at=utcnow(), claimed_until=None,
                                     attempts=Outbox.attempts + 1, last_error=""))
            return
        except StoreUnavailable as exc:
            if time.monotonic() + delay > deadline:
                log.error("could not mark %d sent mail(s) as sent: %s; they may be sent again", len(row_ids), exc)
                raise
            log.warning("marking %d mail(s) sent: database unavailable (%s); retrying", len(row_ids), exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def mark_failed_attempt(engine: Engine, row: Outbox, error: str, *, permanent: bool = False,
                        bounce: BounceFact | None = None) -> None:
    """Schedule the next try, or give up after MAX_ATTEMPTS (or at once on a 5xx).

    ``bounce``: the relay refused the recipient; it is recorded and scored against the
    address in the same transaction, exactly as a DSN's report would be."""
    attempts = row.attempts + 1
    give_up = permanent or attempts >= MAX_ATTEMPTS
    with transaction(engine) as session:
        session.exec(update(Outbox).where(col(Outbox.id) == row.id)
                     .values(attempts=attempts, last_error=error[:500], claimed_until=None,
                             status="failed" if give_up else "queued",
                             next_attempt_at=utcnow() + retry_delay(attempts)))
        if bounce is not None:
            record_bounces(session, row.id, row.to_addr, [bounce])
    level = logging.ERROR if give_up else logging.WARNING
    log.log(level, "outbox %s to %s: %s (attempt %d%s)", row.id, redact(row.to_addr), redact(error), attempts,
            ", giving up" if give_up else "")


def retry(session: Session, row_id: int | None = None) -> int:
    """Make one unsent row (or every unsent row) due now. Returns how many."""
    query = update(Outbox).where(col(Outbox.status).in_(("queued", "failed")))
    if row_id is not None:
        query = query.where(col(Outbox.id) == row_id)
    result = session.exec(query.values(status="queued", next_attempt_at=utcnow(), claimed_until=None))
    return int(result.rowcount or 0)


class SentMarks:
    """Marks sent rows off the event loop while the next rows are being sent.

    A commit covers :data:`MARK_EVERY` sent rows (the rest of a claimed batch at
    :meth:`flush`), one commit in flight at a time, so the relay's round trips and the
    fsync overlap instead of adding up. Not a commit per row: every commit takes
    SQLite's one write lock, which a ``digest send`` in another process needs for its
    own batches, and a commit per mail sent kept that lock taken most of the time. A
    crash can resend the rows sent since the last mark committed (a few dozen at most):
    the same at-least-once window a worker killed between send and mark always had.
    The worker keeps one across drains, so a claim need not wait for the last commit.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: list[int] = []
        self.waiting_since = 0.0
        self.commit: asyncio.Task[None] | None = None

    def add(self, row_id: int) -> None:
        if not self.waiting:
            self.waiting_since = time.monotonic()
        self.waiting.append(row_id)
        # Or sooner, when mail goes out slowly: a row must be marked well inside its lease.
        due = len(self.waiting) >= MARK_EVERY or time.monotonic() - self.waiting_since >= MARK_WITHIN
        if not due or (self.commit is not None and not self.commit.done()):
            return
        if self.commit is not None:
            done, self.commit = self.commit, None
            done.result()  # a failed mark (StoreUnavailable) surfaces here, not silently
        self.commit = asyncio.create_task(asyncio.to_thread(mark_all_sent, self.engine, self.waiting))
        self.waiting = []

    async def flush(self) -> None:
        if self.commit is not None:
            commit, self.commit = self.commit, None
            await commit
        if self.waiting:
            waiting, self.waiting = self.waiting, []
            await asyncio.to_thread(mark_all_sent, self.engine, waiting)


async def deliver(engine: Engine, transport: Transport, mail: Claimed, marks: SentMarks) -> bool:
    """Send one claimed row and record the result (a sent row through ``marks``). True when sent."""
    row = mail.row
    try:
        await transport.send(row.envelope_from, row.to_addr, mail.raw)
    except PermanentTransportError as exc:
        # A refused recipient is a hard bounce (SPEC §5): departed staff get suspended.
        bounce = BounceFact(exc.status, hard=True, diagnostic=str(exc)) if exc.refused_recipient else None
        await asyncio.to_thread(mark_failed_attempt, engine, row, str(exc), permanent=True, bounce=bounce)
        return False
    except TransportError as exc:
        await asyncio.to_thread(mark_failed_attempt, engine, row, str(exc))
        return False
    marks.add(row.id)  # type: ignore[arg-type]
    log.info("outbox %s sent to %s (%s)", row.id, redact(row.to_addr), row.kind)
    return True


async def drain(engine: Engine, transport: Transport, limit: int = BATCH, marks: SentMarks | None = None) -> int:
    """Send what is due now, once, in up to :data:`LANES` lanes side by side. Returns
    the number sent.

    Sent rows are marked before this returns, unless the caller passes its own
    ``marks`` and flushes them itself (the worker, so that the next claim does not wait
    for the last commit)."""
    mails = await asyncio.to_thread(claim_due, engine, limit)
    own_marks = marks is None
    marks = SentMarks(engine) if marks is None else marks

    async def send_lane(lane: list[Claimed]) -> int:
        return sum([await deliver(engine, transport, mail, marks) for mail in lane])

    try:
        # Every lane runs to its end even when one fails (return_exceptions): a mail
        # cancelled mid-DATA might have reached the relay and would be sent again.
        results = await asyncio.gather(*(send_lane(lane) for lane in lanes_for(mails)), return_exceptions=True)
    finally:
        if own_marks:
            await marks.flush()  # every row counted as sent is marked sent before we return
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return sum(results)  # type: ignore[arg-type]


def lanes_for(mails: list[Claimed], count: int = LANES) -> list[list[Claimed]]:
    """Claimed mail split into at most ``count`` lanes. One recipient's mail shares a
    lane, in claim order, so it reaches the relay in the order it was queued (a reply's
    notification never overtakes the post's)."""
    lanes: dict[int, list[Claimed]] = {}
    for mail in mails:
        lanes.setdefault(hash(mail.row.to_addr.lower()) % count, []).append(mail)
    return list(lanes.values())


class OutboxWorker:
    """Runs beside the listener: drains the outbox, wakes early when poked.

    A poke comes only from this process. Mail queued by another one (``statusmail
    digest send`` beside ``serve``, a second ``serve``) is found by polling: soon after
    the worker last had mail, since more usually follows (a digest run queues for
    minutes), then less often, up to ``idle_seconds`` apart when all is quiet.
    """

    def __init__(self, engine: Engine, transport: Transport, idle_seconds: float = 2.0) -> None:
        self.engine, self.transport, self.idle_seconds = engine, transport, idle_seconds
        self.wakeup = asyncio.Event()
        self._stopping = False

    def poke(self) -> None:
        """Something was enqueued: look now instead of at the next tick."""
        self.wakeup.set()

    async def run(self) -> None:
        pause = FIRST_PAUSE
        marks = SentMarks(self.engine)
        while not self._stopping:
            try:
                sent = await drain(self.engine, self.transport, marks=marks)
                if not sent:
                    await marks.flush()  # before idling: sent mail is marked sent
            except StoreUnavailable as exc:
                log.warning("outbox: database unavailable: %s", exc)
                sent = 0
            if sent:
                pause = FIRST_PAUSE
            elif not self._stopping:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), pause)
                except TimeoutError:
                    pass
                pause = min(pause * 2, self.idle_seconds)
        try:
            await marks.flush()
        finally:
            await self.transport.close()

    def stop(self) -> None:
        self._stopping = True
        self.wakeup.set()
