"""The loop that every scheduler in ``serve`` shares (digests, check-ins).

Once an interval, a subclass's :meth:`Scheduler.send_due` runs in a thread
(``asyncio.to_thread``), so the listener stays responsive; it is handed the clock's
``now``, a ``poke`` that calls ``on_queued`` (the outbox worker's wake-up) on the event
loop, and the ``stopping`` event it checks between readers. The first look is one interval
after start, not at start: a restart at 08:00 does not race the process it replaces, and
short-lived test gateways send nothing. A failed look is logged and the next one comes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from statusmail.config import Settings
from statusmail.errors import StoreUnavailable
from statusmail.store.models import utcnow

log = logging.getLogger(__name__)

TICK_SECONDS = 60.0


class Scheduler:
    name = "scheduler"  # for the log
    tick_seconds = TICK_SECONDS  # a class attribute, so a test process can shorten one kind

    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None], *,
                 now: Callable[[], datetime] = utcnow, interval: float | None = None) -> None:
        self.settings, self.engine, self.on_queued = settings, engine, on_queued
        self.now, self.interval = now, self.tick_seconds if interval is None else interval
        self._stopping = threading.Event()
        self._wakeup: asyncio.Event | None = None

    @property
    def enabled(self) -> bool:
        return True

    def send_due(self, now: datetime, poke: Callable[[], None], stopping: threading.Event) -> Any:
        """Send what is due at ``now`` (blocking, in a thread); returns a report."""
        raise NotImplementedError

    async def tick(self) -> Any:
        """One look: send what is due now."""
        loop = asyncio.get_running_loop()

        def poke() -> None:
            loop.call_soon_threadsafe(self.on_queued)
        return await asyncio.to_thread(self.send_due, self.now(), poke, self._stopping)

    async def run(self) -> None:
        if not self.enabled:
            return
        self._wakeup = asyncio.Event()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
            except TimeoutError:
                pass
            if self._stopping.is_set():
                break
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("%s: database unavailable: %s", self.name, exc)
            except Exception:
                log.exception("%s: run failed", self.name)

    def stop(self) -> None:
        """Stop after the reader being sent now; the rest are sent by the next start."""
        self._stopping.set()
        if self._wakeup is not None:
            self._wakeup.set()
