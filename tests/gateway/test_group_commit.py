"""Group commit (gateway/batcher.py): many sessions share one commit, and 250 still means stored.

Batches are forced by queueing messages before the batcher starts, so no test depends
on timing: what is queued when it starts is one batch.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest
from sqlmodel import Session, col, func, select

from statusmail.config import Settings
from statusmail.errors import StoreUnavailable
from statusmail.gateway.batcher import Batcher
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import (
    DEFERRED_ERROR,
    DEFERRED_STORE,
    OK_DUPLICATE,
    OK_POSTED,
    Outcome,
    Reason,
    smtp_reply,
)
from statusmail.store.models import InboundLog, Post, User
from tests.conftest import RunningGateway, make_mail


def raw_of(**kwargs: str) -> bytes:
    return make_mail(**kwargs).as_bytes(policy=policy.SMTP)


def envelope(sender: str = "alice@corp.example") -> Envelope:
    return Envelope(mail_from=sender, rcpt_tos=("status@corp.example",), peer="127.0.0.1", source="smtp")


def counts(engine: Any) -> tuple[int, int, int]:
    """Posts, accepted log rows, refused log rows."""
    with Session(engine) as session:
        posts = session.exec(select(func.count()).select_from(Post)).one()
        accepted = session.exec(select(func.count()).select_from(InboundLog).where(InboundLog.outcome == "accepted")).one()
        refused = session.exec(select(func.count()).select_from(InboundLog).where(InboundLog.outcome == "refused")).one()
    return posts, accepted, refused


def run_one_batch(batcher: Batcher, items: list[tuple[bytes, Envelope]]) -> list[Outcome]:
    """Queue every message, then start the batcher: it finds them all waiting, one batch."""
    async def go() -> list[Outcome]:
        tasks = [asyncio.ensure_future(batcher.submit(raw, env)) for raw, env in items]
        await asyncio.sleep(0)  # each task runs up to its await: every job is queued
        batcher.start()
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            await batcher.close()
    return asyncio.run(go())


def test_a_refusal_in_a_batch_rolls_back_only_itself(settings: Settings, engine: Any) -> None:
    items = [(raw_of(sender=f"user{n}@corp.example", body=f"update {n}"), envelope(f"user{n}@corp.example"))
             for n in range(5)]
    items.insert(2, (raw_of(sender="mallory@evil.example"), envelope("mallory@evil.example")))
    batcher = Batcher(settings, engine)
    outcomes = run_one_batch(batcher, items)
    assert batcher.batches == 1
    assert [o.reason for o in outcomes] == [Reason.POSTED] * 2 + [Reason.DOMAIN_NOT_ALLOWED] + [Reason.POSTED] * 3
    assert counts(engine) == (5, 5, 1)
    with Session(engine) as session:
        refused = session.exec(select(InboundLog).where(InboundLog.outcome == "refused")).one()
    assert refused.reason == "domain_not_allowed" and refused.raw is not None


def test_a_sender_registered_then_rolled_back_is_registered_again_later_in_the_batch(
        settings: Settings, engine: Any) -> None:
    """The batch's users are loaded once (preload_users); a user whose registration a
    refusal rolled back must not be remembered as existing."""
    newcomer = "nina@corp.example"
    items = [(raw_of(sender=newcomer, body="", subject=""), envelope(newcomer)),  # registers, then 550 empty
             (raw_of(sender=newcomer, body="first real update"), envelope(newcomer)),
             (raw_of(body="alice as usual"), envelope())]
    outcomes = run_one_batch(Batcher(settings, engine), items)
    assert [o.reason for o in outcomes] == [Reason.EMPTY, Reason.POSTED, Reason.POSTED]
    with Session(engine) as session:
        authors = session.exec(select(User.email).join(Post, col(Post.author_id) == User.id).order_by(Post.id)).all()
    assert authors == [newcomer, "alice@corp.example"]


def test_only_a_message_that_wrote_mail_wakes_the_outbox_worker(settings: Settings, engine: Any) -> None:
    """A plain post is news for the digests and sends nothing; waking the worker for it
    would cost a write transaction per batch for nothing (Outcome.queued)."""
    items = [(raw_of(sender="bob@corp.example", body="plain update"), envelope("bob@corp.example")),
             (raw_of(body="thanks @bob for the export"), envelope())]
    outcomes = run_one_batch(Batcher(settings, engine), items)
    assert [(o.reason, o.queued) for o in outcomes] == [(Reason.POSTED, False), (Reason.POSTED, True)]


def test_the_same_message_id_twice_in_one_batch_is_one_post(settings: Settings, engine: Any) -> None:
    raw = raw_of(body="only once")
    batcher = Batcher(settings, engine)
    outcomes = run_one_batch(batcher, [(raw, envelope()), (raw_of(body="another"), envelope()), (raw, envelope())])
    assert [o.reason for o in outcomes] == [Reason.POSTED, Reason.POSTED, Reason.DUPLICATE]
    assert counts(engine) == (2, 3, 0)  # the duplicate has a log row of its own (SPEC §3)


def test_a_failed_commit_defers_every_message_of_the_batch_and_stores_none(settings: Settings, engine: Any) -> None:
    seen_before_commit: list[bool] = []

    def fail(session: Session) -> None:
        seen_before_commit.append(True)
        raise StoreUnavailable("disk I/O error (injected)")

    batcher = Batcher(settings, engine)
    batcher.before_commit = fail
    items = [(raw_of(sender=f"user{n}@corp.example"), envelope(f"user{n}@corp.example")) for n in range(4)]
    items.append((raw_of(sender="mallory@evil.example"), envelope("mallory@evil.example")))
    outcomes = run_one_batch(batcher, items)
    assert seen_before_commit == [True]
    assert {smtp_reply(o.reason) for o in outcomes} == {DEFERRED_STORE}
    assert counts(engine) == (0, 0, 0)


def test_no_session_is_answered_before_the_commit_returns(settings: Settings, engine: Any) -> None:
    futures: list[asyncio.Task[Outcome]] = []
    answered_early: list[bool] = []

    def look(session: Session) -> None:
        answered_early.extend(task.done() for task in futures)

    batcher = Batcher(settings, engine)
    batcher.before_commit = look

    async def go() -> None:
        futures.extend(asyncio.ensure_future(batcher.submit(raw_of(sender=f"u{n}@corp.example"),
                                                            envelope(f"u{n}@corp.example"))) for n in range(6))
        await asyncio.sleep(0)
        batcher.start()
        try:
            await asyncio.gather(*futures)
        finally:
            await batcher.close()
    asyncio.run(go())
    assert answered_early == [False] * 6
    assert counts(engine) == (6, 6, 0)


def send(port: int, raw: bytes, mail_from: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        client.mail(mail_from)
        client.rcpt("status@corp.example")
        code, reply = client.data(raw)
        return code, reply.decode()


@pytest.fixture
def served(settings: Settings, engine: Any) -> Iterator[RunningGateway]:
    """The gateway as serve runs it: the pipeline in its writer process."""
    running = RunningGateway(settings, engine, writer_process=True)
    yield running
    running.stop()


def test_fifty_concurrent_sessions_store_every_post_exactly_once(served: RunningGateway) -> None:
    gateway = served
    messages: list[tuple[bytes, str]] = []
    for n in range(40):
        messages.append((raw_of(sender=f"user{n % 13}@corp.example", body=f"update number {n}"), f"user{n % 13}@corp.example"))
    for n in range(5):  # each sent twice: the second copy is answered 250 and changes nothing
        raw = raw_of(sender=f"twice{n}@corp.example", body=f"sent twice {n}")
        messages += [(raw, f"twice{n}@corp.example")] * 2
    for n in range(5):
        messages.append((raw_of(sender=f"m{n}@evil.example", body=f"spam {n}"), f"m{n}@evil.example"))
    assert len(messages) == 55
    replies: list[tuple[int, str]] = [(0, "")] * len(messages)
    start = threading.Barrier(len(messages))

    def client(i: int) -> None:
        start.wait()
        replies[i] = send(gateway.port, *messages[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    codes = [code for code, _ in replies]
    assert codes.count(250) == 50 and codes.count(550) == 5
    texts = sorted(text for code, text in replies if code == 250)
    assert texts.count(OK_POSTED.removeprefix("250 ")) == 45
    assert texts.count(OK_DUPLICATE.removeprefix("250 ")) == 5
    assert counts(gateway.engine) == (45, 50, 5)  # each duplicate logged as accepted/duplicate


def test_a_failed_commit_answers_451_over_smtp_and_stores_nothing(settings: Settings, engine: Any) -> None:
    def fail(session: Session) -> None:
        raise StoreUnavailable("disk I/O error (injected)")

    gateway = RunningGateway(settings, engine, writer_process=False)  # the fault is injected in this process
    try:
        gateway.gateway.batcher.before_commit = fail
        code, reply = gateway.send(make_mail())
        assert (code, f"{code} {reply}") == (451, DEFERRED_STORE)
        gateway.gateway.batcher.before_commit = None
        code, _ = gateway.send(make_mail())
        assert code == 250
        assert counts(gateway.engine) == (1, 1, 0)
    finally:
        gateway.stop()


def test_a_batch_takes_no_more_bytes_than_its_cap(settings: Settings, engine: Any) -> None:
    """64 messages of smtp.max_message_bytes would be 640 MiB in each process at once."""
    items = [(raw_of(sender=f"user{n}@corp.example", body=f"update {n}"), envelope(f"user{n}@corp.example"))
             for n in range(3)]
    cap = len(items[0][0]) + len(items[1][0])  # room for the first two, not the third
    batcher = Batcher(settings, engine, max_batch_bytes=cap)
    outcomes = run_one_batch(batcher, items)
    assert [o.reason for o in outcomes] == [Reason.POSTED] * 3
    assert batcher.batches == 2
    assert counts(engine) == (3, 3, 0)


def test_a_message_that_fails_to_record_defers_only_itself(settings: Settings, engine: Any) -> None:
    """A fault in recording one message (not the database being down) is retried message
    by message: the others of its batch are stored and answered 250, it alone gets 451."""
    def fail_on_poison(session: Session) -> None:
        if session.exec(select(Post.id).where(col(Post.body).contains("poison"))).first() is not None:
            raise RuntimeError("a recording fault that only this message triggers (injected)")

    batcher = Batcher(settings, engine)
    batcher.before_commit = fail_on_poison
    items = [(raw_of(sender=f"user{n}@corp.example", body=f"update {n}"), envelope(f"user{n}@corp.example"))
             for n in range(3)]
    items.insert(1, (raw_of(sender="mallory@corp.example", body="poison pill"), envelope("mallory@corp.example")))
    outcomes = run_one_batch(batcher, items)
    assert [smtp_reply(o.reason) for o in outcomes] == [OK_POSTED, DEFERRED_ERROR, OK_POSTED, OK_POSTED]
    with Session(engine) as session:
        assert sorted(session.exec(select(Post.body))) == ["Billing export done\n\nupdate 0",
                                                           "Billing export done\n\nupdate 1",
                                                           "Billing export done\n\nupdate 2"]
