"""Group commit: the messages of concurrent SMTP sessions share one transaction.

``250`` means stored (DESIGN 3), and storing means a commit, which on SQLite with
``synchronous=FULL`` is an fsync and takes the one write lock. With one transaction per
message, concurrent DATA commands queue on that lock (SQLite's busy handler sleeps
between retries) and pay an fsync each. Here each DATA handler adds (raw, envelope) to
the waiting list and awaits a future. One batch is in flight at a time: while it is
being stored, the next one gathers; when it returns, everything waiting (up to
:data:`MAX_BATCH`) goes as the next batch. :func:`~statusmail.inbound.pipeline.commit_batch`
decides every message, records the decisions in one transaction, and only after that
commit has returned are the futures settled. A refused message writes only its log row;
a database that fails the commit answers every message of the batch ``451 4.3.0`` and
stores none of them; any other failure is retried message by message, deferring only
the message that causes it.

A lone message is sent on at once, so an idle gateway answers no later than without
batching.

The batching itself runs on the event loop, with no thread of its own. A thread between
the loop and the writer cost more than the pipeline's parse did: each hand-over waited
for the other thread to give up the interpreter lock, and ``bench/ingest.py`` with a
writer that stored nothing answered in 3.4 ms (p50) instead of 0.6 ms. ``serve`` stores
batches in a child process (``gateway/writer.py``) that the loop talks to over a pipe;
tests that inject faults store them in a worker thread of this process instead, with
the same :func:`commit_batch`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from statusmail.config import Settings
from statusmail.gateway.writer import WriterProcess
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Outcome, Reason
from statusmail.inbound.pipeline import Job as PipelineJob
from statusmail.inbound.pipeline import commit_batch
from statusmail.store.changes import Change

log = logging.getLogger(__name__)

# Enough to amortise the fsync over a burst; small enough that one batch's SAVEPOINTs and
# identity map stay cheap and a failed commit defers few senders.
MAX_BATCH = 64
# And at most this many bytes of messages (always at least one message): 64 messages of
# smtp.max_message_bytes would be 640 MiB in each process at once.
MAX_BATCH_BYTES = 16 * 1024 * 1024
LOST = Outcome(Reason.INTERNAL_ERROR, "batch lost")


@dataclass
class Job:
    raw: bytes
    envelope: Envelope
    future: asyncio.Future[Outcome]
    changes: tuple[Change, ...] = ()  # the source's own writes, committed with the batch (IMAP's last UID)


class Batcher:
    """Collects the messages of concurrent sessions into batches, one in flight at a time."""

    def __init__(self, settings: Settings, engine: Engine, max_batch: int = MAX_BATCH,
                 writer: WriterProcess | None = None, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self.settings, self.engine, self.max_batch, self.max_batch_bytes = settings, engine, max_batch, max_batch_bytes
        self.writer = writer  # commit in a child process (gateway/writer.py); else in a worker thread
        self.waiting: list[Job] = []
        self.draining: asyncio.Task[None] | None = None
        self.started = False
        # Fault injection for tests: called with the batch's session just before COMMIT.
        self.before_commit: Callable[[Session], None] | None = None
        self.batches = 0  # committed or failed, for the curious (bench, tests)

    def start(self) -> None:
        """Start storing; messages submitted before this wait for it (tests build batches so)."""
        if self.writer is not None:
            self.writer.start()
        self.started = True
        self.drain_soon()

    async def submit(self, raw: bytes, envelope: Envelope, changes: tuple[Change, ...] = ()) -> Outcome:
        """Queue one message; returns its outcome once its batch is committed (or lost)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting.append(Job(raw, envelope, future, changes))
        self.drain_soon()
        return await future

    def drain_soon(self) -> None:
        # The task's first step runs on the loop's next turn, so every DATA that ends in
        # this turn joins the first batch.
        if self.started and self.waiting and self.draining is None:
            self.draining = asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        try:
            while self.waiting:
                batch = self.next_batch()
                try:
                    outcomes = await self.commit(batch)
                except Exception:
                    log.exception("batch of %d messages lost; all deferred", len(batch))
                    outcomes = [LOST] * len(batch)
                for job, outcome in zip(batch, outcomes):
                    if not job.future.done():  # a session that went away cancelled its future
                        job.future.set_result(outcome)
        finally:
            self.draining = None

    def next_batch(self) -> list[Job]:
        """Take the oldest waiting messages, within both caps."""
        size, count = 0, 0
        for job in self.waiting[:self.max_batch]:
            if count and size + len(job.raw) > self.max_batch_bytes:
                break
            size, count = size + len(job.raw), count + 1
        batch, self.waiting = self.waiting[:count], self.waiting[count:]
        return batch

    async def commit(self, batch: list[Job]) -> list[Outcome]:
        """Run and store the batch in one transaction; the outcomes only once it committed."""
        self.batches += 1
        jobs: list[PipelineJob] = [(job.raw, job.envelope, job.changes) for job in batch]
        if self.writer is not None:
            return await self.writer.store(jobs)
        return await asyncio.to_thread(commit_batch, self.settings, self.engine, jobs, self.before_commit)

    async def close(self) -> None:
        """Finish every queued message, then stop the writer."""
        while self.draining is not None:
            await asyncio.shield(self.draining)
        self.started = False
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
