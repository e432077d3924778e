"""The pipeline's own process: parse, decide and commit beside the SMTP listener, not under it.

aiosmtpd and the pipeline are both pure Python. In one process they take turns on one
interpreter lock: every socket call of the event loop hands the lock to the pipeline's
thread, which keeps it for up to the 5 ms switch interval, and the pair spends much of
its time handing the lock back and forth. ``bench/ingest.py`` with py-spy showed the
pipeline thread holding the lock 70% of the time while the listener waited for it.

Here the listener's event loop ships each batch of
:class:`~statusmail.gateway.batcher.Batcher` over a pipe to a child process that runs
:func:`~statusmail.inbound.pipeline.commit_batch` (decide every message, record the
batch in one transaction) and sends back the outcomes, once the commit has returned. One round trip per
batch, not per message, and no thread in the listener: the loop waits for the answer
as it waits for a socket. ``250`` still means committed: the listener answers only from
outcomes the child sent after its commit.

If the child dies (killed, out of memory), the batch in hand is answered ``451 4.3.0``:
whether or not it was committed, the sender retries, and a message that was committed
is then recognised by its dedupe key and answered ``250`` without a second post. A new
child is started for the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection
from typing import Any

from statusmail.config import Settings
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Outcome, Reason

log = logging.getLogger(__name__)

Jobs = list[tuple[bytes, Envelope] | tuple[bytes, Envelope, tuple[Any, ...]]]  # pipeline.Job
# "spawn", not "fork": the listener has threads, a running event loop and open database
# connections, none of which survive a fork safely.
CONTEXT = multiprocessing.get_context("spawn")
STOP_SECONDS = 30.0
# Batches up to this size are written to the pipe from the event loop; a Unix socket
# pair buffers more than this, so the write never waits for the child.
INLINE_BYTES = 64 * 1024


class WriterProcess:
    """A child process that stores batches; :meth:`store` returns once one is committed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: Any = None
        self.pipe: Connection | None = None

    def start(self) -> None:
        parent, child = CONTEXT.Pipe()
        self.process = CONTEXT.Process(target=serve_batches, args=(child, self.settings),
                                       name="statusmail-writer", daemon=True)
        self.process.start()
        child.close()
        self.pipe = parent
        log.info("pipeline writer process %d started", self.process.pid)

    async def store(self, jobs: Jobs) -> list[Outcome]:
        """The outcomes of ``jobs``, committed by the child; never raises (the batcher
        must live on), a lost batch is answered as deferred. One batch at a time."""
        try:
            if self.pipe is None or not self.process.is_alive():
                await asyncio.to_thread(self.restart)  # a spawn takes a second: not on the loop
            assert self.pipe is not None
            if sum(len(job[0]) for job in jobs) <= INLINE_BYTES:
                self.pipe.send(jobs)  # fits the socket's buffer: returns at once
            else:  # copying megabytes would hold up every session on the loop meanwhile
                await asyncio.to_thread(self.pipe.send, jobs)
            return await self.answer(self.pipe)
        except Exception as exc:
            log.error("writer process lost with %d messages in hand (%r); all deferred", len(jobs), exc)
            await asyncio.to_thread(self.stop)  # the next batch starts a new one
            return [Outcome(Reason.INTERNAL_ERROR, "writer process lost")] * len(jobs)

    @staticmethod
    async def answer(pipe: Connection) -> list[Outcome]:
        """Wait on the loop for the child's reply; EOFError if it died instead."""
        loop = asyncio.get_running_loop()
        replied: asyncio.Future[list[Outcome]] = loop.create_future()

        def readable() -> None:
            loop.remove_reader(pipe.fileno())
            try:  # the child writes its reply at once: recv() does not wait long, if at all
                replied.set_result(pipe.recv())
            except BaseException as exc:
                replied.set_exception(exc)

        loop.add_reader(pipe.fileno(), readable)
        try:
            return await replied
        finally:
            loop.remove_reader(pipe.fileno())

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        """Ask the child to finish and wait for it; kill it if it does not."""
        if self.pipe is not None:
            try:
                self.pipe.send(None)
            except OSError:
                pass
            self.pipe.close()
            self.pipe = None
        if self.process is not None:
            self.process.join(STOP_SECONDS)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self.process = None


def serve_batches(pipe: Connection, settings: Settings) -> None:
    """The child: store each batch it is sent and answer with the outcomes, until None."""
    from statusmail.inbound.pipeline import commit_batch
    from statusmail.logs import flush_logs, setup_logging
    from statusmail.store.db import make_engine

    # The listener decides when to stop (it sends None after the last batch); a Ctrl-C
    # in the terminal reaches the whole process group and must not cut a batch short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(buffered=True)  # a batch's lines are written once it is answered
    engine = make_engine(settings.gateway.database_url)
    try:
        while True:
            try:
                jobs = pipe.recv()
            except EOFError:  # the listener went away
                return
            if jobs is None:
                return
            pipe.send(commit_batch(settings, engine, jobs))
            flush_logs()
    finally:
        engine.dispose()
        flush_logs()
