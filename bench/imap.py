"""The mailbox path against SMTP: posts read from a real Dovecot, as a ratio to SMTP's rate.

Why: companies without an MTA of their own run statusmail on a hosted mailbox, and a
backlog there (the gateway was down over a weekend, an announcement everyone answered)
must drain about as fast as the same mail over SMTP. The yardstick is
``bench/ingest.py``'s client against ``statusmail serve`` in the same run, on the same
machine: the ratio IMAP/SMTP says how much the mailbox path costs beyond SMTP.

1. SMTP: a fresh ``serve``; ``--messages`` posts over ``--concurrency`` sessions (one
   connection per message, like ingest.py), after a warm-up that registers the senders.
2. IMAP: ``serve`` reading a private Dovecot (tests/dovecot.py), warmed up the same way;
   then, with ``serve`` stopped, the same posts are APPENDed to INBOX (the backlog of a
   gateway that was down), ``serve`` starts again, and the clock runs from its listener's
   start until every one is posted and INBOX is empty (moved to the processed folder).
3. ``--hostile``: with the IMAP ``serve`` still running, hostile messages are appended (a
   From of 300,000 addresses, the same folded over short lines, a million header lines)
   while SMTP posts are sent beside them; the worst SMTP latency is printed next to the
   worst of the same posts without them.

Every posted message is counted in the database: each must be there exactly once.

Run: .venv/bin/python bench/imap.py [--messages 2000] [--concurrency 20] [--hostile]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    DOMAIN,
    STATUSMAIL,
    USERS,
    drive,
    free_port,
    message,
    percentile,
    stop,
    wait_for_port,
)
from bench.ingest import write_config as smtp_config  # noqa: E402
from tests.dovecot import PASSWORD, USER, Dovecot, find_dovecot  # noqa: E402


def imap_config(tmp: Path, port: int, dovecot: Dovecot) -> Path:
    config = smtp_config(tmp, port)
    (tmp / "imap.password").write_text(PASSWORD + "\n")
    config.write_text(config.read_text() + f"""
[imap]
enabled = true
host = "127.0.0.1"
port = {dovecot.port}
ssl = false
username = "{USER}"
password_file = "{tmp / 'imap.password'}"
""")
    return config


def start_serve(tmp: Path, config: Path) -> subprocess.Popen[bytes]:
    subprocess.run([str(STATUSMAIL), "--config", str(config), "init"], check=True, capture_output=True)
    log = open(tmp / "serve.log", "wb")
    return subprocess.Popen([str(STATUSMAIL), "--config", str(config), "serve"], stdout=log, stderr=log,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def count_posts(tmp: Path, run_id: str) -> tuple[int, int]:
    with sqlite3.connect(tmp / "statusmail.db") as db:
        like = (f"<{run_id}.%",)
        return (db.execute("SELECT count(*) FROM posts WHERE message_id LIKE ?", like).fetchone()[0],
                db.execute("SELECT count(DISTINCT message_id) FROM posts WHERE message_id LIKE ?", like).fetchone()[0])


def inbox_count(client: imaplib.IMAP4) -> int:
    status, data = client.status("INBOX", "(MESSAGES)")
    assert status == "OK", data
    return int(data[0].split()[-1].rstrip(b")"))


def append_all(dovecot: Dovecot, raws: list[bytes]) -> None:
    with dovecot.imap() as client:
        for raw in raws:
            status, detail = client.append("INBOX", None, None, raw)
            assert status == "OK", detail


def smtp_rate(messages: int, concurrency: int) -> tuple[float, int]:
    tmp = Path(tempfile.mkdtemp(prefix="statusmail-bench-imap-smtp-"))
    port = free_port()
    serve = start_serve(tmp, smtp_config(tmp, port))
    run_id = uuid.uuid4().hex[:12]
    try:
        wait_for_port(port, serve)
        asyncio.run(drive(port, list(range(messages, messages + USERS)), run_id, concurrency, False))  # warm-up
        tally, seconds = asyncio.run(drive(port, list(range(messages)), run_id, concurrency, False))
    finally:
        stop(serve)
    posts, distinct = count_posts(tmp, run_id)
    assert posts == distinct == messages + USERS, (posts, distinct)
    return messages / seconds, tally.ok


def hostile_messages() -> list[bytes]:
    head = f"To: status@{DOMAIN}\r\nSubject: hostile\r\nMessage-ID: <hostile.{{n}}@{DOMAIN}>\r\n"
    wide = b"From: " + b", ".join(b"u%d@corp.example" % i for i in range(300_000)) + b"\r\n"
    folded = b"From: " + b",\r\n ".join(b"u%d@corp.example" % i for i in range(300_000)) + b"\r\n"
    lines = f"From: user1@{DOMAIN}\r\n".encode() + b"".join(b"X-L: %d\r\n" % i for i in range(1_000_000))
    return [head.format(n=n).encode() + block + b"\r\nbody\r\n" for n, block in enumerate((wide, folded, lines))]


def imap_rate(messages: int, concurrency: int, hostile: bool) -> dict[str, float]:
    binary = find_dovecot()
    if binary is None:
        raise SystemExit("dovecot is not installed (apt-get install dovecot-imapd)")
    dovecot = Dovecot(binary)
    tmp = Path(tempfile.mkdtemp(prefix="statusmail-bench-imap-"))
    port = free_port()
    run_id = uuid.uuid4().hex[:12]
    result: dict[str, float] = {}
    try:
        dovecot.start()
        # The senders exist already, as after the SMTP run's warm-up.
        append_all(dovecot, [message(n, run_id)[1] for n in range(messages, messages + USERS)])
        config = imap_config(tmp, port, dovecot)
        serve = start_serve(tmp, config)
        try:
            wait_for_port(port, serve)
            with dovecot.imap() as client:
                while inbox_count(client):
                    time.sleep(0.2)
        finally:
            stop(serve)
        # The backlog: the posts arrive while the gateway is down, then it starts.
        append_all(dovecot, [message(n, run_id)[1] for n in range(messages)])
        serve = start_serve(tmp, config)
        try:
            wait_for_port(port, serve)
            started = time.perf_counter()  # from the listener's start: the poller starts with it
            with dovecot.imap() as client:
                while inbox_count(client) or count_posts(tmp, run_id)[0] < messages + USERS:
                    time.sleep(0.05)
            result["seconds"] = time.perf_counter() - started
            posts, distinct = count_posts(tmp, run_id)
            assert posts == distinct == messages + USERS, (posts, distinct)
            result["rate"] = messages / result["seconds"]
            if hostile:
                base, _ = asyncio.run(drive(port, list(range(10**6, 10**6 + 200)), run_id, concurrency, False))
                appender = threading.Thread(target=append_all, args=(dovecot, hostile_messages()))
                appender.start()  # the poller refuses them while the posts below are sent
                beside, _ = asyncio.run(drive(port, list(range(2 * 10**6, 2 * 10**6 + 400)), run_id, concurrency,
                                              False))
                appender.join()
                with dovecot.imap() as client:
                    while inbox_count(client):
                        time.sleep(0.2)
                    beside_more, _ = asyncio.run(drive(port, list(range(3 * 10**6, 3 * 10**6 + 50)), run_id, 1,
                                                       False))
                result.update(base_max_ms=1000 * max(base.latencies), base_p50_ms=1000 * percentile(base.latencies, 50),
                              hostile_max_ms=1000 * max(beside.latencies),
                              hostile_p50_ms=1000 * percentile(beside.latencies, 50),
                              hostile_non250=float(sum(beside.other.values())), base_ok=float(base.ok),
                              hostile_ok=float(beside.ok), after_ok=float(beside_more.ok))
                with dovecot.imap() as client:
                    client.select(dovecot.folder("statusmail/failed"), readonly=True)
                    result["hostile_in_failed"] = float(len(client.search(None, "ALL")[1][0].split()))
        finally:
            stop(serve)
    finally:
        dovecot.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="posts per path (default 2000)")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent SMTP sessions (default 20)")
    parser.add_argument("--hostile", action="store_true",
                        help="also: the worst SMTP latency while hostile messages are refused over IMAP")
    args = parser.parse_args(argv)
    smtp, ok = smtp_rate(args.messages, args.concurrency)
    imap = imap_rate(args.messages, args.concurrency, args.hostile)
    print(f"imap bench: {args.messages} posts per path; SMTP over {args.concurrency} sessions, a connection each")
    print(f"SMTP  {smtp:8.0f} msg/s  ({ok} answered 250)")
    print(f"IMAP  {imap['rate']:8.0f} msg/s  (all posted and moved in {imap['seconds']:.2f} s)")
    print(f"ratio IMAP/SMTP: {imap['rate'] / smtp:.2f} (goal >= 0.5)")
    if args.hostile:
        print(f"SMTP latency, 200 posts alone:               p50 {imap['base_p50_ms']:.1f} ms, "
              f"max {imap['base_max_ms']:.1f} ms, {imap['base_ok']:.0f} x 250")
        print(f"SMTP latency, 400 posts beside hostile IMAP: p50 {imap['hostile_p50_ms']:.1f} ms, "
              f"max {imap['hostile_max_ms']:.1f} ms, {imap['hostile_ok']:.0f} x 250, "
              f"{imap['hostile_non250']:.0f} other; hostile in failed folder: {imap['hostile_in_failed']:.0f}/3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
