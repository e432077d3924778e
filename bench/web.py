"""The read-only web under load: feed page, a thread and search at 100,000 posts.

Why: the web shares ``serve``'s process and event loop with the SMTP listener, so its
pages must cost little, and a company's feed grows by tens of thousands of posts a year.
The database is filled with Core executemany (the FTS5 triggers of revision 0005 index
each row as it goes in), then ``statusmail serve`` runs as in production (web.enabled,
``auth = "header"`` from loopback, so no sign-in) and 20 concurrent clients, each on its
own keep-alive connection, request one URL for a fixed time. The ceiling is the same
framework in the same run: uvicorn + Starlette serving a constant page of the feed's
size (``--static``). Figures: requests/s, p50 and p99 latency, and the ratio to the
ceiling. The first request of each URL warms the caches and mints the reader's reply
tokens; it is not timed.

Run: .venv/bin/python bench/web.py [--posts 100000] [--seconds 5] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from ingest import DOMAIN, PYTHON, free_port, percentile, stop, wait_for_port  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from statusmail.store.db import make_engine, upgrade  # noqa: E402
from statusmail.store.models import Post, PostTag, User  # noqa: E402

CLIENTS = 20
USERS = 300
WORDS = ("billing export shipped release train finance wiki deploy review customer onboarding latency "
         "dashboard invoice roadmap offsite hiring incident postmortem migration database backlog sprint "
         "design security audit kafka search mobile android iOS payroll budget vendor contract").split()
TAGS = ("billing", "release", "team", "ops", "design", "hiring")
STATIC_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
PAGE = open(sys.argv[2], encoding="utf-8").read()
async def page(request):
    return HTMLResponse(PAGE)
app = Starlette(routes=[Route("/", page)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning", lifespan="off")
"""


def fill(url: str, posts: int) -> int:
    """``posts`` posts by :data:`USERS` authors, a third of them replies; the id of the
    busiest thread."""
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(20)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(insert(User), [
            {"email": f"user{n}@{DOMAIN}", "name": f"User {n}", "handle": f"user{n}", "role": "staff", "team": "",
             "manager_email": "", "timezone": "", "digest": "off", "banned": False, "ban_reason": "",
             "hard_bounces": 0, "mail_suspended": False, "created_at": start} for n in range(1, USERS + 1)])
        rows, tags, roots = [], [], []
        for post_id in range(1, posts + 1):
            reply = roots and rng.random() < 0.33
            thread = roots[-1 - min(int(rng.expovariate(0.2)), len(roots) - 1)] if reply else post_id
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))
            tag = rng.choice(TAGS) if rng.random() < 0.3 else ""
            rows.append({"id": post_id, "author_id": rng.randint(1, USERS), "body": body + (f" #{tag}" if tag else ""),
                         "trimmed": "", "created_at": start + timedelta(seconds=post_id * 30), "thread_id": thread,
                         "parent_id": thread if reply else None, "status": "hidden" if rng.random() < 0.01 else "visible",
                         "status_reason": "", "message_id": f"<p{post_id}@{DOMAIN}>", "thread_index": ""})
            if tag:
                tags.append({"post_id": post_id, "tag": tag})
            if not reply:
                roots.append(post_id)
            if len(rows) == 5000:
                connection.execute(insert(Post), rows)
                rows = []
        if rows:
            connection.execute(insert(Post), rows)
        connection.execute(insert(PostTag), tags)
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT setval('posts_id_seq', (SELECT max(id) FROM posts))"))
            connection.execute(text("ANALYZE"))
        else:
            connection.execute(text("ANALYZE"))
        busiest = connection.execute(text("SELECT thread_id FROM posts WHERE status = 'visible' GROUP BY thread_id "
                                          "ORDER BY count(*) DESC LIMIT 1")).scalar_one()
    engine.dispose()
    return int(busiest)


def write_config(tmp: Path, url: str, smtp_port: int, web_port: int) -> Path:
    config = tmp / "statusmail.toml"
    config.write_text(f"""
[gateway]
address = "status@{DOMAIN}"
request_address = "status-request@{DOMAIN}"
database_url = "{url}"
secret_key_file = "{tmp}/secret.key"

[smtp]
port = {smtp_port}

[outbound]
transport = "maildir:{tmp}/outbox"

[policy]
allowed_domains = ["{DOMAIN}"]

[web]
enabled = true
port = {web_port}
auth = "header"
trusted_proxies = ["127.0.0.1/32"]
""")
    return config


async def load(base: str, path: str, seconds: float) -> tuple[float, float, float, int, int]:
    """:data:`CLIENTS` clients on keep-alive connections for ``seconds``: (requests/s,
    p50 ms, p99 ms, answered 200, other answers)."""
    headers = {"X-Remote-User": f"user1@{DOMAIN}"}
    latencies: list[float] = []
    other = 0

    async def client() -> None:
        nonlocal other
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            await http.get(path)  # warm: caches, the reader's reply tokens
            await ready.wait()
            while time.perf_counter() < deadline:
                begun = time.perf_counter()
                answer = await http.get(path)
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - begun)
                else:
                    other += 1

    ready = asyncio.Event()
    tasks = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    await asyncio.sleep(1.0)
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    return (len(latencies) / elapsed, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000,
            len(latencies), other)


def report(name: str, figures: tuple[float, float, float, int, int], ceiling: float) -> None:
    rate, p50, p99, ok, other = figures
    print(f"{name:<24} {rate:8.0f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ratio {rate / ceiling:5.2f}  "
          f"({ok} ok, {other} other)", flush=True)


def run(url: str, posts: int, seconds: float, label: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        tmp = Path(folder)
        if url == "sqlite":
            url = f"sqlite:///{tmp}/statusmail.db"
        began = time.perf_counter()
        busiest = fill(url, posts)
        print(f"{label}: {posts} posts stored in {time.perf_counter() - began:.1f}s; busiest thread {busiest}",
              flush=True)
        smtp_port, web_port, static_port = free_port(), free_port(), free_port()
        config = write_config(tmp, url, smtp_port, web_port)
        env = {**os.environ, "STATUSMAIL_CONFIG": str(config)}
        server = subprocess.Popen([str(PYTHON), "-m", "statusmail", "serve"], env=env, cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(web_port, server, 60)
            base = f"http://127.0.0.1:{web_port}"
            feed_page = httpx.get(f"{base}/", headers={"X-Remote-User": f"user1@{DOMAIN}"}).text
            (tmp / "static.html").write_text(feed_page, encoding="utf-8")
            static = subprocess.Popen([str(PYTHON), "-c", STATIC_APP, str(static_port), str(tmp / "static.html")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(static_port, static, 30)
                ceiling = asyncio.run(load(f"http://127.0.0.1:{static_port}", "/", seconds))
            finally:
                stop(static)
            report("static page (ceiling)", ceiling, ceiling[0])
            for name, path in (("feed /", "/"), (f"thread /posts/{busiest}", f"/posts/{busiest}"),
                               ("search ?q=invoice budget", "/search?q=invoice+budget")):
                report(name, asyncio.run(load(base, path, seconds)), ceiling[0])
        finally:
            stop(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed load per URL")
    parser.add_argument("--postgres", default=os.environ.get("STATUSMAIL_TEST_DATABASE_URL", ""),
                        help="a PostgreSQL server URL (a fresh database is made and dropped); "
                             "default $STATUSMAIL_TEST_DATABASE_URL; empty: SQLite only")
    args = parser.parse_args(argv)
    print(f"{CLIENTS} concurrent clients, {args.seconds:.0f}s per URL, {os.cpu_count()} CPUs", flush=True)
    run("sqlite", args.posts, args.seconds, "SQLite")
    if args.postgres:
        admin = make_engine(args.postgres).execution_options(isolation_level="AUTOCOMMIT")
        name = f"bench_web_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(args.postgres.rsplit("/", 1)[0] + "/" + name, args.posts, args.seconds, "PostgreSQL")
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
