"""Personalized digests: who gets one now, composing it, and recording it exactly once.

Each reader whose digest is due (:mod:`digest_schedule`) gets one mail with what is new
since their previous digest (:mod:`digest_content`); every item carries a ``mailto:``
link to the reader's own reply token for that post, so answering from the digest lands
in the post's thread like any other reply.

Exactly once: the ``digests`` row for (reader, period) and the digest's outbox row are
written in one transaction, so the unique key on (user, period) decides for both: a
second ``serve`` process, a ``digest send --now`` racing the scheduler, or a run
restarted after a crash hits an IntegrityError and skips the reader, and its outbox row
rolls back with it. A crash before commit leaves neither row, so the period is simply
sent by the next tick. The mail is rendered before the transaction opens; a loser of
the race has wasted one render, never sent a second mail.

Empty periods are recorded too (a row with ``item_count = 0`` and no outbox row): the
scheduler does not recompute a reader with nothing new every minute of the day, and
the next digest starts where this empty one ended.

A run is batched for scale: the news window, follows and mutes are loaded once in a few
queries; readers are then composed and recorded 100 at a time, with a query per 500 of
their existing reply tokens (:func:`~statusmail.outbound.tokens.known_tokens`) and one
short transaction (one commit) for their outbox rows, Digest rows and new tokens. That
transaction runs in a second thread while the next batch is composed
(:mod:`~statusmail.outbound.fanout`). A batch that conflicts with another sender is
retried reader by reader, so the unique key still decides for each reader alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, NamedTuple
from urllib.parse import quote

from sqlalchemy import Engine, func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.inbound.recipients import token_address
from statusmail.outbound.compose import Draft, build_message
from statusmail.outbound.digest_content import DigestContent, Interests, chunks, collect, load_interests, load_window
from statusmail.outbound.digest_schedule import (
    SENDING,
    Recipient,
    current_period,
    frequency_of,
    window_start,
    zone_of,
)
from statusmail.outbound.fanout import compose_while_recording
from statusmail.outbound.outbox import Serialized, enqueue_many, row_values, serialize
from statusmail.outbound.scheduler import Scheduler
from statusmail.outbound.threadindex import new_thread_index
from statusmail.outbound.tokens import known_tokens, tokens_for_mail
from statusmail.store.db import transaction
from statusmail.store.models import Digest, ReplyToken, User, utcnow

log = logging.getLogger(__name__)

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Readers recorded per transaction: one commit (one fsync on SQLite) for many digests,
# while the write lock is still held for tens of milliseconds only.
BATCH = 100


@dataclass(frozen=True)
class Planned:
    """A digest a run decided on: who, for which period, from when, how many updates."""

    recipient: Recipient
    period: str
    since: datetime
    count: int = 0


class LeftOut(NamedTuple):
    """A reader a run sends nothing to, and why, for a person."""

    email: str
    reason: str
    kind: str  # off | suspended | not_due | already | empty


@dataclass
class SendReport:
    queued: int = 0
    empty: int = 0  # nothing new: recorded, no mail
    already: int = 0  # the period was sent before, or by a concurrent sender
    planned: list[Planned] = field(default_factory=list)  # what a dry run would do
    # With ``explain``: every reader who gets no mail from this run, and why (SPEC §6).
    left_out: list[LeftOut] = field(default_factory=list)


@dataclass(frozen=True)
class Preview:
    message: EmailMessage | None
    reason: str = ""  # why there is no message


# --- loading ------------------------------------------------------------------------------


# Loosely typed: sqlmodel's select() declares overloads for at most four columns.
RECIPIENT_COLUMNS: tuple[Any, ...] = (User.id, User.email, User.name, User.digest, User.timezone, User.banned,
                                      User.mail_suspended)


def load_recipients(session: Session, settings: Settings, user_ids: Sequence[int] | None = None) -> list[Recipient]:
    query = select(*RECIPIENT_COLUMNS)
    if user_ids is not None:
        query = query.where(col(User.id).in_(list(user_ids)))
    return [Recipient(id=uid, email=email, name=name, frequency=frequency_of(digest, settings),
                      zone=zone_of(tz, settings), suspended=banned or suspended)
            for uid, email, name, digest, tz, banned, suspended in session.exec(query.order_by(col(User.id)))]


def previous_ends(session: Session, user_ids: Sequence[int]) -> dict[int, datetime]:
    """When each reader's last digest ended (``covered_until``), for those who had one."""
    ends: dict[int, datetime] = {}
    for ids in chunks(list(user_ids)):
        ends.update(session.exec(select(Digest.user_id, func.max(Digest.covered_until))
                                 .where(col(Digest.user_id).in_(ids)).group_by(col(Digest.user_id))).all())
    return ends


def sent_periods(session: Session, wanted: dict[int, str]) -> set[tuple[int, str]]:
    """Which of the (reader, period) pairs already have a digest row."""
    taken: set[tuple[int, str]] = set()
    periods = sorted(set(wanted.values()))
    for ids in chunks(sorted(wanted)):
        taken.update(session.exec(select(Digest.user_id, Digest.period)
                                  .where(col(Digest.user_id).in_(ids), col(Digest.period).in_(periods))).all())
    return taken


def plan(session: Session, settings: Settings, now: datetime, *, user_ids: Sequence[int] | None = None,
         force: bool = False, left_out: list[LeftOut] | None = None) -> list[Planned]:
    """Readers due at ``now`` whose period has no digest yet (``force``: ignore the hour).
    ``left_out``, when given, gets (address, why) for every other reader."""
    wanted: dict[int, str] = {}
    recipients = {r.id: r for r in load_recipients(session, settings, user_ids)}
    for recipient in recipients.values():
        period = current_period(recipient, now, settings, force=force)
        if period is not None:
            wanted[recipient.id] = period
        elif left_out is not None:
            left_out.append(why_not_due(recipient, settings))
    taken = sent_periods(session, wanted)
    if left_out is not None and taken:
        left_out += already_done(session, {uid: recipients[uid].email for uid, _ in taken}, taken)
    due = [user_id for user_id, period in wanted.items() if (user_id, period) not in taken]
    ends = previous_ends(session, due)
    return [Planned(recipients[user_id], wanted[user_id],
                    window_start(recipients[user_id].frequency, ends.get(user_id), now)) for user_id in due]


def why_not_due(recipient: Recipient, settings: Settings) -> LeftOut:
    """Why :func:`current_period` gave no period for this reader."""
    if recipient.suspended:
        return LeftOut(recipient.email, "banned, or mail to them suspended after hard bounces", "suspended")
    if recipient.frequency not in SENDING:
        return LeftOut(recipient.email, "digest turned off", "off")
    day = f"{settings.digest.weekly_day} " if recipient.frequency == "weekly" else ""
    return LeftOut(recipient.email, f"not due yet: {recipient.frequency} digest at {day}{settings.digest.hour:02d}:00 "
                                    f"{recipient.zone}", "not_due")


def already_done(session: Session, emails: dict[int, str], taken: set[tuple[int, str]]) -> list[LeftOut]:
    """Why each (reader, period) in ``taken`` gets nothing: what its digest row says."""
    rows = {}
    for ids in chunks(sorted(emails)):
        for user_id, period, count, created in session.exec(
                select(Digest.user_id, Digest.period, Digest.item_count, Digest.created_at)
                .where(col(Digest.user_id).in_(ids))):
            if (user_id, period) in taken:
                rows[user_id] = (period, count, created)
    reasons = []
    for user_id, (period, count, created) in sorted(rows.items()):
        when = f"{created:%Y-%m-%d %H:%M} UTC"
        if count:
            reasons.append(LeftOut(emails[user_id], f"already sent for {period} "
                                                    f"({count} update{'' if count == 1 else 's'}, {when})", "already"))
        else:
            reasons.append(LeftOut(emails[user_id], f"already done for {period}: there was nothing new at {when}; "
                                                    "the next digest covers what came since", "already"))
    return reasons


# --- composing ----------------------------------------------------------------------------


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
                          "text": item.post.body, "reply_count": item.reply_count, "like_count": item.like_count, "is_reply": item.post.is_reply,
                          "thread_subject": item.thread_subject, "reply_address": address,
                          "reply_url": reply_link(address, item.thread_subject)})
        # "entries", not "items": jinja would find the dict's items() method first.
        sections.append({"key": section.key, "title": section.title, "entries": items, "more": section.more})
    subject = subject_for(content, settings)
    context = {"name": recipient.display_name, "since": local_time(content.since, recipient),
               "count": content.count, "sections": sections}
    draft = Draft(to=recipient.email, to_name=recipient.name, subject=subject, template="digest/digest",
                  context=context, thread_topic=subject, thread_index=new_thread_index(now), user_id=recipient.id)
    return build_message(draft, settings, now=now)


# --- sending ------------------------------------------------------------------------------


@dataclass
class Ready:
    """A digest composed and waiting to be recorded."""

    planned: Planned
    content: DigestContent
    mail: Serialized | None  # None: nothing new
    minted: dict[int, str]  # reply tokens to store with it (post id -> token)


def prepare(engine: Engine, settings: Settings, batch: list[tuple[Planned, DigestContent]], now: datetime) -> list[Ready]:
    """Compose a batch of digests, outside any transaction: one query for the tokens
    the readers already have, new ones minted in memory (stored by :func:`write`).

    Each message is serialized as soon as it is composed and only its bytes are kept:
    a batch of live ``EmailMessage`` trees (thousands of small objects each) would
    outlive a few garbage collections and make the collector sweep the whole heap again
    and again, which cost more than the database writes."""
    wanted = {p.recipient.id: [item.post.id for item in c.items()] for p, c in batch if c.count}
    with transaction(engine) as session:
        known = known_tokens(session, wanted)
    ready = []
    for planned, content in batch:
        tokens, minted = tokens_for_mail(known, planned.recipient.id, wanted.get(planned.recipient.id, []))
        mail = serialize(compose(settings, planned.recipient, content, tokens, now)) if content.count else None
        ready.append(Ready(planned, content, mail, minted))
    return ready


def write(session: Session, settings: Settings, batch: list[Ready], now: datetime) -> None:
    """Each digest's outbox row, its Digest row (the unique (user, period) decides) and
    its new reply tokens, in the caller's transaction. Messages were serialized by
    :func:`prepare`, so the write lock is held for INSERTs only."""
    outbox_ids = enqueue_many(session, [(row_values(r.mail, settings, kind="digest", to=r.planned.recipient.email,
                                                    user_id=r.planned.recipient.id), r.mail.raw)
                                        for r in batch if r.mail is not None])
    connection = session.connection()
    connection.execute(insert(Digest), [
        {"user_id": r.planned.recipient.id, "period": r.planned.period, "covered_until": r.content.until,
         "item_count": r.content.count, "outbox_id": outbox_ids.get(r.planned.recipient.id), "created_at": now}
        for r in batch])
    tokens = [{"token": token, "user_id": r.planned.recipient.id, "post_id": post_id, "created_at": now}
              for r in batch for post_id, token in r.minted.items()]
    if tokens:  # one executemany, which the engine sends as multi-row VALUES (store/db.py)
        connection.execute(insert(ReplyToken), tokens)


def record(engine: Engine, settings: Settings, batch: list[Ready], now: datetime) -> list[str]:
    """Record a batch in one transaction (one commit, one fsync, for many readers).

    Returns each reader's outcome: ``queued``, ``empty`` or ``already``. When the batch
    conflicts (another sender holds a period, or a notification created one of the
    same reply tokens meanwhile) nothing of it is kept and each reader is retried alone.
    """
    try:
        with transaction(engine) as session:
            write(session, settings, batch, now)
        return ["queued" if r.mail is not None else "empty" for r in batch]
    except IntegrityError:
        if len(batch) > 1:
            return [record(engine, settings, [r], now)[0] for r in batch]
    ready = batch[0]
    if period_taken(engine, ready.planned.recipient.id, ready.planned.period):
        return ["already"]
    # A token clash: compose again with the tokens as they are now, once.
    try:
        with transaction(engine) as session:
            write(session, settings, prepare(engine, settings, [(ready.planned, ready.content)], now), now)
    except IntegrityError:
        return ["already"]
    return ["queued" if ready.mail is not None else "empty"]


def period_taken(engine: Engine, user_id: int, period: str) -> bool:
    with transaction(engine) as session:
        return session.exec(select(Digest.id).where(Digest.user_id == user_id, Digest.period == period)).first() is not None


def send_digests(settings: Settings, engine: Engine, *, now: datetime | None = None,
                 user_ids: Sequence[int] | None = None, force: bool = False, dry_run: bool = False,
                 progress: Callable[[int, int], None] | None = None, on_queued: Callable[[], None] | None = None,
                 stopping: threading.Event | None = None, explain: bool = False) -> SendReport:
    """Send every digest due at ``now`` (``force``: due or not); what ``digest send`` and
    the scheduler run. ``dry_run`` decides and counts but changes nothing. ``progress`` is
    called with (readers done, readers due); ``on_queued`` after each committed batch that
    queued mail, from the thread that committed it (so it must be thread-safe).
    ``explain`` fills the report's ``left_out`` (the command line; the scheduler, which
    looks at every reader every minute, does without)."""
    now = now or utcnow()
    report, done = SendReport(), 0
    with transaction(engine) as session:
        due = plan(session, settings, now, user_ids=user_ids, force=force,
                   left_out=report.left_out if explain else None)
        report.already = sum(1 for item in report.left_out if item.kind == "already")
        if not due:
            return report
        window = load_window(session, min(p.since for p in due), now)
        interests = load_interests(session, [p.recipient.id for p in due])
    reasons = {"empty": "nothing new", "already": "already sent for this period, by another sender just now"}

    def compose_batch(part: list[Planned]) -> list[Ready]:
        batch = [(p, collect(window, p.recipient.id, interests[p.recipient.id], p.since)) for p in part]
        if dry_run:
            return [Ready(p, content, None, {}) for p, content in batch]
        return prepare(engine, settings, batch, now)

    def record_batch(ready: list[Ready]) -> list[str]:
        if dry_run:
            return ["queued" if r.content.count else "empty" for r in ready]
        return record(engine, settings, ready, now)

    def tally(ready: list[Ready], outcomes: list[str]) -> None:
        nonlocal done
        if dry_run:
            report.planned += [Planned(r.planned.recipient, r.planned.period, r.planned.since, r.content.count)
                               for r in ready]
        for r, outcome in zip(ready, outcomes):
            setattr(report, outcome, getattr(report, outcome) + 1)
            if explain and outcome in reasons and not dry_run:
                report.left_out.append(LeftOut(r.planned.recipient.email, reasons[outcome], outcome))
        done += len(outcomes)
        if progress is not None:
            progress(done, len(due))

    compose_while_recording((compose_batch(due[start:start + BATCH]) for start in range(0, len(due), BATCH)),
                            record_batch, tally, on_queued=None if dry_run else on_queued, stopping=stopping,
                            thread_name="digest-record")
    return report


def preview(settings: Settings, engine: Engine, user_id: int, now: datetime | None = None) -> Preview:
    """What the reader would get if their digest were sent now. Changes nothing: a post
    the reader has no token for yet gets a fresh one, not stored, so every reply address
    has the form sending gives it (whoever prints the preview redacts the tokens)."""
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
        known = known_tokens(session, {user_id: post_ids})
    tokens, _ = tokens_for_mail(known, user_id, post_ids)  # the new ones are not stored
    return Preview(compose(settings, recipient, content, tokens, now))


# --- the scheduler ------------------------------------------------------------------------


class DigestScheduler(Scheduler):
    """Part of ``serve``: once a minute, sends the digests whose hour has come."""

    name = "digests"

    def send_due(self, now: datetime, poke: Callable[[], None], stopping: threading.Event) -> SendReport:
        report = send_digests(self.settings, self.engine, now=now, on_queued=poke, stopping=stopping)
        if report.queued or report.empty:
            log.info("digests: %d queued, %d with nothing new", report.queued, report.empty)
        return report
