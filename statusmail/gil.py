"""Process-wide switches for a process that runs a digest: set at its entry point only.

``statusmail digest send`` (and ``bench/digest.py``) enter :func:`digest_process` around
the run; ``serve`` does not, because its listener shares the process and must keep the
interpreter's defaults. Domain code never sets these.

Short turns at the interpreter lock while a busy thread works beside an I/O thread:

CPython hands the lock to a waiting thread only when the running one blocks or has held
it for the switch interval (5 ms by default). A thread that mostly waits on I/O (a
SQLite call, a pipe to the writer process) gives the lock up for every call and then
waits out a busy thread's whole turn to get it back: the convoy effect. With dozens of
such calls per unit of work, the I/O thread spends most of its time waiting for turns,
and whoever waits for it waits too.

Measured (bench/digest.py, 10,000 readers): a digest run's recorder thread took 660 ms
per batch of 100 readers while the composing thread was busy, about 60 ms of it work;
with 0.5 ms turns, 160 ms, and composing no longer waits for it. (``serve``'s listener
keeps the default: it waits for the writer process on its event loop, with no thread
beside it, ``gateway/batcher.py``.)
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TURN = 0.0005  # seconds

_lock = threading.Lock()
_holders = 0
_saved = 0.005


@contextmanager
def short_gil_turns() -> Iterator[None]:
    """Switch threads after :data:`TURN` while inside. The setting is the process's:
    overlapping users (two digest runs in one process) share it, and the last one out
    restores what the first one found."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(TURN)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                sys.setswitchinterval(_saved)


@contextmanager
def frozen_for_gc() -> Iterator[None]:
    """Keep the objects alive now out of the garbage collector's full collections.

    A run's news window and follows live, unchanged, until it ends: hundreds of
    thousands of objects that each full collection would walk again (about 20 times a
    run at 10,000 readers, 90 ms each). Frozen (``gc.freeze``), they are skipped, and
    everything made later is collected as usual; unfrozen at the end, they are
    ordinary objects again, freed when the run drops them.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def digest_process() -> Iterator[None]:
    """Both switches, for the length of a digest run in a process of its own."""
    with frozen_for_gc(), short_gil_turns():
        yield
