"""What check-in mail holds (SPEC §7): the readers, the org chart, a day's answers and a
leader's week.

Everything a run needs is loaded once, in a few queries, as slim tuples; each reader's
mail is then built in memory. Only visible posts ever appear: an answer that is held,
hidden or deleted is not an answer in any round-up, and the leader's week is built on
the threads of the digests' news window (:func:`~statusmail.outbound.digest_content.load_threads`),
which already leaves out every post that is not visible and every reply in a thread
whose root is not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.outbound.digest_content import Window, WindowPost, chunks
from statusmail.outbound.digest_schedule import zone_of
from statusmail.outbound.notify import first_line
from statusmail.store.likes import like_counts
from statusmail.store.models import Checkin, Post, User

NO_TEAM = ""
# A leader's week is read, not searched: at most this many posts per team and teams per
# mail; the rest is counted ("and 12 more").
TEAM_LIMIT = 10
MAX_TEAMS = 30


@dataclass(frozen=True, slots=True)
class Reader:
    """The columns of a user that check-in mail needs."""

    id: int
    email: str
    name: str
    team: str
    manager: str  # the manager's address, or ""
    zone: tzinfo
    checkin: bool
    digest: str  # daily | weekly | off, the default applied
    suspended: bool  # banned, or mail suspended after hard bounces

    @property
    def display_name(self) -> str:
        return self.name or self.email


def load_readers(session: Session, settings: Settings) -> list[Reader]:
    """Every user, in id order: the org chart needs them all, whoever is mailed."""
    query = core_select(col(User.id), col(User.email), col(User.name), col(User.team), col(User.manager_email),
                        col(User.timezone), col(User.checkin), col(User.digest), col(User.banned),
                        col(User.mail_suspended)).order_by(col(User.id))
    return [Reader(uid, email, name, team, manager, zone_of(tz, settings), bool(checkin),
                   digest or settings.digest.default_frequency, bool(banned or suspended))
            for uid, email, name, team, manager, tz, checkin, digest, banned, suspended in session.execute(query)]


@dataclass
class OrgChart:
    """Who reports to whom, and which teams a reader hears about."""

    readers: dict[int, Reader]
    by_email: dict[str, Reader] = field(default_factory=dict)
    reports: dict[str, list[Reader]] = field(default_factory=lambda: defaultdict(list))  # manager address -> direct reports
    members: dict[str, list[Reader]] = field(default_factory=lambda: defaultdict(list))  # team -> members

    @classmethod
    def of(cls, readers: Iterable[Reader]) -> OrgChart:
        chart = cls({r.id: r for r in readers})
        for reader in chart.readers.values():
            chart.by_email[reader.email] = reader
            if reader.manager and reader.manager != reader.email:
                chart.reports[reader.manager].append(reader)
            if reader.team:
                chart.members[reader.team].append(reader)
        return chart

    def manages_someone(self, reader: Reader) -> bool:
        return bool(self.reports.get(reader.email))

    def roundup_teams(self, reader: Reader) -> list[str]:
        """The teams whose round-up ``reader`` gets: their own, and those of their reports."""
        teams = [reader.team] if reader.team else []
        for report in self.reports.get(reader.email, ()):
            if report.team and report.team not in teams:
                teams.append(report.team)
        return teams

    def below(self, reader: Reader) -> list[Reader]:
        """Everyone below ``reader`` in the org chart, transitively; a cycle in the
        directory (A manages B manages A) ends where it closes."""
        seen, found, stack = {reader.id}, [], list(self.reports.get(reader.email, ()))
        while stack:
            person = stack.pop()
            if person.id in seen:
                continue
            seen.add(person.id)
            found.append(person)
            stack.extend(self.reports.get(person.email, ()))
        return found


# --- the round-up -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One member's answer for a day, as the round-up shows it."""

    post_id: int
    author_id: int
    author: str
    created_at: datetime
    body: str
    subject: str  # first line: a reply link's subject is "Re: " + this
    reply_count: int
    likes: int


@dataclass
class TeamAnswers:
    team: str
    answers: list[Answer]
    skipped: int = 0


def load_answers(session: Session, chart: OrgChart, days: Sequence[str]) -> dict[tuple[str, str], list[Answer]]:
    """Every visible answer of ``days``, by (day, author's team), oldest first; a few queries."""
    if not days:
        return {}
    rows = list(session.execute(core_select(col(Checkin.day), col(Post.id), col(Post.author_id), col(Post.created_at),
                                            col(Post.body))
                             .join(Post, col(Post.id) == Checkin.answer_post_id)
                             .where(col(Checkin.day).in_(list(days)), col(Post.status) == "visible",
                                    col(Post.id) == col(Post.thread_id))
                             .order_by(col(Post.created_at), col(Post.id))))
    counts: dict[int, int] = {}
    ids = [row[1] for row in rows]
    for part in chunks(ids):
        counts.update(session.exec(select(col(Post.thread_id), func.count())  # type: ignore[arg-type]
                                   .where(col(Post.thread_id).in_(list(part)), col(Post.id) != col(Post.thread_id),
                                          Post.status == "visible").group_by(col(Post.thread_id))).all())
    likes = like_counts(session, ids)
    found: dict[tuple[str, str], list[Answer]] = defaultdict(list)
    for day, post_id, author_id, created_at, body in rows:
        author = chart.readers.get(author_id)
        if author is None:
            continue
        found[(day, author.team)].append(Answer(post_id, author_id, author.display_name, created_at, body,
                                                first_line(body), counts.get(post_id, 0), likes.get(post_id, 0)))
    return found


def load_skips(session: Session, chart: OrgChart, days: Sequence[str]) -> dict[tuple[str, str], int]:
    """How many members of each team said ``skip``, by (day, team)."""
    skips: dict[tuple[str, str], int] = defaultdict(int)
    if days:
        for day, user_id in session.exec(select(Checkin.day, Checkin.user_id)
                                         .where(col(Checkin.day).in_(list(days)), col(Checkin.skipped).is_(True))):
            author = chart.readers.get(user_id)
            if author is not None:
                skips[(day, author.team)] += 1
    return skips


def roundup_for(chart: OrgChart, reader: Reader, day: str, answers: dict[tuple[str, str], list[Answer]],
                skips: dict[tuple[str, str], int]) -> list[TeamAnswers]:
    """The reader's round-up of ``day``: a section per team they hear about that had answers."""
    return [TeamAnswers(team, answers[(day, team)], skips.get((day, team), 0))
            for team in chart.roundup_teams(reader) if answers.get((day, team))]


# --- the leader's week --------------------------------------------------------------------


@dataclass
class TeamWeek:
    team: str
    posts: list[WindowPost]
    more: int = 0


@dataclass
class Week:
    since: datetime
    until: datetime
    teams: list[TeamWeek]
    more_teams: int = 0
    more_posts: int = 0  # in the teams not shown
    authors: dict[int, str] = field(default_factory=dict)  # user id -> name, for the posts' bylines

    @property
    def count(self) -> int:
        return sum(len(t.posts) + t.more for t in self.teams) + self.more_posts

    def posts(self) -> Iterable[WindowPost]:
        for team in self.teams:
            yield from team.posts


def week_for(chart: OrgChart, window: Window, reader: Reader, since: datetime) -> Week:
    """The visible posts of everyone below ``reader`` after ``since``, by team, most
    discussed first (reply count, then the newest); teams by how much they said."""
    by_team: dict[str, list[WindowPost]] = defaultdict(list)
    authors = {}
    for person in chart.below(reader):
        posts = window.by_author.get(person.id)
        if posts:
            by_team[person.team].extend(p for p in posts if p.created_at > since)
            authors[person.id] = person.display_name
    ranked = []
    for team, posts in by_team.items():
        if not posts:
            continue
        posts.sort(key=lambda p: (window.reply_count(p), p.created_at, p.id), reverse=True)
        ranked.append((sum(window.reply_count(p) for p in posts), len(posts), team, posts))
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
    teams = [TeamWeek(team or NO_TEAM, posts[:TEAM_LIMIT], max(0, len(posts) - TEAM_LIMIT))
             for *_, team, posts in ranked[:MAX_TEAMS]]
    rest = ranked[MAX_TEAMS:]
    return Week(since, window.until, teams, more_teams=len(rest), more_posts=sum(r[1] for r in rest), authors=authors)
