"""Ingest throughput: `statusmail serve` against an SMTP server that stores nothing.

Why: an announcement makes hundreds of people answer within a minute, and an MTA
catching up after an outage delivers thousands of queued messages at once. The gateway
must keep up with its own SMTP stack while every ``250`` still means committed (DESIGN 3).
The yardstick is aiosmtpd itself with a handler that accepts and discards: the ratio
gateway/discard says how much of the SMTP stack's speed the pipeline and the database
cost us.

Both servers run as subprocesses (``serve`` with its writer process beside it); the
client runs here on asyncio raw streams (a cheap client measures the server, not itself). Phases alternate
discard/gateway so both see the same machine state. Each message is a new connection,
like an MTA without connection caching, unless ``--reuse``. Afterwards the posts in the
gateway's database are counted: every message answered 250 must be there exactly once.
Each server's CPU per message (its child processes included) and the client's are
printed too: on a small machine the three share the cores, and the ratio is set by
how much more CPU a message costs the gateway than the discarding server.

``--floor`` runs ``serve`` with its pipeline replaced by a bare durable append of each
batch's bytes (``bench/floor.py``): the ratio it prints is the most any gateway can reach
here while every ``250`` still means an fsync'd commit.

Run: .venv/bin/python bench/ingest.py [--messages 2000] [--concurrency 20] [--reuse] [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
STATUSMAIL = ROOT / ".venv" / "bin" / "statusmail"
DOMAIN = "corp.example"
USERS = 500


# --- the discarding server: aiosmtpd as the gateway uses it, with a no-op handler --------


class Discard:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 OK"


def run_discard_server(port: int) -> None:
    """aiosmtpd on loop.create_server, like the gateway, answering 250 and keeping nothing;
    DATA read in chunks as the gateway reads it (``ChunkedDataSMTP``)."""
    from statusmail.gateway.smtpdata import ChunkedDataSMTP as SMTP

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Discard(), decode_data=False, hostname="sink", ident="sink"),
                                          "127.0.0.1", port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
    asyncio.run(main())


# --- the client ---------------------------------------------------------------------------


@dataclass
class Tally:
    ok: int = 0
    other: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # end of DATA -> reply, seconds
    server_cpu: float = 0.0  # seconds of CPU the server (with its children) used meanwhile
    client_cpu: float = 0.0  # and this client


def message(n: int, run_id: str) -> tuple[str, bytes]:
    sender = f"user{n % USERS}@{DOMAIN}"
    raw = (f"From: User {n % USERS} <{sender}>\r\nTo: status@{DOMAIN}\r\n"
           f"Subject: Shipped item {n}\r\nMessage-ID: <{run_id}.{n}@{DOMAIN}>\r\n"
           f"Date: Thu, 26 Nov 2026 01:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
           f"Finished the billing export for batch {n} #billing, on to the next.\r\n").encode()
    return sender, raw


async def reply(reader: asyncio.StreamReader) -> bytes:
    """Read one (possibly multi-line) SMTP reply; return its last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def transaction(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sender: str, raw: bytes,
                      tally: Tally) -> None:
    for command in (f"MAIL FROM:<{sender}>\r\n", f"RCPT TO:<status@{DOMAIN}>\r\n", "DATA\r\n"):
        writer.write(command.encode())
        line = await reply(reader)
        if line[:1] not in (b"2", b"3"):
            tally.other[line[:3].decode()] = tally.other.get(line[:3].decode(), 0) + 1
            writer.write(b"RSET\r\n")
            await reply(reader)
            return
    writer.write(raw + b".\r\n")
    started = time.perf_counter()
    line = await reply(reader)
    tally.latencies.append(time.perf_counter() - started)
    if line.startswith(b"250"):
        tally.ok += 1
    else:
        key = line[:9].decode(errors="replace").strip()
        tally.other[key] = tally.other.get(key, 0) + 1


async def open_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)  # 220 greeting
    writer.write(b"EHLO bench.example\r\n")
    await reply(reader)
    return reader, writer


async def close_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"QUIT\r\n")
    try:
        await reply(reader)
    except ConnectionError:
        pass
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def drive(port: int, numbers: list[int], run_id: str, concurrency: int, reuse: bool) -> tuple[Tally, float]:
    """Send the numbered messages over ``concurrency`` sessions; return tally and seconds."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in numbers:
        queue.put_nowait(n)
    tally = Tally()

    async def worker() -> None:
        session = None
        while not queue.empty():
            n = queue.get_nowait()
            sender, raw = message(n, run_id)
            if session is None:
                session = await open_session(port)
            await transaction(*session, sender, raw, tally)
            if not reuse:
                await close_session(*session)
                session = None
        if session is not None:
            await close_session(*session)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally, time.perf_counter() - started


# --- CPU accounting: where the machine's two cores went --------------------------------------


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (Linux /proc); NaN elsewhere."""
    if not Path("/proc/self/stat").exists():
        return float("nan")
    stats: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = entry.joinpath("stat").read_text()
            except OSError:  # it exited while we looked
                pass
    family, total = {pid}, 0.0
    for _ in range(3):  # children and grandchildren (serve's writer, multiprocessing's helper)
        family |= {p for p, text in stats.items() if int(text.rpartition(")")[2].split()[1]) in family}
    for p in family:
        fields = stats.get(p, "").rpartition(")")[2].split()
        if len(fields) > 12:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def drive_measured(server: subprocess.Popen[bytes], port: int, numbers: list[int], run_id: str, concurrency: int,
                   reuse: bool) -> tuple[Tally, float]:
    server_before, client_before = cpu_seconds(server.pid), time.process_time()
    tally, seconds = asyncio.run(drive(port, numbers, run_id, concurrency, reuse))
    tally.server_cpu = cpu_seconds(server.pid) - server_before
    tally.client_cpu = time.process_time() - client_before
    return tally, seconds


# --- servers as subprocesses --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port} after {seconds}s")


def write_config(tmp: Path, port: int) -> Path:
    config = tmp / "statusmail.toml"
    config.write_text(f"""
[gateway]
address = "status@{DOMAIN}"
request_address = "status-request@{DOMAIN}"
database_url = "sqlite:///{tmp}/statusmail.db"
secret_key_file = "{tmp}/secret.key"

[smtp]
host = "127.0.0.1"
port = {port}

[outbound]
transport = "maildir:{tmp}/outbox"

[policy]
allowed_domains = ["{DOMAIN}"]
posts_per_hour = 1000000
auto_answers_per_hour = 1000000
""")
    return config


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    ok: int
    other: dict[str, int]
    server_cpu_ms: float  # per message
    client_cpu_ms: float


def summarise(tallies: list[tuple[Tally, float]]) -> Result:
    sent = sum(t.ok + sum(t.other.values()) for t, _ in tallies)
    seconds = sum(s for _, s in tallies)
    latencies = [x for t, _ in tallies for x in t.latencies]
    other: dict[str, int] = {}
    for t, _ in tallies:
        for k, v in t.other.items():
            other[k] = other.get(k, 0) + v
    return Result(sent / seconds, 1000 * percentile(latencies, 50), 1000 * percentile(latencies, 99),
                  sum(t.ok for t, _ in tallies), other, 1000 * sum(t.server_cpu for t, _ in tallies) / sent,
                  1000 * sum(t.client_cpu for t, _ in tallies) / sent)


def count_stored(tmp: Path, run_id: str, floor: bool) -> tuple[int, int, int]:
    """Posts, distinct posts and log rows of this run; for --floor, the appended messages."""
    if floor:
        with sqlite3.connect(f"{tmp / 'statusmail.db'}.spool") as db:  # bench/floor.py's table
            appended = db.execute("SELECT count(*) FROM spool").fetchone()[0]
        return appended, appended, appended
    like = (f"<{run_id}.%",)
    with sqlite3.connect(tmp / "statusmail.db") as db:
        posts = db.execute("SELECT count(*) FROM posts WHERE message_id LIKE ?", like).fetchone()[0]
        distinct = db.execute("SELECT count(DISTINCT message_id) FROM posts WHERE message_id LIKE ?", like).fetchone()[0]
        logged = db.execute("SELECT count(*) FROM inbound_log WHERE message_id LIKE ?", like).fetchone()[0]
    return posts, distinct, logged


def measure(messages: int, concurrency: int, reuse: bool, rounds: int, keep: bool = False,
            statusmail: list[str] | None = None, floor: bool = False) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="statusmail-bench-"))
    gw_port, sink_port = free_port(), free_port()
    config = write_config(tmp, gw_port)
    command = statusmail or [str(STATUSMAIL)]
    subprocess.run([*command, "--config", str(config), "init"], check=True, capture_output=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    gw_log = open(tmp / "serve.log", "wb")
    gateway = subprocess.Popen([*command, "--config", str(config), "serve"], stdout=gw_log, stderr=gw_log, env=env)
    sink = subprocess.Popen([str(PYTHON), __file__, "--discard-server", str(sink_port)], env=env)
    run_id = uuid.uuid4().hex[:12]
    try:
        wait_for_port(gw_port, gateway)
        wait_for_port(sink_port, sink)
        # Warm both up (imports, caches, every sender registered once), not counted: the
        # measured rounds are staff posting, not a directory being built.
        warm = list(range(messages, messages + USERS))
        asyncio.run(drive(sink_port, warm, run_id, concurrency, reuse))
        asyncio.run(drive(gw_port, warm, run_id, concurrency, reuse))
        per_round = [list(range(messages))[i::rounds] for i in range(rounds)]
        gw, dc = [], []
        for numbers in per_round:  # alternate, so both see the same machine
            dc.append(drive_measured(sink, sink_port, numbers, run_id, concurrency, reuse))
            gw.append(drive_measured(gateway, gw_port, numbers, run_id, concurrency, reuse))
    finally:
        stop(gateway)
        stop(sink)
        gw_log.close()
    g, d = summarise(gw), summarise(dc)
    posts, distinct, logged = count_stored(tmp, run_id, floor)
    expected = messages + len(warm)
    if not keep:
        for path in sorted(tmp.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        tmp.rmdir()
    return {"gateway": g, "discard": d, "ratio": g.rate / d.rate, "posts": posts, "distinct": distinct,
            "logged": logged, "expected": expected, "tmp": str(tmp)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per server (default 2000)")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent SMTP sessions (default 20)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating phases per server (default 4)")
    parser.add_argument("--reuse", action="store_true", help="reuse each session's connection")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (serve.log, the db)")
    parser.add_argument("--statusmail", default=str(STATUSMAIL),
                        help="the command that runs statusmail, split on spaces (to compare another build, "
                             "a script that imports it ahead of the editable install)")
    parser.add_argument("--floor", action="store_true",
                        help="the gateway with its pipeline replaced by a durable append (bench/floor.py)")
    parser.add_argument("--discard-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.discard_server:
        run_discard_server(args.discard_server)
        return 0
    command = [str(PYTHON), str(Path(__file__).with_name("floor.py"))] if args.floor else args.statusmail.split()
    r = measure(args.messages, args.concurrency, args.reuse, args.rounds, args.keep, command, args.floor)
    g, d = r["gateway"], r["discard"]
    assert isinstance(g, Result) and isinstance(d, Result)
    mode = "reused connections" if args.reuse else "a new connection per message"
    if args.floor:
        mode += "; gateway = durable append only (bench/floor.py)"
    print(f"ingest: {args.messages} messages per server, {args.concurrency} sessions, {mode}, "
          f"{args.rounds} alternating rounds")
    print(f"{'server':<10} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'250s':>6} {'server CPU':>11} {'client CPU':>11}"
          "  other replies")
    for name, res in (("discard", d), ("gateway", g)):
        print(f"{name:<10} {res.rate:>8.0f} {res.p50_ms:>8.2f} {res.p99_ms:>8.2f} {res.ok:>6} "
              f"{res.server_cpu_ms:>6.2f} ms/m {res.client_cpu_ms:>6.2f} ms/m  {res.other or ''}")
    print(f"ratio gateway/discard: {r['ratio']:.2f}")
    stored_ok = r["posts"] == r["distinct"] == r["logged"] == r["expected"]
    counted = (f"{r['posts']} messages appended" if args.floor else
               f"{r['posts']} posts ({r['distinct']} distinct), {r['logged']} log rows")
    print(f"stored: {counted}, expected {r['expected']} -> {'OK' if stored_ok else 'MISMATCH'}")
    if args.keep:
        print(f"kept {r['tmp']}")
    return 0 if stored_ok and g.ok == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
