"""`statusmail` with its pipeline replaced by the least a durable 250 can cost.

``bench/ingest.py --floor`` runs ``serve`` through this script instead of the
``statusmail`` command. Everything is the gateway's own (listener, group commit, writer
process) except what a batch does in the writer: its messages' raw bytes are appended to
one table of a WAL-mode SQLite file with ``synchronous=FULL``, one fsync per batch,
nothing parsed, decided or indexed. Ingest against this server is the price of "250
means committed" on the machine at hand, before any pipeline work; the real gateway's
ratio can only be lower.

The writer process is started with multiprocessing's "spawn", which imports this file
again in the child (as ``__mp_main__``), so the replacement below takes effect there too.
"""

from __future__ import annotations

import sqlite3
import sys
import threading

from statusmail.config import Settings
from statusmail.gateway import batcher
from statusmail.inbound import pipeline
from statusmail.inbound.outcome import Outcome, Reason

SPOOL_SUFFIX = ".spool"  # beside the gateway's database file
_connections = threading.local()


def spool_path(settings: Settings) -> str:
    return settings.gateway.database_url.split("///", 1)[1] + SPOOL_SUFFIX


def append_batch(settings: Settings, engine: object, jobs: list[pipeline.Job],
                 before_commit: object = None) -> list[Outcome]:
    """Stands in for commit_batch: the bytes, durably, and "posted" for every message."""
    spool = getattr(_connections, "spool", None)
    if spool is None:
        spool = _connections.spool = sqlite3.connect(spool_path(settings), isolation_level=None)
        spool.execute("PRAGMA journal_mode=WAL")
        spool.execute("PRAGMA synchronous=FULL")
        spool.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
    spool.execute("BEGIN IMMEDIATE")
    spool.executemany("INSERT INTO spool (raw) VALUES (?)", [(job[0],) for job in jobs])
    spool.execute("COMMIT")
    return [Outcome(Reason.POSTED)] * len(jobs)


pipeline.commit_batch = append_batch  # type: ignore[assignment]  (the writer process's)
batcher.commit_batch = append_batch  # type: ignore[assignment]  (the in-process batcher's)

if __name__ == "__main__":
    from statusmail.cli import main

    sys.exit(main())
