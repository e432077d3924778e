"""Two `serve` processes on one PostgreSQL database share the work (SPEC §4, DESIGN 4).

Mail arrives at both; each process's outbox worker claims rows with FOR UPDATE SKIP
LOCKED, so every notification leaves exactly once whichever process sends it.
"""

from __future__ import annotations

import mailbox
import signal
import smtplib
import uuid

import pytest
from sqlmodel import Session, func, select

from statusmail.store.db import make_engine, upgrade
from statusmail.store.models import Outbox, Post
from tests.conftest import PG_URL, make_mail, on_postgres, write_config
from tests.gateway.test_crash import free_port, start_server

pytestmark = [pytest.mark.skipif(not PG_URL, reason="STATUSMAIL_TEST_DATABASE_URL is not set (no PostgreSQL server)"),
              pytest.mark.slow]


def test_two_serve_processes_share_one_database_and_send_each_mail_once(tmp_path):
    name = f"statusmail_{uuid.uuid4().hex[:12]}"
    on_postgres(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    config = write_config(tmp_path, url, "posts_per_hour = 1000")
    engine = make_engine(url)
    upgrade(engine)
    ports = [free_port(), free_port()]
    servers = [start_server(config, port) for port in ports]
    try:
        for i in range(40):
            with smtplib.SMTP("127.0.0.1", ports[i % 2], timeout=10) as client:
                msg = make_mail(body=f"update {i} for @bob", subject="status")
                client.sendmail("alice@corp.example", ["status@corp.example"], msg.as_bytes().replace(b"\n", b"\r\n"))
            if i == 0:
                with smtplib.SMTP("127.0.0.1", ports[1], timeout=10) as client:  # bob exists from now on
                    client.sendmail("bob@corp.example", ["status@corp.example"],
                                    make_mail(body="hi", subject="status", sender="bob@corp.example").as_bytes()
                                    .replace(b"\n", b"\r\n"))
        for _ in range(400):
            with Session(engine) as session:
                queued = session.exec(select(func.count()).select_from(Outbox).where(Outbox.status != "sent")).one()
            if not queued:
                break
            import time
            time.sleep(0.05)
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        assert [server.wait(30) for server in servers] == [0, 0]
    with Session(engine) as session:
        rows = session.exec(select(Outbox)).all()
        assert session.exec(select(func.count()).select_from(Post)).one() == 41
    delivered = [m["Message-ID"] for m in mailbox.Maildir(tmp_path / "outbox", create=False)]
    assert len(rows) == 39 and all(r.status == "sent" for r in rows)
    assert sorted(delivered) == sorted(r.message_id for r in rows)  # each exactly once
    engine.dispose()
    on_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
