"""Digest fan-out: every reader's digest composed, recorded and handed to an SMTP relay.

Why: at 08:00 in one timezone thousands of digests fall due in the same minute. The
yardstick is the work that cannot be avoided, rendering each digest (text and HTML
templates) and serializing it to bytes; the question is how much the rest costs:
planning, loading the day's news, per-reader selection, reply tokens, the Digest and
outbox rows (one transaction per batch of readers), and the outbox worker's SMTP hand-off. Target:
the full path runs at no less than 80% of the render-only rate, in under 500 MB.

The data set is built directly through the store with bulk inserts: N users in four
timezones, 5 posts per user in the last 24 hours (30% of them replies, a few threads
hot, 1% hidden), tags and mentions, 20 follows per user (17 people, 3 tags). Then, in
one run:

1. render-only: each reader's digest content is selected in memory, and the timer
   covers only ``compose`` + ``as_bytes`` (tokens are made up, nothing is stored);
2. send: ``send_digests(force=True)`` (what ``statusmail digest send --now`` runs) in
   this process, while a subprocess runs ``serve``'s ``OutboxWorker`` with outbound
   transport ``smtp://127.0.0.1:<port>`` into an aiosmtpd capture server (a third
   process); the clock stops when the last digest was accepted by the server. (One
   process for both halves would measure the GIL: an event loop beside a CPU-bound
   thread waits up to the 5 ms switch interval at every SMTP round trip.)

Run: .venv/bin/python bench/digest.py [--users 10000] [--tokens-per-user 30]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import resource
import signal
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

from sqlalchemy import insert  # noqa: E402
from sqlmodel import func, select  # noqa: E402

from statusmail.config import load_settings  # noqa: E402
from statusmail.gil import digest_process  # noqa: E402
from statusmail.outbound.digest import compose, plan, send_digests  # noqa: E402
from statusmail.outbound.digest_content import collect, load_interests, load_window  # noqa: E402
from statusmail.outbound.outbox import OutboxWorker  # noqa: E402
from statusmail.outbound.tokens import new_token, new_tokens  # noqa: E402
from statusmail.outbound.transport import make_transport  # noqa: E402
from statusmail.store.db import make_engine, transaction, upgrade  # noqa: E402
from statusmail.store.models import Digest, Follow, Mention, Outbox, Post, PostTag, ReplyToken, User  # noqa: E402

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
TAGS = [f"topic{n}" for n in range(50)]
WORDS = ("shipped deployed reviewed billing export search latency customers roadmap hiring budget incident "
         "postmortem migration launch quarter numbers feedback design review onboarding release").split()
CHUNK = 5000


# --- the capture server --------------------------------------------------------------------


def run_capture_server(port_pipe: Any, counter: Any, size: Any) -> None:
    """aiosmtpd answering 250 to everything, counting messages and bytes, keeping nothing.

    It reads DATA in chunks as the gateway does (``ChunkedDataSMTP``): the relay it stands
    for is C, and on a two-core machine whatever CPU this stand-in spends is taken from
    the composing it is measured against."""
    from statusmail.gateway.smtpdata import ChunkedDataSMTP as SMTPServer

    class Capture:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            with counter.get_lock():
                counter.value += 1
            with size.get_lock():
                size.value += len(envelope.content)
            return "250 2.0.0 captured"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTPServer(Capture(), decode_data=False, hostname="capture"),
                                          "127.0.0.1", 0)
        port_pipe.send(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


# --- the data set --------------------------------------------------------------------------


def text(rng: random.Random, users: int) -> tuple[str, list[str], list[int]]:
    words = rng.choices(WORDS, k=rng.randint(12, 30))
    tags = [rng.choice(TAGS)] if rng.random() < 0.3 else []
    mentions = [rng.randint(1, users)] if rng.random() < 0.1 else []
    extra = [f"#{t}" for t in tags] + [f"@u{m}" for m in mentions]
    if rng.random() < 0.2:
        extra.append(f"https://wiki.corp.example/page/{rng.randint(1, 9999)}")
    return " ".join(words + extra).capitalize(), tags, mentions


def build(engine: Any, users: int, now: datetime, seed: int = 4, tokens_per_user: int = 0) -> int:
    """Users, a day of posts, tags, mentions and follows, by bulk INSERT; with
    ``tokens_per_user``, the reply tokens each reader already holds for random posts of
    the day (notifications, earlier mail: in production the table is never empty, and
    every token lookup searches it). Returns posts."""
    rng = random.Random(seed)
    rows = [{"id": i, "email": f"u{i}@corp.example", "name": f"User {i}", "handle": f"u{i}", "role": "staff",
             "team": "", "manager_email": "", "timezone": ZONES[i % len(ZONES)], "digest": "", "banned": False,
             "ban_reason": "", "hard_bounces": 0, "mail_suspended": False, "created_at": now - timedelta(days=30)}
            for i in range(1, users + 1)]
    insert_rows(engine, User, rows)

    total = users * 5
    times = sorted(now - timedelta(seconds=rng.uniform(60, 23.5 * 3600)) for _ in range(total))
    roots: list[int] = []
    posts, tags, mentions = [], [], []
    for post_id, created in enumerate(times, 1):
        body, post_tags, post_mentions = text(rng, users)
        parent = None
        if roots and rng.random() < 0.3:
            # Replies favour recent threads, and a few threads draw many answers.
            parent = roots[max(0, len(roots) - 1 - int(rng.paretovariate(1.2)) * 3) % len(roots)]
        posts.append({"id": post_id, "author_id": rng.randint(1, users), "body": body, "trimmed": body,
                      "created_at": created, "thread_id": parent or post_id, "parent_id": parent,
                      "status": "hidden" if rng.random() < 0.01 else "visible", "status_reason": "",
                      "message_id": f"<p{post_id}@corp.example>", "thread_index": ""})
        if parent is None:
            roots.append(post_id)
        tags += [{"post_id": post_id, "tag": t} for t in post_tags]
        mentions += [{"post_id": post_id, "user_id": m} for m in post_mentions]
    insert_rows(engine, Post, posts)
    insert_rows(engine, PostTag, tags)
    insert_rows(engine, Mention, mentions)

    follows = []
    for user in range(1, users + 1):
        targets = {rng.randint(1, users) for _ in range(17)} - {user}
        follows += [{"user_id": user, "target_user_id": t, "tag": "", "active": True, "origin": "explicit",
                     "created_at": now} for t in targets]
        follows += [{"user_id": user, "target_user_id": None, "tag": t, "active": True, "origin": "explicit",
                     "created_at": now} for t in rng.sample(TAGS, 3)]
    insert_rows(engine, Follow, follows)

    held = [(user, post_id) for user in range(1, users + 1)
            for post_id in rng.sample(range(1, total + 1), min(tokens_per_user, total))]
    insert_rows(engine, ReplyToken, [{"token": token, "user_id": user, "post_id": post_id, "created_at": now}
                                     for (user, post_id), token in zip(held, new_tokens(len(held)))])
    return total


def insert_rows(engine: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        for start in range(0, len(rows), CHUNK):
            connection.execute(insert(model), rows[start:start + CHUNK])


# --- the two measurements ------------------------------------------------------------------


def render_only(settings: Any, engine: Any, now: datetime) -> tuple[int, float, int]:
    """(digests, seconds spent in compose + serialize, bytes)."""
    with transaction(engine) as session:
        due = plan(session, settings, now, force=True)
        window = load_window(session, min(p.since for p in due), now)
        interests = load_interests(session, [p.recipient.id for p in due])
    count, spent, size = 0, 0.0, 0
    for planned in due:
        content = collect(window, planned.recipient.id, interests[planned.recipient.id], planned.since)
        if not content.count:
            continue
        tokens = {item.post.id: new_token() for item in content.items()}
        started = time.perf_counter()
        raw = compose(settings, planned.recipient, content, tokens, now).as_bytes(policy=SMTP)
        spent += time.perf_counter() - started
        count += 1
        size += len(raw)
    return count, spent, size


def run_outbox_worker(config: str, stop: Any, pokes: Any = None) -> None:
    """What ``statusmail serve`` runs for outbound mail: the OutboxWorker, polling the
    database (a ``digest send`` process cannot poke another process's worker). With
    ``pokes`` (the receiving end of a pipe), each message on it pokes the worker, as
    ``serve``'s own schedulers do when they queue mail."""
    settings = load_settings(config, environ={})
    engine = make_engine(settings.gateway.database_url)

    async def main() -> None:
        worker = OutboxWorker(engine, make_transport(settings))
        if pokes is not None:
            def poked() -> None:
                pokes.recv()
                worker.poke()
            asyncio.get_running_loop().add_reader(pokes.fileno(), poked)
        task = asyncio.create_task(worker.run())
        while not stop.is_set():
            await asyncio.sleep(0.1)
        worker.stop()
        await task

    asyncio.run(main())


def send_all(send: Callable[[], Any], engine: Any, counter: Any) -> tuple[int, float, float]:
    """Run ``send`` (a run that returns a report with ``queued``) as ``statusmail digest
    send`` or ``checkins …`` runs it, the worker subprocess being ``serve``'s outbox:
    (mails queued, seconds until the last was recorded, seconds until the capture
    server had it)."""
    started = time.perf_counter()
    before = counter.value
    with digest_process():  # the switches the command sets at its entry point
        report = send()
    recorded = time.perf_counter() - started
    wait_for_capture(counter, before + report.queued)
    seconds = time.perf_counter() - started
    wait_until_marked_sent(engine)
    return report.queued, recorded, seconds


def wait_for_capture(counter: Any, total: int, patience: float = 600.0) -> None:
    """Until the capture server has ``total`` messages in all: the moment the relay has
    the last mail, which the clock measures (checked every 2 ms, not a sleep per
    database poll that would add up to its own length to every run)."""
    deadline = time.perf_counter() + patience
    while counter.value < total and time.perf_counter() < deadline:
        time.sleep(0.002)


def wait_until_marked_sent(engine: Any, patience: float = 60.0) -> None:
    """Until the worker has recorded every captured mail as sent (outside the clock:
    bookkeeping after the hand-off, which the next round must not overlap)."""
    deadline = time.perf_counter() + patience
    while queued_count(engine) and time.perf_counter() < deadline:
        time.sleep(0.05)


def queued_count(engine: Any) -> int:
    with transaction(engine) as session:
        return session.exec(select(func.count()).select_from(Outbox).where(Outbox.status == "queued")).one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000, help="company size (example: --users 2000)")
    parser.add_argument("--tokens-per-user", type=int, default=0,
                        help="reply tokens each reader holds before the run (example: --tokens-per-user 30)")
    args = parser.parse_args()

    counter, size = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)
    receive, send = multiprocessing.Pipe(duplex=False)
    capture = multiprocessing.Process(target=run_capture_server, args=(send, counter, size), daemon=True)
    capture.start()
    port = receive.recv()

    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
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
""")
        settings = load_settings(str(config), environ={})
        engine = make_engine(settings.gateway.database_url)
        upgrade(engine)
        now = datetime.now(UTC)
        started = time.perf_counter()
        posts = build(engine, args.users, now, tokens_per_user=args.tokens_per_user)
        print(f"data set: {args.users} users, {posts} posts in the last day, ~20 follows each, "
              f"{args.tokens_per_user} reply tokens each "
              f"({time.perf_counter() - started:.1f} s to build)")

        rendered, render_seconds, render_bytes = render_only(settings, engine, now)
        render_rate = rendered / render_seconds
        print(f"render + serialize only: {rendered} digests in {render_seconds:.1f} s = {render_rate:.0f} digests/s "
              f"(mean {render_bytes / max(rendered, 1) / 1024:.0f} KiB)")

        stop = multiprocessing.Event()
        worker = multiprocessing.Process(target=run_outbox_worker, args=(str(config), stop))
        worker.start()
        queued, _, send_seconds = send_all(lambda: send_digests(settings, engine, now=now, force=True), engine,
                                           counter)
        stop.set()
        worker.join(60)
        send_rate = queued / send_seconds
        print(f"send (digest send --now -> outbox -> SMTP capture): {queued} digests in {send_seconds:.1f} s "
              f"= {send_rate:.0f} digests/s")
        with transaction(engine) as session:
            rows = session.exec(select(func.count()).select_from(Digest)).one()
        print(f"captured by the server: {counter.value} messages, {size.value / 2**20:.0f} MiB; "
              f"digest rows: {rows} (one per user)")
        print(f"ratio send/render: {send_rate / render_rate:.2f} (target >= 0.80)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MiB (target < 500); largest child (worker or capture): "
              f"{children:.0f} MiB")
        if counter.value != queued or rows != args.users:
            print("MISMATCH: every queued digest must reach the server exactly once", file=sys.stderr)
            sys.exit(1)
        engine.dispose()
    capture.terminate()
    capture.join(10)


if __name__ == "__main__":
    main()
