"""Keeping raw inbound messages for ``gateway.keep_raw_days`` and no longer.

The raw bytes are kept so any message can be inspected or reprocessed after a fix; the
log entry itself (who, when, outcome, reason) stays for good, only the bytes go.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import col, update

from statusmail.store.db import transaction
from statusmail.store.models import InboundLog, utcnow


def prune_raw_messages(engine: Engine, keep_days: int) -> int:
    """Drop the raw bytes of log entries older than ``keep_days``. Returns how many."""
    cutoff = utcnow() - timedelta(days=keep_days)
    with transaction(engine) as session:
        result = session.exec(update(InboundLog).where(col(InboundLog.received_at) < cutoff,  # type: ignore[call-overload]
                                                       col(InboundLog.raw).is_not(None)).values(raw=None))
        return int(result.rowcount or 0)
