"""`statusmail serve` reading a mailbox, as a process: kill -9 mid-backlog, SIGTERM (#21).

The last UID commits with each batch and the batch is moved after the commit, so a kill
can leave recorded messages in the folder: the next `serve` must move them, posting
nothing twice, and every message must end up in the processed folder exactly once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from statusmail.store.db import make_engine
from statusmail.store.models import InboundLog, Post
from tests.conftest import make_mail, write_config
from tests.dovecot import PASSWORD, USER
from tests.gateway.test_crash import free_port, start_server
from tests.gateway.test_imap import dovecot, wait_until  # noqa: F401  (the fixture)

MESSAGES = 400


def count_posts(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Post)).one()


@pytest.mark.dovecot
def test_kill_9_mid_backlog_posts_and_moves_every_message_exactly_once(tmp_path: Path, dovecot):  # noqa: F811
    password = tmp_path / "imap.password"
    password.write_text(PASSWORD + "\n")
    url = f"sqlite:///{tmp_path}/statusmail.db"
    config = write_config(tmp_path, url, f"""posts_per_hour = 100000
[imap]
enabled = true
host = "127.0.0.1"
port = {dovecot.port}
ssl = false
username = "{USER}"
password_file = "{password}"
""")
    mails = [make_mail(subject=f"Backlog {n}", sender=f"U{n % 50} <u{n % 50}@corp.example>") for n in range(MESSAGES)]
    with dovecot.imap() as client:
        for mail in mails:
            client.append("INBOX", None, None, mail.as_bytes())
    port = free_port()
    server = start_server(config, port)
    engine = make_engine(url)
    try:
        assert wait_until(lambda: count_posts(engine) > 0, 60)
        server.send_signal(signal.SIGKILL)  # mid-backlog: some batches committed, some moved, most not
        server.wait(10)
        at_kill = count_posts(engine)
        time.sleep(0.5)  # the orphaned writer child finishes or dies with its pipe
        server = start_server(config, port)
        processed = dovecot.folder("statusmail/processed")
        assert wait_until(lambda: dovecot.message_ids("INBOX") == [] and count_posts(engine) == MESSAGES, 120), \
            dovecot.log()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert 0 < at_kill < MESSAGES, at_kill  # the kill really came mid-way
    assert sorted(dovecot.message_ids(processed)) == sorted(m["Message-ID"] for m in mails)
    with Session(engine) as session:
        ids = [p.message_id for p in session.exec(select(Post))]
    assert len(ids) == len(set(ids)) == MESSAGES
    engine.dispose()


@pytest.mark.dovecot
def test_a_from_of_300000_addresses_is_refused_at_once_and_sigterm_stops_serve(tmp_path: Path, dovecot):  # noqa: F811
    """It held the poller for 13 minutes, made SMTP answer 451, and SIGTERM did not stop serve."""
    password = tmp_path / "imap.password"
    password.write_text(PASSWORD + "\n")
    url = f"sqlite:///{tmp_path}/statusmail.db"
    config = write_config(tmp_path, url, f"""
[imap]
enabled = true
host = "127.0.0.1"
port = {dovecot.port}
ssl = false
username = "{USER}"
password_file = "{password}"
""")
    hostile = (b"From: " + b", ".join(b"u%d@corp.example" % i for i in range(300_000)) + b"\r\n"
               b"To: status@corp.example\r\nSubject: hi\r\nMessage-ID: <wide@corp.example>\r\n\r\nhello\r\n")
    behind = make_mail(subject="Right behind it")
    dovecot.append(hostile)
    dovecot.append(behind)
    port = free_port()
    server = start_server(config, port)
    engine = make_engine(url)
    try:
        assert wait_until(lambda: dovecot.message_ids(dovecot.folder("statusmail/failed")) == ["<wide@corp.example>"]
                          and count_posts(engine) == 1, 60), dovecot.log()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0
    assert dovecot.message_ids(dovecot.folder("statusmail/processed")) == [behind["Message-ID"]]
    with Session(engine) as session:
        [refused] = session.exec(select(InboundLog).where(InboundLog.outcome == "refused")).all()
    assert (refused.reason, refused.source) == ("unparseable", "imap")
    engine.dispose()
