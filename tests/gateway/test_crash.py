"""kill -9 in the middle of a load: nothing answered 250 is lost, retries never double.

`statusmail serve` runs as a real subprocess; several SMTP clients send a few hundred
messages concurrently; the server is killed with SIGKILL part-way; a new server starts
on the same database and the clients resend everything, as MTAs retry what got no 250
(and, for good measure, what did).
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from statusmail.store.db import make_engine
from statusmail.store.models import Post
from tests.conftest import write_config

MESSAGES = 300
CLIENTS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: Path, port: int) -> subprocess.Popen:
    """`statusmail serve` on ``port``, after `statusmail init` (only init creates a database)."""
    env = {**os.environ, "STATUSMAIL_SMTP_PORT": str(port)}
    subprocess.run([sys.executable, "-m", "statusmail", "--config", str(config), "init"], env=env, check=True,
                   capture_output=True)
    process = subprocess.Popen([sys.executable, "-m", "statusmail", "--config", str(config), "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("serve did not start")


def message(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"user{i % 50}@corp.example"
    msg["To"] = "status@corp.example"
    msg["Subject"] = "status"
    msg["Message-ID"] = f"<crash-{i}@corp.example>"
    msg.set_content(f"update number {i}")
    return msg.as_bytes(policy=SMTP_POLICY)


def send_all(port: int, numbers: list[int], accepted: set[int], lock: threading.Lock) -> None:
    for i in numbers:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail(f"user{i % 50}@corp.example", ["status@corp.example"], message(i))
            with lock:
                accepted.add(i)
        except (OSError, smtplib.SMTPException):
            pass  # no 250: the MTA keeps it and retries


@pytest.mark.slow
def test_kill_9_loses_no_accepted_message_and_retries_never_double(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url, "posts_per_hour = 1000")
    (tmp_path / "statusmail.toml").write_text(config.read_text())
    port = free_port()
    server = start_server(config, port)
    accepted: set[int] = set()
    lock = threading.Lock()
    chunks = [list(range(MESSAGES))[k::CLIENTS] for k in range(CLIENTS)]
    threads = [threading.Thread(target=send_all, args=(port, chunk, accepted, lock)) for chunk in chunks]
    for thread in threads:
        thread.start()
    while len(accepted) < MESSAGES // 3:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    for thread in threads:
        thread.join()
    answered_before_crash = set(accepted)
    assert 0 < len(answered_before_crash) < MESSAGES

    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        stored = {int(b.rsplit(" ", 1)[1]) for b in session.exec(select(Post.body))}
    assert answered_before_crash <= stored  # 250 meant stored

    server = start_server(config, port)
    try:
        retry: set[int] = set()
        send_all(port, list(range(MESSAGES)), retry, lock)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0  # a clean shutdown on SIGTERM
    assert retry == set(range(MESSAGES))
    with Session(engine) as session:
        bodies = session.exec(select(Post.body)).all()
        assert session.exec(select(func.count()).select_from(Post)).one() == MESSAGES
    assert sorted(int(b.rsplit(" ", 1)[1]) for b in bodies) == list(range(MESSAGES))
    engine.dispose()
