"""Personalized digests: who gets one now, composing it, and recording it exactly once.

Each reader whose digest is due (:mod:`digest_schedule`) gets one mail with what is new
since their previous digest (:mod:`digest_content`); every item carries a ``mailto:``
link to the reader's own reply token for that post, so answering from the digest lands
in the post's thread like any other reply.

Exactly once: the ``digests`` row for (reader, period) and the digest's outbox row are
written in one transaction, and the row is inserted *first*. The unique key then is the
lock: a second ``serve`` process, a ``digest send --now`` racing the scheduler, or a run
restarted after a crash, hits an IntegrityError on that insert and skips the reader. A
crash before commit leaves neither row, so the period is simply sent by the next tick.

Empty periods are recorded too (a row with ``item_count = 0`` and no outbox row): the
scheduler does not recompute a reader with nothing new every minute of the day, and
the next digest starts where this empty one ended.

A run is batched for scale: the news window, follows and mutes are loaded once in a few
queries; per reader there is one transaction with three statements (claim, tokens,
outbox row).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Callable, Sequence
from urllib.parse import quote

from sqlalchemy import Engine, func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from statusmail.errors import StoreUnavailable
from statusmail.gateway.config import Settings
from statusmail.inbound.recipients import token_address
from statusmail.outbound.compose import Draft, build_message
from statusmail.outbound.digest_content import DigestContent, Interests, chunks, collect, load_interests, load_window
from statusmail.outbound.digest_schedule import Recipient, current_period, frequency_of, window_start, zone_of
from statusmail.outbound.outbox import enqueue
from statusmail.outbound.threadindex import new_thread_index
from statusmail.outbound.tokens import new_token
from statusmail.store.db import transaction
from statusmail.store.models import Digest, ReplyToken, User, utcnow

log = logging.getLogger(__name__)

TICK_SECONDS = 60.0
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
PREVIEW_TOKEN = "preview"  # stands in for a token that sending would create


@dataclass(frozen=True)
class Planned:
    """A digest a run decided on: who, for which period, from when, how many updates."""

    recipient: Recipient
    period: str
    since: datetime
    count: int = 0


@dataclass
class SendReport:
    queued: int = 0
    empty: int = 0  # nothing new: recorded, no mail
    already: int = 0  # the period was sent before, or by a concurrent sender
    planned: list[Planned] = field(default_factory=list)  # what a dry run would do


@dataclass(frozen=True)
class Preview:
    message: EmailMessage | None
    reason: str = ""  # why there is no message


# --- loading ------------------------------------------------------------------------------


def load_recipients(session: Session, settings: Settings, user_ids: Sequence[int] | None = None) -> list[Recipient]:
    query = select(User.id, User.email, User.name, User.digest, User.timezone, User.banned, User.mail_suspended)
    if user_ids is not None:
        query = query.where(col(User.id).in_(list(user_ids)))
    return [Recipient(id=uid, email=email, name=name, frequency=frequency_of(digest, settings),  # type: ignore[arg-type]
                      zone=zone_of(tz, settings), suspended=banned or suspended)
            for uid, email, name, digest, tz, banned, suspended in session.exec(query.order_by(col(User.id)))]


def previous_ends(session: Session, user_ids: Sequence[int]) -> dict[int, datetime]:
    """When each reader's last digest ended (``covered_until``), for those who had one."""
    ends: dict[int, datetime] = {}
    for ids in chunks(list(user_ids)):
        ends.update(session.exec(select(Digest.user_id, func.max(Digest.covered_until))  # type: ignore[arg-type]
                                 .where(col(Digest.user_id).in_(ids)).group_by(Digest.user_id)).all())
    return ends


def sent_periods(session: Session, wanted: dict[int, str]) -> set[tuple[int, str]]:
    """Which of the (reader, period) pairs already have a digest row."""
    taken: set[tuple[int, str]] = set()
    periods = sorted(set(wanted.values()))
    for ids in chunks(sorted(wanted)):
        taken.update(session.exec(select(Digest.user_id, Digest.period)  # type: ignore[arg-type]
                                  .where(col(Digest.user_id).in_(ids), col(Digest.period).in_(periods))).all())
    return taken


def plan(session: Session, settings: Settings, now: datetime, *, user_ids: Sequence[int] | None = None,
         force: bool = False) -> list[Planned]:
    """Readers due at ``now`` whose period has no digest yet (``force``: ignore the hour)."""
    wanted: dict[int, str] = {}
    recipients = {r.id: r for r in load_recipients(session, settings, user_ids)}
    for recipient in recipients.values():
        period = current_period(recipient, now, settings, force=force)
        if period is not None:
            wanted[recipient.id] = period
    taken = sent_periods(session, wanted)
    due = [user_id for user_id, period in wanted.items() if (user_id, period) not in taken]
    ends = previous_ends(session, due)
    return [Planned(recipients[user_id], wanted[user_id],
                    window_start(recipients[user_id].frequency, ends.get(user_id), now)) for user_id in due]


# --- composing ----------------------------------------------------------------------------


def tokens_for(session: Session, user_id: int, post_ids: Sequence[int], now: datetime) -> dict[int, str]:
    """The reader's reply token for each post: existing ones reused, missing ones created
    in one INSERT (not :func:`token_for`'s query per post)."""
    tokens: dict[int, str] = dict(session.exec(select(ReplyToken.post_id, ReplyToken.token)  # type: ignore[arg-type]
                                               .where(ReplyToken.user_id == user_id,
                                                      col(ReplyToken.post_id).in_(post_ids))).all())
    missing = [{"token": new_token(), "user_id": user_id, "post_id": post_id, "created_at": now}
               for post_id in dict.fromkeys(post_ids) if post_id not in tokens]
    if missing:
        session.exec(insert(ReplyToken).values(missing))  # type: ignore[call-overload]
        tokens.update((row["post_id"], row["token"]) for row in missing)
    return tokens


def local_time(moment: datetime, recipient: Recipient) -> str:
    """``Wed 25 Nov, 14:05`` in the reader's zone; English names, whatever the server locale."""
    local = moment.astimezone(recipient.zone)
    return f"{DAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]}, {local:%H:%M}"


def reply_link(address: str, thread_subject: str) -> str:
    """RFC 6068 mailto: the subject percent-encoded as UTF-8, spaces as %20."""
    return f"mailto:{address}?subject={quote('Re: ' + thread_subject, safe='')}"


def subject_for(content: DigestContent, settings: Settings) -> str:
    count = content.count
    return f"Your {settings.gateway.site_name} digest: {count} update{'' if count == 1 else 's'}"


def compose(settings: Settings, recipient: Recipient, content: DigestContent, tokens: dict[int, str],
            now: datetime) -> EmailMessage:
    """The digest mail for ``content``; ``tokens`` maps each item's post to the reader's token."""
    sections = []
    for section in content.sections:
        items = []
        for item in section.items:
            address = token_address(tokens[item.post.id], settings)
            items.append({"author": item.author, "time": local_time(item.post.created_at, recipient),
                          "text": item.post.body, "reply_count": item.reply_count, "is_reply": item.post.is_reply,
                          "thread_subject": item.thread_subject, "reply_address": address,
                          "reply_url": reply_link(address, item.thread_subject)})
        # "entries", not "items": jinja would find the dict's items() method first.
        sections.append({"key": section.key, "title": section.title, "entries": items, "more": section.more})
    subject = subject_for(content, settings)
    context = {"name": recipient.display_name, "since": local_time(content.since, recipient),
               "count": content.count, "sections": sections}
    draft = Draft(to=recipient.email, to_name=recipient.name, subject=subject, template="digest/digest",
                  context=context, thread_topic=subject, thread_index=new_thread_index(now))
    return build_message(draft, settings, now=now)


# --- sending ------------------------------------------------------------------------------


def record_digest(engine: Engine, settings: Settings, planned: Planned, content: DigestContent, now: datetime) -> str:
    """Claim (reader, period) and queue the mail in one transaction.

    Returns ``queued``, ``empty`` (recorded without mail) or ``already`` (someone else
    holds the period). The Digest row goes in first so that a concurrent sender blocks
    on, or fails at, the unique key before it renders anything.
    """
    recipient = planned.recipient
    for attempt in range(2):
        try:
            with transaction(engine) as session:
                digest = Digest(user_id=recipient.id, period=planned.period, covered_until=content.until,
                                item_count=content.count, created_at=now)
                session.add(digest)
                session.flush()
                if not content.count:
                    return "empty"
                tokens = tokens_for(session, recipient.id, [item.post.id for item in content.items()], now)
                row = enqueue(session, compose(settings, recipient, content, tokens, now), settings, kind="digest",
                              to=recipient.email, user_id=recipient.id)
                session.flush()
                digest.outbox_id = row.id
                session.add(digest)
            return "queued"
        except IntegrityError:
            # Almost always the unique (user, period): someone else sent it. On PostgreSQL a
            # notification may have created one of our tokens meanwhile: then try once more.
            if attempt or period_taken(engine, recipient.id, planned.period):
                return "already"
    return "already"


def period_taken(engine: Engine, user_id: int, period: str) -> bool:
    with transaction(engine) as session:
        return session.exec(select(Digest.id).where(Digest.user_id == user_id, Digest.period == period)).first() is not None


def send_digests(settings: Settings, engine: Engine, *, now: datetime | None = None,
                 user_ids: Sequence[int] | None = None, force: bool = False, dry_run: bool = False,
                 progress: Callable[[int, int], None] | None = None, on_queued: Callable[[], None] | None = None,
                 stopping: threading.Event | None = None) -> SendReport:
    """Send every digest due at ``now`` (``force``: due or not); what ``digest send`` and
    the scheduler run. ``dry_run`` decides and counts but changes nothing. ``progress`` is
    called with (readers done, readers due) after each reader."""
    now = now or utcnow()
    with transaction(engine) as session:
        due = plan(session, settings, now, user_ids=user_ids, force=force)
        if not due:
            return SendReport()
        window = load_window(session, min(p.since for p in due), now)
        interests = load_interests(session, [p.recipient.id for p in due])
    report = SendReport()
    for done, planned in enumerate(due, 1):
        if stopping is not None and stopping.is_set():
            break
        content = collect(window, planned.recipient.id, interests[planned.recipient.id], planned.since)
        if dry_run:
            report.planned.append(Planned(planned.recipient, planned.period, planned.since, content.count))
            outcome = "queued" if content.count else "empty"
        else:
            outcome = record_digest(engine, settings, planned, content, now)
            if outcome == "queued" and on_queued is not None:
                on_queued()
        setattr(report, outcome, getattr(report, outcome) + 1)
        if progress is not None:
            progress(done, len(due))
    return report


def preview(settings: Settings, engine: Engine, user_id: int, now: datetime | None = None) -> Preview:
    """What the reader would get if their digest were sent now. Changes nothing: posts
    without a token yet show a placeholder address."""
    now = now or utcnow()
    with transaction(engine) as session:
        [recipient] = load_recipients(session, settings, [user_id])
        if recipient.suspended:
            return Preview(None, "mail to this user is suspended or banned")
        if recipient.frequency not in ("daily", "weekly"):
            return Preview(None, "digest is off")
        since = window_start(recipient.frequency, previous_ends(session, [user_id]).get(user_id), now)
        window = load_window(session, since, now)
        content = collect(window, user_id, load_interests(session, [user_id]).get(user_id, Interests()), since)
        if not content.count:
            return Preview(None, "nothing new")
        post_ids = [item.post.id for item in content.items()]
        tokens = dict(session.exec(select(ReplyToken.post_id, ReplyToken.token)  # type: ignore[arg-type]
                                   .where(ReplyToken.user_id == user_id, col(ReplyToken.post_id).in_(post_ids))).all())
    tokens = {post_id: tokens.get(post_id, PREVIEW_TOKEN) for post_id in post_ids}
    return Preview(compose(settings, recipient, content, tokens, now))


# --- the scheduler ------------------------------------------------------------------------


class DigestScheduler:
    """Part of ``serve``: once a minute, sends the digests whose hour has come.

    The work runs in a thread (``asyncio.to_thread``) so the listener stays responsive;
    ``on_queued`` (the outbox worker's poke) is called on the event loop after each digest
    is queued. ``now`` is the clock, injectable so tests can stand anywhere in time.
    The first look is one interval after start, not at start: a restart at 08:00 does not
    race the process it replaces, and short-lived test gateways never send digests.
    """

    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None], *,
                 now: Callable[[], datetime] = utcnow, interval: float = TICK_SECONDS) -> None:
        self.settings, self.engine, self.on_queued = settings, engine, on_queued
        self.now, self.interval = now, interval
        self._stopping = threading.Event()
        self._wakeup: asyncio.Event | None = None

    async def tick(self) -> SendReport:
        """One look: send what is due now."""
        loop = asyncio.get_running_loop()

        def poke() -> None:
            loop.call_soon_threadsafe(self.on_queued)
        report = await asyncio.to_thread(send_digests, self.settings, self.engine, now=self.now(), on_queued=poke,
                                         stopping=self._stopping)
        if report.queued or report.empty:
            log.info("digests: %d queued, %d with nothing new", report.queued, report.empty)
        return report

    async def run(self) -> None:
        self._wakeup = asyncio.Event()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            if self._stopping.is_set():
                break
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("digests: database unavailable: %s", exc)
            except Exception:  # noqa: BLE001 - one bad digest run must not stop serve; next minute retries
                log.exception("digests: run failed")

    def stop(self) -> None:
        """Stop after the reader being sent now; the rest are sent by the next start."""
        self._stopping.set()
        if self._wakeup is not None:
            self._wakeup.set()
