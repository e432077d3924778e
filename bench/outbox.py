"""Outbox drain rate: queued rows sent through the SMTP transport to a capture server.

Why: an announcement's replies fan out into notifications, and a relay outage leaves a
backlog; the worker must empty it at the pace the relay takes mail. The relay here is
aiosmtpd in a subprocess answering 250 to everything (bench/ingest.py's discard server);
the transport is the real :class:`SmtpTransport`, reusing its connections (one per lane
of :func:`drain`, up to ``outbox.LANES``). Rows are made
by :func:`statusmail.outbound.outbox.enqueue`, the same call the pipeline uses, and
drained by :func:`drain`, the worker's loop body. Afterwards every row must be ``sent``.

Run: .venv/bin/python bench/outbox.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import DOMAIN, PYTHON, free_port, stop, wait_for_port, write_config  # noqa: E402
from sqlmodel import Session, func, select  # noqa: E402

from statusmail.config import load_settings  # noqa: E402
from statusmail.outbound.outbox import LANES, drain, enqueue  # noqa: E402
from statusmail.outbound.transport import SmtpTransport  # noqa: E402
from statusmail.store.db import make_engine, transaction, upgrade  # noqa: E402
from statusmail.store.models import Outbox  # noqa: E402


def fill(engine: object, settings: object, count: int) -> None:
    with transaction(engine) as session:  # type: ignore[arg-type]
        for n in range(count):
            msg = EmailMessage()
            msg["From"] = f"Status <status@{DOMAIN}>"
            msg["To"] = f"user{n}@{DOMAIN}"
            msg["Subject"] = f"Re: shipped item {n}"
            msg["Message-ID"] = f"<bench.{n}@{DOMAIN}>"
            msg.set_content(f"Bob replied to your post:\n\nNice work on item {n}.\n")
            enqueue(session, msg, settings, kind="notify", to=f"user{n}@{DOMAIN}")  # type: ignore[arg-type]


async def drain_all(engine: object, transport: SmtpTransport) -> int:
    sent = 0
    while True:
        batch = await drain(engine, transport)  # type: ignore[arg-type]
        if batch == 0:
            break
        sent += batch
    await transport.close()
    return sent


def measure(messages: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="statusmail-bench-outbox-"))
    settings = load_settings(str(write_config(tmp, free_port())), environ={})
    engine = make_engine(settings.gateway.database_url)
    upgrade(engine)
    fill(engine, settings, messages)
    port = free_port()
    sink = subprocess.Popen([str(PYTHON), str(ROOT / "bench" / "ingest.py"), "--discard-server", str(port)])
    try:
        wait_for_port(port, sink)
        started = time.perf_counter()
        sent = asyncio.run(drain_all(engine, SmtpTransport("127.0.0.1", port)))
        seconds = time.perf_counter() - started
    finally:
        stop(sink)
    with Session(engine) as session:
        stored_sent = session.exec(select(func.count()).select_from(Outbox).where(Outbox.status == "sent")).one()
    engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"sent": sent, "rows_sent": stored_sent, "seconds": seconds, "rate": sent / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="outbox rows to drain (default 2000)")
    args = parser.parse_args(argv)
    r = measure(args.messages)
    ok = r["sent"] == r["rows_sent"] == args.messages
    print(f"outbox: {args.messages} rows drained in {LANES} lanes, each over a reused SMTP connection")
    print(f"sent {r['sent']:.0f} in {r['seconds']:.2f}s: {r['rate']:.0f} msg/s; rows marked sent: {r['rows_sent']:.0f}"
          f" -> {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
