"""`statusmail serve` on a frozen clock, for tests that run it as a process of its own.

Usage: python -m tests.outbound.frozen_serve ISO-MOMENT --config PATH serve

The clock starts at ISO-MOMENT and runs on from there (time-machine patches the wall
clock only; the event loop's monotonic clock is untouched), and the check-in
scheduler looks every 0.2 s instead of every minute, so two processes race for the
same questions many times within a test.
"""

from __future__ import annotations

import sys
from datetime import datetime

import time_machine

from statusmail.outbound import checkins


def run(argv: list[str]) -> None:
    checkins.CheckinScheduler.tick_seconds = 0.2
    with time_machine.travel(datetime.fromisoformat(argv[0]), tick=True):
        from statusmail.cli import main

        main(argv[1:])


if __name__ == "__main__":
    run(sys.argv[1:])
