"""Database trouble answers 451 4.3.0, never 5xx, and the gateway recovers by itself
(SPEC §3 SMTP answers, DESIGN decision 2)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlmodel import Session, select

from statusmail.config import load_settings
from statusmail.inbound import outcome as replies
from statusmail.store.db import make_engine, upgrade
from statusmail.store.models import Post
from tests.conftest import PG_URL, RunningGateway, make_mail, on_postgres, write_config


def test_a_locked_sqlite_database_defers_451_4_3_0_then_recovers(gateway, settings, engine):
    if not settings.gateway.database_url.startswith("sqlite"):
        pytest.skip("SQLite locking")
    path = settings.gateway.database_url.split("///", 1)[1]
    blocker = sqlite3.connect(path, timeout=10, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        code, reply = gateway.send(make_mail(body="while locked", subject="status"))
    finally:
        blocker.rollback()
        blocker.close()
    assert (code, reply) == (451, replies.DEFERRED_STORE.removeprefix("451 "))
    assert gateway.send(make_mail(body="after the lock", subject="status"))[0] == 250
    with Session(engine) as session:
        assert session.exec(select(Post.body)).all() == ["after the lock"]


class CuttableProxy:
    """A TCP proxy to PostgreSQL that a test can cut and restore: a server outage on demand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, upstream_writer]
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()

    def start(self) -> None:
        self.run(self._start())

    def cut(self) -> None:
        self.run(self._cut())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.mark.skipif(not PG_URL, reason="STATUSMAIL_TEST_DATABASE_URL is not set (no PostgreSQL server to test with)")
def test_postgresql_going_down_defers_451_4_3_0_and_coming_back_recovers(tmp_path):
    import uuid
    from urllib.parse import urlsplit

    name = f"statusmail_{uuid.uuid4().hex[:12]}"
    on_postgres(f'CREATE DATABASE "{name}"')
    parts = urlsplit(PG_URL)
    proxy = CuttableProxy(parts.port or 5432)
    proxy.start()
    url = f"{parts.scheme}://{parts.username}@127.0.0.1:{proxy.port}/{name}"
    settings = load_settings(str(write_config(tmp_path, url)), environ={})
    engine = make_engine(url)
    upgrade(engine)
    running = RunningGateway(settings, engine)
    try:
        assert running.send(make_mail(body="before", subject="status"))[0] == 250
        proxy.cut()
        code, reply = running.send(make_mail(body="during", subject="status"))
        assert (code, reply[:5]) == (451, "4.3.0")
        proxy.start()  # the same port: the server is back
        assert running.send(make_mail(body="after", subject="status"))[0] == 250
        with Session(engine) as session:
            assert sorted(session.exec(select(Post.body)).all()) == ["after", "before"]
    finally:
        running.stop()
        engine.dispose()
        proxy.close()
        on_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
