"""Group commit: the messages of concurrent SMTP sessions share one transaction.

``250`` means stored (DESIGN 3), and storing means a commit, which on SQLite with
``synchronous=FULL`` is an fsync and takes the one write lock. With one transaction per
message, concurrent DATA commands queue on that lock (SQLite's busy handler sleeps
between retries) and pay an fsync each. Here DATA handlers hand (raw, envelope) to a
single writer thread and await a future; the writer takes every message waiting (up to
:data:`MAX_BATCH`), runs each through the same pipeline stages in its own SAVEPOINT
(:func:`statusmail.inbound.pipeline.process`), commits once, and only after that commit
has returned settles the futures. A refusal rolls back its own savepoint and logs its row
in the shared transaction; a failed commit answers every message of the batch
``451 4.3.0`` and stores none of them.

Batches form by themselves: while the writer works on one, the next one queues. A lone
message is committed at once, so an idle gateway answers no later than before.

``serve`` runs the transaction itself in a child process (``gateway/writer.py``), so the
pipeline's CPU work does not compete with the event loop for one interpreter lock; the
thread here then only collects batches and waits for their outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Engine
from sqlmodel import Session

from statusmail.errors import StoreUnavailable
from statusmail.gateway.config import Settings
from statusmail.gateway.writer import WriterProcess
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Outcome, Reason
from statusmail.inbound.pipeline import process
from statusmail.store.db import begin_immediate, transaction
from statusmail.store.users import preload_users

log = logging.getLogger(__name__)

# Enough to amortise the fsync over a burst; small enough that one batch's SAVEPOINTs and
# identity map stay cheap and a failed commit defers few senders.
MAX_BATCH = 64


@dataclass
class Job:
    raw: bytes
    envelope: Envelope
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome]


def settle(settled: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    """Runs on the event loop; a session that went away has cancelled its future."""
    for future, outcome in settled:
        if not future.done():
            future.set_result(outcome)


class Batcher:
    """One writer thread that commits the messages of concurrent sessions together."""

    def __init__(self, settings: Settings, engine: Engine, max_batch: int = MAX_BATCH,
                 writer: WriterProcess | None = None) -> None:
        self.settings, self.engine, self.max_batch = settings, engine, max_batch
        self.writer = writer  # commit in a child process (gateway/writer.py); else in this thread
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.work, name="group-commit", daemon=True)
        # Fault injection for tests: called with the batch's session just before COMMIT.
        self.before_commit: Callable[[Session], None] | None = None
        self.batches = 0  # committed or failed, for the curious (bench, tests)

    def start(self) -> None:
        if self.writer is not None:
            self.writer.start()
        self.thread.start()

    async def submit(self, raw: bytes, envelope: Envelope) -> Outcome:
        """Queue one message; returns its outcome once its batch is committed (or lost)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self.jobs.put(Job(raw, envelope, loop, future))
        return await future

    def close(self) -> None:
        """Finish every queued message, then stop the thread. Blocking: call off the loop."""
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        if self.writer is not None:
            self.writer.stop()

    def work(self) -> None:
        stopping = False
        while not stopping:
            job = self.jobs.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            outcomes = self.commit(batch)
            # One wake-up of each event loop per batch, not one per message.
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome]]] = {}
            for item, outcome in zip(batch, outcomes):
                by_loop.setdefault(item.loop, []).append((item.future, outcome))
            for loop, settled in by_loop.items():
                loop.call_soon_threadsafe(settle, settled)

    def commit(self, batch: list[Job]) -> list[Outcome]:
        """Run and store the batch in one transaction; the outcomes only once it committed."""
        self.batches += 1
        jobs = [(job.raw, job.envelope) for job in batch]
        if self.writer is not None:
            return self.writer.store(jobs)
        return commit_batch(self.settings, self.engine, jobs, self.before_commit)


def commit_batch(settings: Settings, engine: Engine, jobs: list[tuple[bytes, Envelope]],
                 before_commit: Callable[[Session], None] | None = None) -> list[Outcome]:
    """Run the pipeline on every message in one transaction; the outcomes once it committed."""
    try:
        with transaction(engine) as session:
            begin_immediate(session)
            preload_users(session, (envelope.mail_from for _, envelope in jobs))
            outcomes = [process(session, raw, envelope, settings) for raw, envelope in jobs]
            if before_commit is not None:
                before_commit(session)
        return outcomes  # the with block has committed: now 250 is true
    except StoreUnavailable as exc:
        log.error("database unavailable, %d messages deferred: %s", len(jobs), exc)
        return [Outcome("refused", Reason.STORE_UNAVAILABLE, str(exc))] * len(jobs)
    except Exception:
        log.exception("group commit of %d messages failed; all deferred", len(jobs))
        return [Outcome("refused", Reason.INTERNAL_ERROR, "internal error")] * len(jobs)
