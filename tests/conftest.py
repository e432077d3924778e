"""Shared fixtures: a configured gateway on a temporary SQLite database (or the
PostgreSQL server named by STATUSMAIL_TEST_DATABASE_URL), a real SMTP listener on an
ephemeral loopback port, and the Maildir that outbound mail lands in."""

from __future__ import annotations

import asyncio
import email
import mailbox
import os
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from statusmail.config import Settings, load_settings
from statusmail.store.db import create_private_sqlite, make_engine, upgrade

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
PG_URL = os.environ.get("STATUSMAIL_TEST_DATABASE_URL", "")


def on_postgres(statement: str) -> None:
    admin = make_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite always; with STATUSMAIL_TEST_DATABASE_URL also a fresh PostgreSQL database,
    so tests never see each other's rows (dropped afterwards)."""
    if request.param != "postgresql":
        yield f"sqlite:///{tmp_path}/statusmail.db"
        return
    name = f"statusmail_{uuid.uuid4().hex[:12]}"
    on_postgres(f'CREATE DATABASE "{name}"')
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    on_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/statusmail.db"


def write_config(tmp_path: Path, database_url: str, extra: str = "", smtp: str = "") -> Path:
    """A configuration for tests: ``extra`` lines go in [policy], ``smtp`` lines in [smtp]."""
    config = tmp_path / "statusmail.toml"
    config.write_text(f"""
[smtp]
{smtp}

[gateway]
address = "status@corp.example"
request_address = "status-request@corp.example"
database_url = "{database_url}"
secret_key_file = "{tmp_path}/secret.key"

[outbound]
transport = "maildir:{tmp_path}/outbox"

[policy]
allowed_domains = ["corp.example"]
{extra}
""")
    return config


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    return write_config(tmp_path, database_url)


@pytest.fixture
def settings(config_file: Path) -> Settings:
    return load_settings(str(config_file), environ={})


def initialised_engine(url: str) -> Any:
    """The database as ``statusmail init`` leaves it: a SQLite file made 0600 before SQLite
    opens it (so its -wal and -shm files are too; ``check`` warns otherwise), the schema."""
    create_private_sqlite(url)
    engine = make_engine(url)
    upgrade(engine)
    return engine


@pytest.fixture
def engine(settings: Settings) -> Iterator[Any]:
    engine = initialised_engine(settings.gateway.database_url)
    yield engine
    engine.dispose()


class RunningGateway:
    """`statusmail serve`'s Gateway on an event loop in a thread, for smtplib to talk to."""

    # The pipeline runs in a thread of the test process by default: the same commit_batch
    # as serve's writer process, without a Python interpreter started for every test
    # (a second per test). The writer process itself is covered where it matters:
    # test_writer.py, the concurrent-sessions test and every test of `statusmail serve`.
    def __init__(self, settings: Settings, engine: Any, writer_process: bool = False, web_port: int | None = 0) -> None:
        from statusmail.gateway.serve import Gateway

        self.settings, self.engine = settings, engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gateway = Gateway(settings, engine, writer_process=writer_process, web_port=web_port)
        self.call(self.gateway.start(0))
        self.port = self.gateway.port

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30)

    def send(self, raw: bytes | str | EmailMessage, mail_from: str = "alice@corp.example",
             to: str | list[str] = "status@corp.example") -> tuple[int, str]:
        """One transaction; the reply to DATA (or to the first refused command)."""
        if isinstance(raw, EmailMessage):
            raw = raw.as_bytes(policy=policy.SMTP)  # smtplib sends bytes as they are: CRLF needed
        if isinstance(raw, str):
            raw = raw.encode()
        with self.smtp() as client:
            client.ehlo()
            code, reply = client.mail(mail_from)
            if code != 250:
                return code, reply.decode()
            for rcpt in [to] if isinstance(to, str) else to:
                code, reply = client.rcpt(rcpt)
                if code != 250:
                    return code, reply.decode()
            code, reply = client.data(raw)
            return code, reply.decode()

    def flush_outbox(self) -> int:
        """Send what is due, and wait until the worker has nothing queued in flight."""
        from sqlalchemy import func
        from sqlmodel import Session, select

        from statusmail.outbound.outbox import drain
        from statusmail.store.models import Outbox

        sent = 0
        for _ in range(200):
            sent += self.call(drain(self.engine, self.gateway.transport))
            with Session(self.engine) as session:
                busy = session.exec(select(func.count()).select_from(Outbox).where(
                    Outbox.status == "queued", Outbox.attempts == 0)).one()
            if not busy:
                return sent
            time.sleep(0.05)
        raise AssertionError("the outbox did not drain")

    def stop(self) -> None:
        self.call(self.gateway.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def gateway(settings: Settings, engine: Any) -> Iterator[RunningGateway]:
    running = RunningGateway(settings, engine)
    yield running
    running.stop()


def outbox_messages(settings: Settings) -> list[EmailMessage]:
    """Every message the Maildir transport delivered, oldest first."""
    path = settings.outbound.transport.removeprefix("maildir:")
    if not (Path(path) / "cur").exists():
        return []
    box = mailbox.Maildir(path, create=False)
    items = []
    for key in box.keys():
        with box.get_file(key) as handle:
            items.append((key, handle.read()))
    items.sort(key=lambda kv: kv[0])
    return [email.message_from_bytes(raw, policy=policy.default) for _, raw in items]  # type: ignore[misc]


def make_mail(body: str = "Shipped the billing export #billing", subject: str = "Billing export done",
              sender: str = "Alice Example <alice@corp.example>", to: str = "status@corp.example",
              **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain="corp.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def cli_invoker(config_file: Path) -> Any:
    from statusmail.cli import main

    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None) -> Any:
        return runner.invoke(main, ["--config", str(config_file), *args], input=input, catch_exceptions=False)
    return invoke


@pytest.fixture
def cli(config_file: Path, engine: Any) -> Any:
    """Invoke the real command group with this test's configuration, on a database that
    exists (the ``engine`` fixture made it, as ``statusmail init`` would)."""
    return cli_invoker(config_file)


@pytest.fixture
def uninitialised_cli(config_file: Path) -> Any:
    """The command group with this test's configuration, before ``statusmail init``."""
    return cli_invoker(config_file)


@pytest.fixture
def cli_for() -> Any:
    """A CLI invoker, settings and engine for a configuration file a test wrote itself."""
    from statusmail.cli import main

    engines = []

    def build(config: Path) -> tuple[Any, Settings, Any]:
        runner = CliRunner()
        settings = load_settings(str(config), environ={})
        engine = initialised_engine(settings.gateway.database_url)
        engines.append(engine)

        def invoke(*args: str, input: str | bytes | None = None) -> Any:
            return runner.invoke(main, ["--config", str(config), *args], input=input, catch_exceptions=False)
        return invoke, settings, engine
    yield build
    for engine in engines:
        engine.dispose()


Running = TypeVar("Running", bound=RunningGateway)


@pytest.fixture
def kept_running() -> Iterator[Callable[[Running], Running]]:
    """Keeps each gateway it is handed running until the test ends, then stops it and
    closes its engine: what every ``*_with`` fixture that starts gateways needs."""
    started: list[RunningGateway] = []

    def keep(gateway: Running) -> Running:
        started.append(gateway)
        return gateway
    yield keep
    for running in started:
        running.stop()
        running.engine.dispose()


@pytest.fixture
def gateway_with(tmp_path: Path, sqlite_url: str, kept_running: Any) -> Any:
    """Start a gateway with extra [policy] (and [smtp]) lines; stopped after the test."""
    def start(policy: str = "", smtp: str = "") -> RunningGateway:
        settings = load_settings(str(write_config(tmp_path, sqlite_url, policy, smtp)), environ={})
        return kept_running(RunningGateway(settings, initialised_engine(sqlite_url)))
    return start


# The headless Chromium fixture (`browser`), shared by every test that looks at HTML.
pytest_plugins = ["tests.browser"]
