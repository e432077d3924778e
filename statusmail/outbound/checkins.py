"""Check-ins (SPEC §7): the daily question, the team round-up, the leader's week.

Three mails, one mechanism, the digests' (``outbound/digest.py``): a run plans who is
due for which period (:mod:`checkin_schedule`), composes each mail outside any
transaction, and records a batch of readers in one transaction: each reader's outbox
row together with the row whose unique key says "sent for this period" (``checkins``
on (user, day) for the question, ``checkin_mails`` on (user, kind, period) for the
round-up and the week). A second ``serve`` process, a ``checkins send --now`` racing
the scheduler, or a run restarted after a crash hits the unique key, and its outbox
row rolls back with it: never two mails for one reader and period. A batch that
conflicts is retried reader by reader, so the key decides for each reader alone.

The question's reply address is the token of its ``checkins`` row: bound to the user
and the day, so an answer (``inbound/checkins.py``) is that day's answer whenever it
comes. Round-ups and the week list posts, each with the reader's own reply token for
it (created here if the reader had none), and carry ``Reply-To: request_address``:
replying to the mail itself is a command, never a post.

Empty periods are recorded too (a round-up of a day nobody answered, a week nothing
was posted below a leader): no mail, and the scheduler does not look again every
minute of the day.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine, func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.inbound.recipients import token_address
from statusmail.outbound.checkin_content import (
    OrgChart,
    Reader,
    TeamAnswers,
    Week,
    load_answers,
    load_readers,
    load_skips,
    roundup_for,
    week_for,
)
from statusmail.outbound.checkin_schedule import question_day, rollup_week, roundup_day
from statusmail.outbound.compose import Draft, build_message
from statusmail.outbound.digest import local_time, reply_link
from statusmail.outbound.digest_content import Window, chunks, load_threads
from statusmail.outbound.fanout import compose_while_recording
from statusmail.outbound.outbox import Serialized, enqueue_many, row_values, serialize
from statusmail.outbound.scheduler import Scheduler
from statusmail.outbound.threadindex import new_thread_index
from statusmail.outbound.tokens import known_tokens, new_tokens, tokens_for_mail
from statusmail.store.db import transaction
from statusmail.store.models import Checkin, CheckinMail, ReplyToken, utcnow

log = logging.getLogger(__name__)

QUESTION, ROUNDUP, ROLLUP = "question", "roundup", "rollup"
# Readers recorded per transaction, 100 as for digests; a leader's week is seven times
# a question's size with twenty reply tokens, so half as many: the last batch, which
# the outbox worker only starts on once it commits, then leaves 50 ms sooner
# (bench/checkins.py: ratio 0.81 -> 0.83).
BATCH = {QUESTION: 100, ROUNDUP: 100, ROLLUP: 50}
WEEK = timedelta(days=7)
MAX_WEEK_LOOKBACK = timedelta(days=14)
PREVIEW_TOKEN = "preview"


@dataclass(frozen=True)
class Planned:
    """A mail a run decided on: who, for which period, and (after composing) how many items."""

    reader: Reader
    period: str
    count: int = 0


@dataclass
class Report:
    """What a run did; ``left_out`` says for each reader not mailed why (SPEC §6)."""

    kind: str
    queued: int = 0
    empty: int = 0
    already: int = 0
    planned: list[Planned] = field(default_factory=list)  # what a dry run would send
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (address, why)

    def leave_out(self, reader: Reader, why: str) -> None:
        self.left_out.append((reader.email, why))


# --- shared: recording a batch exactly once -----------------------------------------------


@dataclass
class Ready:
    """A composed mail waiting to be recorded with the row that marks its period sent."""

    planned: Planned
    mail: Serialized | None  # None: nothing to say, the period is recorded as empty
    row: dict[str, Any]  # the Checkin or CheckinMail values, but outbox_id
    minted: dict[int, str] = field(default_factory=dict)  # new reply tokens: post id -> token


def write(session: Session, settings: Settings, kind: str, batch: list[Ready]) -> None:
    """The outbox rows, the period rows and the new tokens of a batch, in the caller's
    transaction; the period rows' unique key decides whether any of it is kept."""
    outbox_ids = enqueue_many(session, [(row_values(r.mail, settings, kind=kind, to=r.planned.reader.email,
                                                    user_id=r.planned.reader.id), r.mail.raw)
                                        for r in batch if r.mail is not None])
    connection = session.connection()
    model = Checkin if kind == QUESTION else CheckinMail
    connection.execute(insert(model), [{**r.row, "outbox_id": outbox_ids.get(r.planned.reader.id)} for r in batch])
    tokens = [{"token": token, "user_id": r.planned.reader.id, "post_id": post_id, "created_at": r.row["created_at"]}
              for r in batch for post_id, token in r.minted.items()]
    if tokens:
        connection.execute(insert(ReplyToken), tokens)


def record(engine: Engine, settings: Settings, kind: str, batch: list[Ready],
           again: Callable[[Ready], Ready]) -> list[str]:
    """Record a batch in one transaction; each reader's outcome (``queued``, ``empty`` or
    ``already``). A conflicting batch is retried reader by reader; a reader whose period
    is free but who clashed on a token (a notification made the same reply token
    meanwhile) is composed ``again`` once."""
    try:
        with transaction(engine) as session:
            write(session, settings, kind, batch)
        return ["queued" if r.mail is not None else "empty" for r in batch]
    except IntegrityError:
        if len(batch) > 1:
            return [record(engine, settings, kind, [r], again)[0] for r in batch]
    ready = batch[0]
    if period_taken(engine, kind, ready.planned.reader.id, ready.planned.period):
        return ["already"]
    try:
        with transaction(engine) as session:
            write(session, settings, kind, [again(ready)])
    except IntegrityError:
        return ["already"]
    return ["queued" if ready.mail is not None else "empty"]


def period_taken(engine: Engine, kind: str, user_id: int, period: str) -> bool:
    with transaction(engine) as session:
        if kind == QUESTION:
            query = select(Checkin.id).where(Checkin.user_id == user_id, Checkin.day == period)
        else:
            query = select(CheckinMail.id).where(CheckinMail.user_id == user_id, CheckinMail.kind == kind,
                                                 CheckinMail.period == period)
        return session.exec(query).first() is not None


def taken_periods(session: Session, kind: str, wanted: dict[int, str]) -> set[tuple[int, str]]:
    """Which (reader, period) pairs were sent (or recorded empty) before."""
    taken: set[tuple[int, str]] = set()
    periods = sorted(set(wanted.values()))
    for ids in chunks(sorted(wanted)):
        if kind == QUESTION:
            query: Any = select(Checkin.user_id, Checkin.day).where(col(Checkin.user_id).in_(ids),
                                                                    col(Checkin.day).in_(periods))
        else:
            query = select(CheckinMail.user_id, CheckinMail.period).where(
                CheckinMail.kind == kind, col(CheckinMail.user_id).in_(ids), col(CheckinMail.period).in_(periods))
        taken.update(session.exec(query).all())
    return taken


class Runner:
    """Plans, composes and records one kind of mail in batches; shared by the three."""

    def __init__(self, settings: Settings, engine: Engine, kind: str, now: datetime, *, dry_run: bool,
                 on_queued: Callable[[], None] | None, stopping: threading.Event | None) -> None:
        self.settings, self.engine, self.kind, self.now = settings, engine, kind, now
        self.dry_run, self.on_queued, self.stopping = dry_run, on_queued, stopping
        self.report = Report(kind)

    def plan(self, wanted: dict[int, str], taken: set[tuple[int, str]], readers: dict[int, Reader],
             count: int = 0) -> list[Planned]:
        """The mails to compose: each wanted (reader, period) not already recorded; the
        others are left out, saying so. ``count``: the items, where known before composing."""
        due = []
        for user_id, period in wanted.items():
            if (user_id, period) in taken:
                self.report.leave_out(readers[user_id], f"already sent for {period}")
                self.report.already += 1
            else:
                due.append(Planned(readers[user_id], period, count))
        return due

    def run(self, due: list[Planned], prepare: Callable[[list[Planned]], list[Ready]]) -> Report:
        """Compose and record ``due`` in batches, the next composed while the last is
        recorded (:mod:`~statusmail.outbound.fanout`). A mail that lost a race is
        composed again from its plan. A dry run counts what each mail would hold, composing
        and recording nothing."""
        def again(ready: Ready) -> Ready:
            return prepare([ready.planned])[0]

        def record_batch(ready: list[Ready]) -> list[str]:
            if self.dry_run:
                return ["queued" if r.planned.count else "empty" for r in ready]
            return record(self.engine, self.settings, self.kind, ready, again)

        size = BATCH[self.kind]
        compose_while_recording((prepare(due[start:start + size]) for start in range(0, len(due), size)),
                                record_batch, self.tally, on_queued=None if self.dry_run else self.on_queued,
                                stopping=self.stopping, thread_name="checkin-record")
        return self.report

    def tally(self, ready: list[Ready], outcomes: list[str]) -> None:
        if self.dry_run:
            self.report.planned += [r.planned for r in ready]
        for r, outcome in zip(ready, outcomes):
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)
            if outcome == "already":
                self.report.leave_out(r.planned.reader, f"already sent for {r.planned.period}")
            elif outcome == "empty":
                self.report.leave_out(r.planned.reader, EMPTY_WHY[self.kind].format(period=r.planned.period))


EMPTY_WHY = {
    ROUNDUP: "nothing new: nobody in their teams answered on {period}",
    ROLLUP: "nothing new: nobody below them posted in {period}",
}


def common_reasons(reader: Reader) -> str:
    """Why a reader gets no check-in mail at all, or ""."""
    if reader.suspended:
        return "mail to this user is suspended or banned"
    return ""


# --- the question -------------------------------------------------------------------------


def compose_question(settings: Settings, reader: Reader, day: str, token: str, now: datetime) -> EmailMessage:
    address = token_address(token, settings)
    local = now.astimezone(reader.zone)
    question = settings.checkins.question
    draft = Draft(to=reader.email, to_name=reader.name, subject=question, template="checkin/question",
                  context={"name": reader.display_name, "question": question, "day": day_label(day),
                           "tag": settings.checkins.tag, "reply_address": address,
                           "reply_url": reply_link(address, question), "time": f"{local:%H:%M}"},
                  reply_to=address, thread_topic=question, thread_index=new_thread_index(now), user_id=reader.id)
    return build_message(draft, settings, now=now)


def day_label(day: str) -> str:
    """``Thu 26 Nov`` for ``2026-11-26``: English names, whatever the server's locale."""
    from statusmail.outbound.digest import DAYS, MONTHS

    moment = datetime.fromisoformat(day)
    return f"{DAYS[moment.weekday()]} {moment.day} {MONTHS[moment.month - 1]}"


def send_questions(settings: Settings, engine: Engine, *, now: datetime | None = None,
                   user_ids: Sequence[int] | None = None, force: bool = False, dry_run: bool = False,
                   on_queued: Callable[[], None] | None = None, stopping: threading.Event | None = None) -> Report:
    """Ask every user whose question is due at ``now`` (``force``: due or not)."""
    now = now or utcnow()
    runner = Runner(settings, engine, QUESTION, now, dry_run=dry_run, on_queued=on_queued, stopping=stopping)
    report = runner.report
    with transaction(engine) as session:
        readers = [r for r in load_readers(session, settings) if user_ids is None or r.id in user_ids]
        wanted: dict[int, str] = {}
        for reader in readers:
            why = common_reasons(reader) or ("" if reader.checkin else "check-ins turned off")
            day = question_day(now.astimezone(reader.zone), settings, force=force)
            if why:
                report.leave_out(reader, why)
            elif day is None:
                report.leave_out(reader, f"not due yet: the question goes out at {settings.checkins.hour}:00 on "
                                         f"{', '.join(settings.checkins.days)} ({reader.zone})")
            else:
                wanted[reader.id] = day
        taken = taken_periods(session, QUESTION, wanted)
    due = runner.plan(wanted, taken, {r.id: r for r in readers}, count=1)  # one question

    def prepare(batch: list[Planned]) -> list[Ready]:
        tokens = new_tokens(len(batch))
        return [Ready(p, None if dry_run else serialize(compose_question(settings, p.reader, p.period, token, now)),
                      {"user_id": p.reader.id, "day": p.period, "token": token, "answer_post_id": None,
                       "skipped": False, "created_at": now})
                for p, token in zip(batch, tokens)]

    return runner.run(due, prepare)


# --- the round-up -------------------------------------------------------------------------


def compose_roundup(settings: Settings, reader: Reader, day: str, teams: list[TeamAnswers], tokens: dict[int, str],
                    now: datetime) -> EmailMessage:
    sections = []
    count = 0
    for team in teams:
        entries = []
        for answer in team.answers:
            address = token_address(tokens[answer.post_id], settings)
            entries.append({"author": answer.author, "time": local_time(answer.created_at, reader),  # type: ignore[arg-type]
                            "text": answer.body, "reply_count": answer.reply_count, "likes": answer.likes,
                            "reply_address": address, "reply_url": reply_link(address, answer.subject)})
        count += len(entries)
        sections.append({"team": team.team, "entries": entries, "skipped": team.skipped})
    label = day_label(day)
    subject = f"{settings.gateway.site_name} round-up for {label}: {count} answer{'' if count == 1 else 's'}"
    draft = Draft(to=reader.email, to_name=reader.name, subject=subject, template="checkin/roundup",
                  context={"name": reader.display_name, "day": label, "question": settings.checkins.question,
                           "count": count, "sections": sections, "tag": settings.checkins.tag},
                  reply_to=settings.gateway.request_address, thread_topic=subject,
                  thread_index=new_thread_index(now), user_id=reader.id)
    return build_message(draft, settings, now=now)


def send_roundups(settings: Settings, engine: Engine, *, now: datetime | None = None, team: str | None = None,
                  force: bool = False, dry_run: bool = False, on_queued: Callable[[], None] | None = None,
                  stopping: threading.Event | None = None) -> Report:
    """Every round-up due at ``now``: one mail per reader with the answers of the day
    before (the previous working day) of each team they are in or manage."""
    now = now or utcnow()
    runner = Runner(settings, engine, ROUNDUP, now, dry_run=dry_run, on_queued=on_queued, stopping=stopping)
    report = runner.report
    with transaction(engine) as session:
        chart = OrgChart.of(load_readers(session, settings))
        wanted: dict[int, str] = {}
        for reader in chart.readers.values():
            teams = chart.roundup_teams(reader)
            if team is not None and team not in teams:
                continue
            why = common_reasons(reader) or ("" if reader.checkin else "check-ins turned off")
            day = roundup_day(now.astimezone(reader.zone), settings, force=force)
            if why:
                report.leave_out(reader, why)
            elif not teams:
                report.leave_out(reader, "in no team and manages no one in a team")
            elif day is None:
                report.leave_out(reader, f"not due yet: round-ups go out at {settings.checkins.roundup_hour}:00 "
                                         f"on working days ({reader.zone})")
            else:
                wanted[reader.id] = day
        taken = taken_periods(session, ROUNDUP, wanted)
        due = runner.plan(wanted, taken, chart.readers)
        days = sorted({p.period for p in due})
        answers = load_answers(session, chart, days)
        skips = load_skips(session, chart, days)

    def prepare(batch: list[Planned]) -> list[Ready]:
        contents = {p.reader.id: roundup_for(chart, p.reader, p.period, answers, skips) for p in batch}
        wanted_posts = {uid: [a.post_id for t in teams for a in t.answers] for uid, teams in contents.items() if teams}
        with transaction(engine) as session:
            known = known_tokens(session, wanted_posts)
        ready = []
        for planned in batch:
            teams = contents[planned.reader.id]
            count = sum(len(t.answers) for t in teams)
            row = {"user_id": planned.reader.id, "kind": ROUNDUP, "period": planned.period, "covered_until": now,
                   "item_count": count, "created_at": now}
            if not count:
                ready.append(Ready(Planned(planned.reader, planned.period, 0), None, row))
                continue
            tokens, minted = tokens_for_mail(known, planned.reader.id, wanted_posts[planned.reader.id])
            mail = None if dry_run else serialize(compose_roundup(settings, planned.reader, planned.period, teams,
                                                                  tokens, now))
            ready.append(Ready(Planned(planned.reader, planned.period, count), mail, row, minted))
        return ready

    return runner.run(due, prepare)


# --- the leader's week --------------------------------------------------------------------


def compose_rollup(settings: Settings, reader: Reader, week: Week, tokens: dict[int, str], window: Window,
                   now: datetime) -> EmailMessage:
    teams = []
    for team in week.teams:
        entries = []
        for post in team.posts:
            address = token_address(tokens[post.id], settings)
            subject = window.thread_subject(post)
            entries.append({"author": week.authors.get(post.author_id, ""), "time": local_time(post.created_at, reader),  # type: ignore[arg-type]
                            "text": post.body, "reply_count": window.reply_count(post), "is_reply": post.is_reply,
                            "thread_subject": subject, "reply_address": address,
                            "reply_url": reply_link(address, subject)})
        teams.append({"team": team.team, "entries": entries, "more": team.more})
    count = week.count
    subject = f"Your organisation this week on {settings.gateway.site_name}: {count} post{'' if count == 1 else 's'}"
    draft = Draft(to=reader.email, to_name=reader.name, subject=subject, template="checkin/rollup",
                  context={"name": reader.display_name, "since": local_time(week.since, reader),  # type: ignore[arg-type]
                           "count": count, "teams": teams, "more_teams": week.more_teams,
                           "more_posts": week.more_posts},
                  reply_to=settings.gateway.request_address, thread_topic=subject,
                  thread_index=new_thread_index(now), user_id=reader.id)
    return build_message(draft, settings, now=now)


def previous_week_ends(session: Session, user_ids: Sequence[int]) -> dict[int, datetime]:
    ends: dict[int, datetime] = {}
    for ids in chunks(list(user_ids)):
        ends.update(session.exec(select(col(CheckinMail.user_id), func.max(CheckinMail.covered_until))
                                 .where(CheckinMail.kind == ROLLUP, col(CheckinMail.user_id).in_(ids))
                                 .group_by(col(CheckinMail.user_id))).all())
    return ends


def send_rollups(settings: Settings, engine: Engine, *, now: datetime | None = None,
                 user_ids: Sequence[int] | None = None, force: bool = False, dry_run: bool = False,
                 on_queued: Callable[[], None] | None = None, stopping: threading.Event | None = None) -> Report:
    """Every leader's week due at ``now``: each user who manages someone gets the posts
    of everyone below them since their previous week (a week back for the first)."""
    now = now or utcnow()
    runner = Runner(settings, engine, ROLLUP, now, dry_run=dry_run, on_queued=on_queued, stopping=stopping)
    report = runner.report
    with transaction(engine) as session:
        chart = OrgChart.of(load_readers(session, settings))
        wanted: dict[int, str] = {}
        for reader in chart.readers.values():
            if user_ids is not None and reader.id not in user_ids:
                continue
            if not chart.manages_someone(reader):
                if user_ids is not None:
                    report.leave_out(reader, "manages no one")
                continue
            why = common_reasons(reader) or ("digest turned off (unsubscribed)" if reader.digest == "off" else "")
            week = rollup_week(now.astimezone(reader.zone), settings, force=force)
            if why:
                report.leave_out(reader, why)
            elif week is None:
                report.leave_out(reader, f"not due yet: the week goes out on {settings.digest.weekly_day} at "
                                         f"{settings.digest.hour}:00 ({reader.zone})")
            else:
                wanted[reader.id] = week
        taken = taken_periods(session, ROLLUP, wanted)
        due = runner.plan(wanted, taken, chart.readers)
        ends = previous_week_ends(session, [p.reader.id for p in due])
        since = {p.reader.id: max(ends[p.reader.id], now - MAX_WEEK_LOOKBACK) if p.reader.id in ends else now - WEEK
                 for p in due}
        window = load_threads(session, min(since.values()), now) if due else None

    def prepare(batch: list[Planned]) -> list[Ready]:
        assert window is not None
        weeks = {p.reader.id: week_for(chart, window, p.reader, since[p.reader.id]) for p in batch}
        wanted_posts = {uid: [post.id for post in week.posts()] for uid, week in weeks.items() if week.count}
        with transaction(engine) as session:
            known = known_tokens(session, wanted_posts)
        ready = []
        for planned in batch:
            week = weeks[planned.reader.id]
            row = {"user_id": planned.reader.id, "kind": ROLLUP, "period": planned.period, "covered_until": now,
                   "item_count": week.count, "created_at": now}
            if not week.count:
                ready.append(Ready(Planned(planned.reader, planned.period, 0), None, row))
                continue
            tokens, minted = tokens_for_mail(known, planned.reader.id, wanted_posts[planned.reader.id])
            mail = None if dry_run else serialize(compose_rollup(settings, planned.reader, week, tokens, window, now))
            ready.append(Ready(Planned(planned.reader, planned.period, week.count), mail, row, minted))
        return ready

    return runner.run(due, prepare)


# --- previews -----------------------------------------------------------------------------


def preview_question(settings: Settings, engine: Engine, user_id: int, now: datetime | None = None) -> EmailMessage:
    """The question as ``user_id`` would get it; changes nothing (the token is a placeholder)."""
    now = now or utcnow()
    with transaction(engine) as session:
        [reader] = [r for r in load_readers(session, settings) if r.id == user_id]
    return compose_question(settings, reader, now.astimezone(reader.zone).date().isoformat(), PREVIEW_TOKEN, now)


# --- the scheduler ------------------------------------------------------------------------


def send_due(settings: Settings, engine: Engine, now: datetime, on_queued: Callable[[], None] | None = None,
             stopping: threading.Event | None = None) -> list[Report]:
    """One look: the questions, round-ups and (with ``leader_rollup``) weeks due now."""
    if not settings.checkins.enabled:
        return []
    reports = [send_questions(settings, engine, now=now, on_queued=on_queued, stopping=stopping),
               send_roundups(settings, engine, now=now, on_queued=on_queued, stopping=stopping)]
    if settings.checkins.leader_rollup:
        reports.append(send_rollups(settings, engine, now=now, on_queued=on_queued, stopping=stopping))
    return reports


class CheckinScheduler(Scheduler):
    """Part of ``serve``: once a minute, sends the check-in mail whose hour has come."""

    name = "check-ins"

    @property
    def enabled(self) -> bool:
        return self.settings.checkins.enabled

    def send_due(self, now: datetime, poke: Callable[[], None], stopping: threading.Event) -> list[Report]:
        reports = send_due(self.settings, self.engine, now, poke, stopping)
        for report in reports:
            if report.queued or report.empty:
                log.info("check-ins: %d %s mail(s) queued, %d with nothing to say", report.queued, report.kind,
                         report.empty)
        return reports
