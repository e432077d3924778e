"""Keeping raw inbound messages for ``gateway.keep_raw_days`` and no longer.

The raw bytes are kept so any message can be inspected or reprocessed after a fix; the
log entry itself (who, when, outcome, reason) stays for good, only the bytes go.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import col, update

from statusmail.errors import StoreUnavailable
from statusmail.store.db import transaction
from statusmail.store.models import InboundLog, utcnow

log = logging.getLogger(__name__)


def prune_raw_messages(engine: Engine, keep_days: int) -> int:
    """Drop the raw bytes of log entries older than ``keep_days``. Returns how many."""
    cutoff = utcnow() - timedelta(days=keep_days)
    with transaction(engine) as session:
        result = session.exec(update(InboundLog).where(col(InboundLog.received_at) < cutoff,
                                                       col(InboundLog.raw).is_not(None)).values(raw=None))
        return int(result.rowcount or 0)


async def prune_periodically(engine: Engine, keep_days: int, stopping: asyncio.Event,
                             every_seconds: float = 3600.0) -> None:
    """``serve``'s housekeeping: prune at start and then every hour until stopped."""
    while not stopping.is_set():
        try:
            pruned = await asyncio.to_thread(prune_raw_messages, engine, keep_days)
            if pruned:
                log.info("dropped the raw bytes of %d log entries older than %d days", pruned, keep_days)
        except StoreUnavailable as exc:
            log.warning("retention: database unavailable: %s", exc)
        try:
            await asyncio.wait_for(stopping.wait(), every_seconds)
        except TimeoutError:
            pass
