"""insert_values: the ingest hot path's plain INSERT must store what the ORM would have."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from statusmail.store.db import insert_values, transaction
from statusmail.store.models import InboundLog


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
