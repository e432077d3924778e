"""Check-in fan-out: the daily question, the team round-ups and the leaders' weeks for a
whole company, composed, recorded and handed to an SMTP relay.

Why: at 16:00 in one timezone thousands of questions fall due in the same minute, and at
09:00 the next working day as many round-ups; on the weekly day every manager's view of
their organisation. The yardstick is the work that cannot be avoided, rendering each
mail (text and HTML templates) and serializing it to bytes; the question is what the
rest costs: planning (readers, org chart, who already had theirs), loading the day's
answers or the week's posts, reply tokens, the outbox and period rows (one transaction
per 100 readers), and the outbox worker's SMTP hand-off. Target: each of the three at
no less than 80% of its render-only rate, in under 500 MB.

The data set, built by bulk INSERT: N users in N/20 teams across four timezones, an org
tree five levels deep (each team's first member leads it; every tenth lead is a
director over nine other leads, every hundredth a VP over the directors, one CEO);
yesterday's check-in: 70% answered (a few with a second answer, a reply by a teammate
on every fifth answer), 10% skipped, 2% of the answers hidden. Then for each mail, in
one run:

1. render-only: the mails' content selected in memory from the same loaded data, the
   timer covering only ``compose_*`` + ``as_bytes`` (tokens made up, nothing stored);
2. send: ``send_questions|send_roundups|send_rollups(force=True)`` (what ``serve``'s
   check-in scheduler and ``statusmail checkins send|roundup|rollup --now`` run) in
   this process, while a subprocess runs ``serve``'s ``OutboxWorker`` into an aiosmtpd
   capture server (a third process), poked after each recorded batch as the scheduler
   pokes it in ``serve``; the clock stops when the capture server has the last mail.
   Printed beside it: the CPU seconds each process spent meanwhile.

Each kind is rendered and sent ``--rounds`` times from the same store (what a round wrote
is deleted before the next), and the median ratio is the result: on a small shared
machine single runs of the same work differ by a fifth.

Run: .venv/bin/python bench/checkins.py [--users 10000] [--rounds 3] [--only "leaders' weeks"]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.policy import SMTP
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import col, delete, func, select  # noqa: E402

from bench.digest import (  # noqa: E402
    WORDS,
    insert_rows,
    run_capture_server,
    run_outbox_worker,
    send_all,
)
from statusmail.config import load_settings  # noqa: E402
from statusmail.outbound import checkins  # noqa: E402
from statusmail.outbound.checkin_content import (  # noqa: E402
    OrgChart,
    load_answers,
    load_readers,
    load_skips,
    roundup_for,
    week_for,
)
from statusmail.outbound.checkin_schedule import previous_working_day  # noqa: E402
from statusmail.outbound.digest_content import load_threads  # noqa: E402
from statusmail.outbound.tokens import new_token  # noqa: E402
from statusmail.store.db import make_engine, transaction, upgrade  # noqa: E402
from statusmail.store.models import (  # noqa: E402
    Checkin,
    CheckinMail,
    Outbox,
    OutboxBody,
    Post,
    PostTag,
    ReplyToken,
    User,
)

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
TEAM_SIZE = 20
# A Tuesday: in all four zones the round-up carries Monday's answers.
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
YESTERDAY = "2026-11-30"


def org(users: int) -> list[dict[str, Any]]:
    """Users 1..N; team t holds users 20t+1..20t+20, the first of them its lead."""
    teams = users // TEAM_SIZE
    lead = [t * TEAM_SIZE + 1 for t in range(teams)]

    def manager_of_lead(t: int) -> int | None:
        if t == 0:
            return None  # the CEO
        if t % 100 == 0:
            return lead[0]  # a VP reports to the CEO
        if t % 10 == 0:
            return lead[t - t % 100]  # a director reports to their VP
        return lead[t - t % 10]  # a lead reports to their director
    rows = []
    for i in range(1, users + 1):
        t = (i - 1) // TEAM_SIZE
        manager = manager_of_lead(t) if i == lead[t] else lead[t]
        rows.append({"id": i, "email": f"u{i}@corp.example", "name": f"User {i}", "handle": f"u{i}", "role": "staff",
                     "team": f"team-{t:03d}", "manager_email": f"u{manager}@corp.example" if manager else "",
                     "timezone": ZONES[t % len(ZONES)], "digest": "", "checkin": True, "banned": False,
                     "ban_reason": "", "hard_bounces": 0, "mail_suspended": False,
                     "created_at": NOW - timedelta(days=60)})
    return rows


def build(engine: Any, users: int, seed: int = 19) -> tuple[int, int]:
    """Users, yesterday's questions and answers. Returns (answers, posts)."""
    rng = random.Random(seed)
    insert_rows(engine, User, org(users))
    answered_at = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    posts, tags, rows = [], [], []
    post_id = 0
    for user in range(1, users + 1):
        roll = rng.random()
        row = {"user_id": user, "day": YESTERDAY, "token": new_token(), "outbox_id": None, "answer_post_id": None,
               "skipped": roll >= 0.7 and roll < 0.8, "created_at": answered_at - timedelta(hours=1)}
        if roll < 0.7:
            post_id += 1
            root = post_id
            body = " ".join(rng.choices(WORDS, k=rng.randint(6, 25))).capitalize()
            posts.append({"id": root, "author_id": user, "body": body, "trimmed": "", "created_at": answered_at,
                          "thread_id": root, "parent_id": None,
                          "status": "hidden" if rng.random() < 0.02 else "visible", "status_reason": "",
                          "message_id": f"<a{root}@corp.example>", "thread_index": ""})
            tags.append({"post_id": root, "tag": "checkin"})
            row["answer_post_id"] = root
            followups = [user] if rng.random() < 0.05 else []
            if rng.random() < 0.2:
                followups.append(((user - 1) // TEAM_SIZE) * TEAM_SIZE + rng.randint(1, TEAM_SIZE))
            for author in followups:
                post_id += 1
                posts.append({"id": post_id, "author_id": author, "body": "Nice, " + " ".join(rng.choices(WORDS, k=6)),
                              "trimmed": "", "created_at": answered_at + timedelta(minutes=30), "thread_id": root,
                              "parent_id": root, "status": "visible", "status_reason": "",
                              "message_id": f"<r{post_id}@corp.example>", "thread_index": ""})
        rows.append(row)
    insert_rows(engine, Post, posts)
    insert_rows(engine, PostTag, tags)
    insert_rows(engine, Checkin, rows)
    return sum(1 for r in rows if r["answer_post_id"]), len(posts)


# --- render-only ceilings ------------------------------------------------------------------


def timed(compose: Callable[[], Any]) -> tuple[float, int]:
    started = time.perf_counter()
    raw = compose().as_bytes(policy=SMTP)
    return time.perf_counter() - started, len(raw)


def render_questions(settings: Any, engine: Any) -> tuple[int, float, int]:
    with transaction(engine) as session:
        readers = load_readers(session, settings)
    spent = size = 0.0
    for reader in readers:
        day = NOW.astimezone(reader.zone).date().isoformat()
        seconds, length = timed(lambda: checkins.compose_question(settings, reader, day, new_token(), NOW))  # noqa: B023
        spent += seconds
        size += length
    return len(readers), spent, int(size)


def render_roundups(settings: Any, engine: Any) -> tuple[int, float, int]:
    with transaction(engine) as session:
        chart = OrgChart.of(load_readers(session, settings))
        answers = load_answers(session, chart, [YESTERDAY])
        skips = load_skips(session, chart, [YESTERDAY])
    count, spent, size = 0, 0.0, 0
    for reader in chart.readers.values():
        day = previous_working_day(NOW.astimezone(reader.zone).date(), settings).isoformat()
        teams = roundup_for(chart, reader, day, answers, skips)
        if not teams:
            continue
        tokens = {a.post_id: new_token() for t in teams for a in t.answers}
        seconds, length = timed(lambda: checkins.compose_roundup(settings, reader, day, teams, tokens, NOW))  # noqa: B023
        count, spent, size = count + 1, spent + seconds, size + length
    return count, spent, size


def render_rollups(settings: Any, engine: Any) -> tuple[int, float, int]:
    since = NOW - checkins.WEEK
    with transaction(engine) as session:
        chart = OrgChart.of(load_readers(session, settings))
        window = load_threads(session, since, NOW)
    count, spent, size = 0, 0.0, 0
    for reader in chart.readers.values():
        if not chart.manages_someone(reader):
            continue
        week = week_for(chart, window, reader, since)
        if not week.count:
            continue
        tokens = {p.id: new_token() for p in week.posts()}
        seconds, length = timed(lambda: checkins.compose_rollup(settings, reader, week, tokens, window, NOW))  # noqa: B023
        count, spent, size = count + 1, spent + seconds, size + length
    return count, spent, size


# --- the full path -------------------------------------------------------------------------


def high_water_marks(engine: Any) -> dict[type[Any], int]:
    """The highest id of each table a send writes, before the first round of a kind."""
    with transaction(engine) as session:
        return {model: int(session.exec(select(func.coalesce(func.max(model.id), 0))).one() or 0)
                for model in (Outbox, Checkin, CheckinMail, ReplyToken)}


def undo_send(engine: Any, marks: dict[type[Any], int]) -> None:
    """Delete what a round wrote (its mail, period rows and new tokens), so the next
    round of the same kind composes, mints and records exactly as much again."""
    with transaction(engine) as session:
        session.exec(delete(OutboxBody).where(col(OutboxBody.outbox_id) > marks[Outbox]))
        for model, highest in marks.items():
            session.exec(delete(model).where(col(model.id) > highest))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000, help="company size (example: --users 2000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="render and send each kind this many times; the median ratio counts (example: --rounds 1)")
    parser.add_argument("--only", default="questions,round-ups,leaders' weeks",
                        help="which mails, comma-separated (example: --only \"leaders' weeks\")")
    args = parser.parse_args()

    counter, size = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)
    receive, send = multiprocessing.Pipe(duplex=False)
    capture = multiprocessing.Process(target=run_capture_server, args=(send, counter, size), daemon=True)
    capture.start()
    port = receive.recv()
    failed = False

    with tempfile.TemporaryDirectory(prefix="checkins-bench-") as tmp:
        config = Path(tmp) / "statusmail.toml"
        config.write_text(f"""
[gateway]
address = "status@corp.example"
request_address = "status-request@corp.example"
database_url = "sqlite:///{tmp}/bench.db"
secret_key_file = "{tmp}/secret.key"
[outbound]
transport = "smtp://127.0.0.1:{port}"
[policy]
allowed_domains = ["corp.example"]
[checkins]
enabled = true
""")
        settings = load_settings(str(config), environ={})
        engine = make_engine(settings.gateway.database_url)
        upgrade(engine)
        started = time.perf_counter()
        answers, posts = build(engine, args.users)
        print(f"data set: {args.users} users in {args.users // TEAM_SIZE} teams, org tree 5 levels, "
              f"{answers} answers yesterday, {posts} posts ({time.perf_counter() - started:.1f} s to build)")

        stop = multiprocessing.Event()
        pokes, poke_end = multiprocessing.Pipe(duplex=False)
        worker = multiprocessing.Process(target=run_outbox_worker, args=(str(config), stop, pokes))
        worker.start()
        for name, render, sender in (("questions", render_questions, checkins.send_questions),
                                     ("round-ups", render_roundups, checkins.send_roundups),
                                     ("leaders' weeks", render_rollups, checkins.send_rollups)):
            if name not in args.only.split(","):
                continue
            marks = high_water_marks(engine)
            ratios = []
            for round_ in range(1, args.rounds + 1):
                if round_ > 1:
                    undo_send(engine, marks)  # every round starts from the same store
                before = counter.value
                rendered, render_seconds, render_bytes = render(settings, engine)
                render_rate = rendered / render_seconds
                pids = (os.getpid(), worker.pid or 0, capture.pid or 0)
                cpu_before = [cpu_seconds(p) for p in pids]
                # The worker is poked after each recorded batch, as serve's check-in scheduler pokes its own.
                queued, recorded, send_seconds = send_all(
                    lambda: sender(settings, engine, now=NOW, force=True, on_queued=lambda: poke_end.send(None)),  # noqa: B023
                    engine, counter)
                cpu = [cpu_seconds(p) - b for p, b in zip(pids, cpu_before)]
                send_rate = queued / send_seconds
                ratios.append(send_rate / render_rate)
                print(f"{name} (round {round_}): render only {rendered} in {render_seconds:.2f} s = "
                      f"{render_rate:.0f}/s (mean {render_bytes / max(rendered, 1) / 1024:.1f} KiB); send {queued} in "
                      f"{send_seconds:.2f} s (recorded after {recorded:.2f} s) = {send_rate:.0f}/s; captured {counter.value - before}; "
                      f"ratio {ratios[-1]:.2f}; CPU s while sending: composer {cpu[0]:.1f}, "
                      f"outbox worker {cpu[1]:.1f}, capture server {cpu[2]:.1f}")
                failed |= queued != rendered or counter.value - before != queued
            print(f"{name}: median ratio of {len(ratios)} rounds {statistics.median(ratios):.2f} (target >= 0.80)")
        stop.set()
        worker.join(60)
        with transaction(engine) as session:
            mails = session.exec(select(CheckinMail.kind, func.count()).group_by(CheckinMail.kind)).all()
            outbox = session.exec(select(func.count()).select_from(Outbox)).one()
        print(f"period rows: {dict(mails)}; outbox rows: {outbox}; captured: {counter.value} messages, "
              f"{size.value / 2**20:.0f} MiB")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MiB (target < 500); largest child (worker or capture): "
              f"{children:.0f} MiB")
        engine.dispose()
    capture.terminate()
    capture.join(10)
    if failed:
        print("MISMATCH: every rendered mail must be queued once and reach the server once", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
