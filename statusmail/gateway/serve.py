"""``statusmail serve``: the listener, the outbox worker and the schedulers, until a signal.

SIGTERM or SIGINT stops accepting connections, lets messages already in DATA finish
(their senders get their 250 or 4xx), stops the workers and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field

from sqlalchemy import Engine

from statusmail.config import Settings
from statusmail.errors import ListenError
from statusmail.gateway.batcher import Batcher
from statusmail.gateway.imap import ImapPoller
from statusmail.gateway.smtp import StatusHandler, protocol_factory
from statusmail.gateway.writer import WriterProcess
from statusmail.outbound.checkins import CheckinScheduler
from statusmail.outbound.digest import DigestScheduler
from statusmail.outbound.outbox import OutboxWorker
from statusmail.outbound.transport import Transport, make_transport
from statusmail.store.retention import prune_periodically

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0


class InFlight:
    """Counts DATA commands being processed, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.idle.clear()

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


class TrackingHandler(StatusHandler):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.in_flight = InFlight()

    async def handle_DATA(self, server, session, envelope):
        with self.in_flight:
            return await super().handle_DATA(server, session, envelope)


@dataclass
class Gateway:
    """The running service; tests start it on port 0 and read ``port``."""

    settings: Settings
    engine: Engine
    transport: Transport | None = None
    port: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Run the pipeline in a child process (gateway/writer.py). False keeps it in a thread
    # of this process: the same commit_batch, for tests that inject faults into it.
    writer_process: bool = True
    # The HTTP port when web.enabled; None: web.port (tests pass 0 and read web.port).
    web_port: int | None = None

    async def start(self, port: int | None = None) -> None:
        self.transport = self.transport or make_transport(self.settings)
        self.worker = OutboxWorker(self.engine, self.transport)
        # Group commit: 250 after the shared commit, made in a process of its own.
        writer = WriterProcess(self.settings) if self.writer_process else None
        self.batcher = Batcher(self.settings, self.engine, writer=writer)
        self.handler = TrackingHandler(self.settings, self.engine, on_queued=self.worker.poke, batcher=self.batcher)
        loop = asyncio.get_running_loop()
        # Bound before anything else starts: a taken port is one line, with no writer
        # process or task left behind to stop.
        host, wanted = self.settings.smtp.host, self.settings.smtp.port if port is None else port
        try:
            self.server = await loop.create_server(protocol_factory(self.settings, self.handler), host, wanted)
        except OSError as exc:
            # asyncio's message repeats the address; the errno's own text is enough.
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ListenError(f"cannot listen on {host}:{wanted}: {reason}") from exc
        self.batcher.start()
        self.port = self.server.sockets[0].getsockname()[1]
        self.tasks.append(asyncio.create_task(self.worker.run(), name="outbox"))
        self.stopping = asyncio.Event()
        self.tasks.append(asyncio.create_task(
            prune_periodically(self.engine, self.settings.gateway.keep_raw_days, self.stopping), name="retention"))
        self.digests = DigestScheduler(self.settings, self.engine, on_queued=self.worker.poke)
        self.tasks.append(asyncio.create_task(self.digests.run(), name="digests"))
        self.checkins = CheckinScheduler(self.settings, self.engine, on_queued=self.worker.poke)
        self.tasks.append(asyncio.create_task(self.checkins.run(), name="checkins"))
        # The poller shares the batcher, so IMAP mail is stored by the same writer process.
        self.poller = (ImapPoller(self.settings, self.engine, on_queued=self.worker.poke, batcher=self.batcher)
                       if self.settings.imap.enabled else None)
        if self.poller is not None:
            self.imap_task = asyncio.create_task(self.poller.run(), name="imap")
            self.tasks.append(self.imap_task)
        self.web = None
        if self.settings.web.enabled:  # the read-only web (SPEC §8), on this same event loop
            from statusmail.web.server import WebServer

            self.web = WebServer(self.settings, self.engine, on_queued=self.worker.poke)
            await self.web.start(self.web_port)
        log.info("%s listening on %s:%d", "LMTP" if self.settings.smtp.lmtp else "SMTP", self.settings.smtp.host, self.port)

    async def stop(self) -> None:
        self.server.close()
        if self.web is not None:
            await self.web.stop()
        try:
            await asyncio.wait_for(self.handler.in_flight.idle.wait(), DRAIN_SECONDS)
        except TimeoutError:
            log.warning("%d messages still in progress at shutdown", self.handler.in_flight.count)
        if self.poller is not None:  # finish the batch in hand: it needs the batcher
            self.poller.stop()
            await asyncio.gather(self.imap_task, return_exceptions=True)
        await self.batcher.close()  # commits what is queued; its senders get their replies
        self.digests.stop()
        self.checkins.stop()
        self.stopping.set()
        self.worker.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        log.info("stopped")


async def serve_forever(settings: Settings, engine: Engine, ready_message: str = "") -> None:
    gateway = Gateway(settings, engine)
    await gateway.start()
    if ready_message:
        print(ready_message.format(port=gateway.port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received, shutting down")
    await gateway.stop()
