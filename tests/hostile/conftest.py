"""The hostile-input suite (#16): a real gateway on loopback, configured per test, on
SQLite and (with STATUSMAIL_TEST_DATABASE_URL) PostgreSQL. Every test sends its input
over SMTP the way an attacker would and asserts the SMTP answer, the log row, what was
stored and what was (not) mailed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import Session, col, select

from statusmail.config import load_settings
from statusmail.store.db import make_engine, upgrade
from statusmail.store.models import InboundLog, Outbox, Post
from tests.conftest import RunningGateway, write_config


class Hostile:
    """One configured gateway, its command line, and what it stored and mailed."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path, self.database_url = tmp_path, database_url
        self.running: RunningGateway | None = None

    def start(self, policy: str = "", smtp: str = "") -> RunningGateway:
        from statusmail.cli import main

        self.config = write_config(self.tmp_path, self.database_url, policy, smtp)
        self.settings = load_settings(str(self.config), environ={})
        self.engine = make_engine(self.database_url)
        upgrade(self.engine)
        self.running = RunningGateway(self.settings, self.engine)
        runner = CliRunner()
        self.cli = lambda *args: runner.invoke(main, ["--config", str(self.config), *args], catch_exceptions=False)
        return self.running

    def posts(self) -> list[Post]:
        with Session(self.engine) as session:
            return list(session.exec(select(Post).order_by(col(Post.id))))

    def log(self) -> list[InboundLog]:
        with Session(self.engine) as session:
            return list(session.exec(select(InboundLog).order_by(col(InboundLog.id))))

    def outbox(self) -> list[Outbox]:
        with Session(self.engine) as session:
            return list(session.exec(select(Outbox).order_by(col(Outbox.id))))

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.engine.dispose()


@pytest.fixture
def hostile(tmp_path: Path, database_url: str) -> Iterator[Any]:
    h = Hostile(tmp_path, database_url)
    yield h
    h.stop()
