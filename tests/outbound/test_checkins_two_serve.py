"""Two `serve` processes on one PostgreSQL database, both on the same frozen Monday:
every question, round-up and leader's week goes out exactly once (SPEC §7 "never two
questions or round-ups for one user and day")."""

from __future__ import annotations

import mailbox
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from statusmail.store.db import make_engine, upgrade
from statusmail.store.models import Checkin, CheckinMail, Outbox, Post, User
from tests.conftest import PG_URL, on_postgres
from tests.gateway.test_crash import free_port
from tests.outbound.test_checkins import checkin_config

pytestmark = [pytest.mark.skipif(not PG_URL, reason="STATUSMAIL_TEST_DATABASE_URL is not set (no PostgreSQL server)"),
              pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MONDAY_8_UTC = "2026-11-30T08:00:00+00:00"  # 17:00 in Tokyo, 09:00 in Berlin


def start_frozen_server(config: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "STATUSMAIL_SMTP_PORT": str(port), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "tests.outbound.frozen_serve", MONDAY_8_UTC,
                                "--config", str(config), "serve"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("serve did not start")


def seed(engine) -> None:
    """Billing in Tokyo and Ops in Berlin, both managed by Mia; Friday's answers of one each."""
    friday = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    with Session(engine) as session:
        session.add(User(email="mia@corp.example", handle="mia", team="leads", timezone="Europe/Berlin"))
        for n in range(10):
            session.add(User(email=f"t{n}@corp.example", handle=f"t{n}", team="billing", timezone="Asia/Tokyo",
                             manager_email="mia@corp.example"))
            session.add(User(email=f"b{n}@corp.example", handle=f"b{n}", team="ops", timezone="Europe/Berlin",
                             manager_email="mia@corp.example"))
        session.commit()
        for name in ("t0", "b0"):
            user = session.exec(select(User).where(User.handle == name)).one()
            post = Post(author_id=user.id, body=f"{name} closed the books", created_at=friday,  # type: ignore[arg-type]
                        message_id=f"<{name}@corp.example>")
            session.add(post)
            session.flush()
            post.thread_id = post.id
            session.add(Checkin(user_id=user.id, day="2026-11-27", token=f"seededtoken{name}",  # type: ignore[arg-type]
                                answer_post_id=post.id, created_at=friday))
        session.commit()


def test_two_serve_processes_send_each_question_round_up_and_week_once(tmp_path):
    name = f"statusmail_{uuid.uuid4().hex[:12]}"
    on_postgres(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    config = checkin_config(tmp_path, url)
    engine = make_engine(url)
    upgrade(engine)
    seed(engine)
    expected = {"question": 10, "roundup": 21, "rollup": 1}  # Tokyo asked; both teams and Mia; Mia's week
    servers = [start_frozen_server(config, free_port()) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Session(engine) as session:
                sent = Counter(session.exec(select(Outbox.kind).where(Outbox.status == "sent")).all())
            if sent == expected:
                break
            time.sleep(0.2)
        time.sleep(2)  # ten more looks by each process: still nothing more
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        assert [server.wait(30) for server in servers] == [0, 0]
    with Session(engine) as session:
        kinds = Counter(session.exec(select(Outbox.kind)).all())
        questions = session.exec(select(func.count()).select_from(Checkin).where(Checkin.day == "2026-11-30")).one()
        roundups = session.exec(select(CheckinMail.user_id).where(CheckinMail.kind == "roundup",
                                                                  CheckinMail.period == "2026-11-27")).all()
        rows = session.exec(select(Outbox)).all()
    assert kinds == expected and questions == 10 and len(roundups) == len(set(roundups)) == 21
    delivered = Counter((m["To"], m["Subject"].split(" ")[0]) for m in mailbox.Maildir(tmp_path / "outbox", create=False))
    assert sum(delivered.values()) == 32 and set(delivered.values()) == {1}  # each reader got each mail once
    assert sorted(m["Message-ID"] for m in mailbox.Maildir(tmp_path / "outbox", create=False)) == \
        sorted(r.message_id for r in rows)
    engine.dispose()
    on_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
