"""insert_values and store/direct.py: the ingest hot path runs its statements on the
driver, and must store what the ORM would have, inside the same transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from statusmail.store.db import insert_values, transaction
from statusmail.store.models import InboundLog, utcnow


def test_a_row_gets_the_models_defaults_and_reads_back_through_the_orm(engine: Any) -> None:
    with transaction(engine) as session:
        log_id = insert_values(session, InboundLog, outcome="accepted", raw=b"Subject: hi\r\n\r\nhello\r\n")
    with Session(engine) as session:
        row = session.get(InboundLog, log_id)
    assert row is not None
    assert (row.outcome, row.source, row.message_id, row.dedupe_key, row.raw) == (
        "accepted", "smtp", "", None, b"Subject: hi\r\n\r\nhello\r\n")
    assert row.received_at.tzinfo is not None  # the default_factory ran: an aware UTC time


def test_a_misspelt_column_is_an_error_not_a_silently_dropped_value(engine: Any) -> None:
    with transaction(engine) as session, pytest.raises(TypeError, match="no column outcom"):
        insert_values(session, InboundLog, outcom="accepted")


def test_a_time_written_on_the_driver_reads_back_equal_and_sorts_with_orm_rows(engine: Any) -> None:
    """SQLite keeps datetimes as text: the driver must get SQLAlchemy's format, or
    range queries (the rate limit's "posts in the last hour") compare wrong."""
    earlier = utcnow().replace(microsecond=0)  # the format's corner: no fraction
    later = earlier.replace(microsecond=500)
    with transaction(engine) as session:
        session.add(InboundLog(outcome="accepted", received_at=later, detail="orm"))
        direct = insert_values(session, InboundLog, outcome="accepted", received_at=earlier, detail="direct")
    with Session(engine) as session:
        assert session.get(InboundLog, direct).received_at == earlier  # type: ignore[union-attr]
        newer = session.exec(select(InboundLog.detail).where(col(InboundLog.received_at) > earlier)).all()
    assert newer == ["orm"]


def test_a_unique_violation_on_the_driver_is_sqlalchemys_integrity_error(engine: Any) -> None:
    """The pipeline tells a duplicate that raced in by this exception, whichever path wrote."""
    with transaction(engine) as session:
        insert_values(session, InboundLog, outcome="accepted", dedupe_key="mid:1")
        with pytest.raises(IntegrityError):
            insert_values(session, InboundLog, outcome="accepted", dedupe_key="mid:1")
        session.rollback()


def test_a_driver_write_in_a_rolled_back_savepoint_is_gone(engine: Any) -> None:
    """A refused message's writes roll back with its SAVEPOINT (pipeline.process)."""
    with transaction(engine) as session:
        kept = insert_values(session, InboundLog, outcome="accepted", detail="kept")
        savepoint = session.begin_nested()
        insert_values(session, InboundLog, outcome="accepted", detail="refused later")
        savepoint.rollback()
    with Session(engine) as session:
        assert session.exec(select(InboundLog.id)).all() == [kept]
