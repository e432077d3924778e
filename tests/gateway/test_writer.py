"""The pipeline's writer process (gateway/writer.py): its death loses and doubles nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from email import policy
from typing import Any

from sqlmodel import Session, func, select

from statusmail.config import Settings
from statusmail.gateway.writer import WriterProcess
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import DEFERRED_ERROR, Reason, smtp_reply
from statusmail.store.models import InboundLog, Post
from tests.conftest import make_mail


def batch(n: int, first: int = 0) -> list[tuple[bytes, Envelope]]:
    """n posts, each by its own sender (posts_per_hour is per sender)."""
    return [(make_mail(sender=f"user{i}@corp.example", body=f"update {i}").as_bytes(policy=policy.SMTP),
             Envelope(mail_from=f"user{i}@corp.example", rcpt_tos=("status@corp.example",), peer="127.0.0.1"))
            for i in range(first, first + n)]


def post_count(engine: Any) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Post)).one()


def test_a_batch_is_answered_only_after_the_child_committed_it(settings: Settings, engine: Any, capfd: Any) -> None:
    writer = WriterProcess(settings)
    writer.start()
    try:
        outcomes = asyncio.run(writer.store(batch(3)))
    finally:
        writer.stop()
    assert [o.reason for o in outcomes] == [Reason.POSTED] * 3
    assert post_count(engine) == 3  # visible from another connection: committed
    assert writer.process is None  # stop() waited for the child to leave
    # The child holds its per-message lines until the batch is answered; none is lost.
    logged = capfd.readouterr().err
    assert [f"user{i}@corp.example: posted" in logged for i in range(3)] == [True] * 3


def test_a_child_killed_mid_batch_defers_the_batch_and_a_retry_stores_each_message_once(
        settings: Settings, engine: Any) -> None:
    writer = WriterProcess(settings)
    writer.start()
    messages = batch(400)  # a few hundred milliseconds of work: time to kill the child inside it
    try:
        asyncio.run(writer.store(batch(1, first=1000)))  # the child is up and has imported everything
        child = writer.process
        threading.Timer(0.05, child.kill).start()
        started = time.monotonic()
        outcomes = asyncio.run(writer.store(messages))
        assert time.monotonic() - started < 30
        assert {o.reason for o in outcomes} == {Reason.INTERNAL_ERROR}
        assert {smtp_reply(o.reason) for o in outcomes} == {DEFERRED_ERROR}  # 451: the MTA retries
        retried = asyncio.run(writer.store(messages))  # what an MTA does after a 451
        assert writer.process.pid != child.pid  # a new child took over
    finally:
        writer.stop()
    assert {o.reason for o in retried} == {Reason.POSTED}
    assert post_count(engine) == 401  # the killed transaction left nothing behind; nothing doubled


def test_a_message_of_megabytes_reaches_the_child_whole(settings: Settings, engine: Any) -> None:
    """A batch beyond the socket's buffer (written from a thread, off the loop) arrives whole."""
    mail = make_mail(sender="user1@corp.example", body="the scans are attached")
    mail.add_attachment(bytes(range(256)) * 12288, maintype="application", subtype="octet-stream",
                        filename="scans.bin")  # 3 MiB, base64 on the wire
    raw = mail.as_bytes(policy=policy.SMTP)
    writer = WriterProcess(settings)
    writer.start()
    try:
        outcomes = asyncio.run(writer.store([(raw, Envelope(mail_from="user1@corp.example",
                                                            rcpt_tos=("status@corp.example",), peer="127.0.0.1"))]))
    finally:
        writer.stop()
    assert [o.reason for o in outcomes] == [Reason.POSTED]
    with Session(engine) as session:
        stored = session.exec(select(InboundLog.raw)).one()
    assert len(raw) > 4_000_000 and stored == raw
