"""Composing the next batch of mail while the last one is recorded: digests and check-ins.

A run composes a batch of readers' mail (CPU), then records it in one transaction (the
commit's fsync, and any wait for SQLite's write lock while the outbox worker marks mail
sent). Done one after the other, each waits for the other; here the batch is recorded
in a second thread while the next is composed. One batch at most is in flight, and
outcomes are counted in order, in the composing thread.

The outbox worker is woken by the recording thread right after the commit: woken when
the outcomes are counted, after the next batch is composed, it would find each batch
by its own polling, a batch's composing time late (150-330 ms for leaders' weeks,
bench/checkins.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Batch = TypeVar("Batch")
QUEUED = "queued"


def compose_while_recording(batches: Iterable[Batch], record: Callable[[Batch], list[str]],
                            tally: Callable[[Batch, list[str]], None], *, on_queued: Callable[[], None] | None,
                            stopping: threading.Event | None, thread_name: str) -> None:
    """Record each batch ``batches`` yields (composing it is the iteration) and hand its
    outcomes (one per reader, ``queued`` for a mail recorded) to ``tally``.

    ``on_queued`` is called from the recording thread after each batch that queued mail,
    so it must be thread-safe (serve's poke is ``call_soon_threadsafe``). ``stopping``
    is looked at before each batch is composed: a batch composed is always recorded."""

    def record_and_poke(batch: Batch) -> list[str]:
        outcomes = record(batch)
        if QUEUED in outcomes and on_queued is not None:
            on_queued()
        return outcomes

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name) as recorder:
        recording: tuple[Batch, Future[list[str]]] | None = None
        composing = iter(batches)
        while stopping is None or not stopping.is_set():
            batch = next(composing, None)
            if batch is None:
                break
            if recording is not None:
                tally(recording[0], recording[1].result())
            recording = (batch, recorder.submit(record_and_poke, batch))
        if recording is not None:
            tally(recording[0], recording[1].result())
