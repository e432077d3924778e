"""The outbox against a real SMTP relay that fails on demand: an outage delays mail,
never loses or doubles it (SPEC §4, DESIGN decision 4)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import SMTP
from sqlmodel import Session, select

from statusmail.outbound import outbox
from statusmail.outbound.outbox import LANES, MAX_ATTEMPTS, OutboxWorker, SentMarks, drain, enqueue, retry
from statusmail.outbound.transport import SmtpTransport
from statusmail.store.bounces import HARD_BOUNCES_TO_SUSPEND
from statusmail.store.db import transaction
from statusmail.store.models import Bounce, Outbox, User


class CaptureRelay:
    """An aiosmtpd relay on loopback whose behaviour a test sets: accept, defer, refuse, drop."""

    def __init__(self) -> None:
        self.mode = "accept"
        self.refuse_rcpt: dict[str, str] = {}  # address -> the reply to its RCPT
        self.refuse_mail = ""  # the reply to every MAIL, when set
        self.slow = b""  # a message containing this is answered after a pause
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_MAIL(self, server, session, envelope, address, options) -> str:  # type: ignore[no-untyped-def]
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:  # type: ignore[no-untyped-def]
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        if self.mode == "defer":
            return "451 4.3.0 relay busy"
        if self.mode == "refuse":
            return "550 5.1.1 no such user"
        if self.mode == "drop":
            server.transport.close()  # the connection dies mid-DATA, before any reply
            return "250 never seen"
        if self.slow and self.slow in envelope.original_content:
            await asyncio.sleep(0.3)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"


@pytest.fixture
def relay():
    loop = asyncio.new_event_loop()
    handler = CaptureRelay()
    server = loop.run_until_complete(loop.create_server(lambda: SMTP(handler, decode_data=False), "127.0.0.1", 0))
    handler.port = server.sockets[0].getsockname()[1]
    handler.loop = loop
    yield handler
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def queue_mails(engine, settings, count: int) -> None:
    with transaction(engine) as session:
        for i in range(count):
            msg = EmailMessage()
            msg["Subject"] = f"mail {i}"
            msg["Message-ID"] = f"<m{i}@corp.example>"
            msg.set_content("hello")
            enqueue(session, msg, settings, kind="notification", to=f"user{i}@corp.example")


def rows(engine) -> list[Outbox]:
    with Session(engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)))


def make_due(engine) -> None:
    with transaction(engine) as session:
        for row in session.exec(select(Outbox).where(Outbox.status == "queued")):
            row.next_attempt_at = row.created_at
            session.add(row)


def test_a_relay_outage_delays_mail_and_nothing_is_lost_or_sent_twice(relay, engine, settings):
    queue_mails(engine, settings, 3)
    transport = SmtpTransport("127.0.0.1", relay.port)
    run = relay.loop.run_until_complete
    for mode in ("defer", "drop"):
        relay.mode = mode
        assert run(drain(engine, transport)) == 0
        assert all(r.status == "queued" and r.last_error for r in rows(engine))
        # The next attempt waits (backoff with jitter), so nothing is due right now.
        assert run(drain(engine, transport)) == 0
        make_due(engine)
    relay.mode = "accept"
    assert run(drain(engine, transport)) == 3
    run(transport.close())
    assert [r.status for r in rows(engine)] == ["sent"] * 3
    assert [r.attempts for r in rows(engine)] == [3] * 3
    assert sorted(rcpts[0] for _, rcpts, _ in relay.received) == ["user0@corp.example", "user1@corp.example",
                                                                    "user2@corp.example"]
    assert all(mail_from.startswith("status+bounce-") for mail_from, _, _ in relay.received)
    assert run(drain(engine, transport)) == 0  # sent is sent once
    assert len(relay.received) == 3


def test_a_permanent_refusal_marks_the_mail_failed_and_retry_resends_it(relay, engine, settings):
    queue_mails(engine, settings, 1)
    transport = SmtpTransport("127.0.0.1", relay.port)
    run = relay.loop.run_until_complete
    relay.mode = "refuse"
    run(drain(engine, transport))
    [row] = rows(engine)
    assert row.status == "failed" and "550" in row.last_error
    with transaction(engine) as session:
        assert retry(session) == 1
    relay.mode = "accept"
    assert run(drain(engine, transport)) == 1
    run(transport.close())
    assert rows(engine)[0].status == "sent" and len(relay.received) == 1


def test_after_the_maximum_number_of_attempts_the_mail_is_failed(relay, engine, settings):
    queue_mails(engine, settings, 1)
    transport = SmtpTransport("127.0.0.1", relay.port)
    relay.mode = "defer"
    for _ in range(MAX_ATTEMPTS):
        make_due(engine)
        relay.loop.run_until_complete(drain(engine, transport))
    relay.loop.run_until_complete(transport.close())
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)


def test_the_smtp_transport_reuses_a_connection_per_lane_across_drains(relay, engine, settings):
    connections = []
    original = SMTP.connection_made

    def count(self, transport):  # type: ignore[no-untyped-def]
        connections.append(transport)
        return original(self, transport)

    SMTP.connection_made = count  # type: ignore[method-assign]
    try:
        transport = SmtpTransport("127.0.0.1", relay.port)
        for _ in range(2):
            queue_mails(engine, settings, 12)
            assert relay.loop.run_until_complete(drain(engine, transport)) == 12
        relay.loop.run_until_complete(transport.close())
    finally:
        SMTP.connection_made = original  # type: ignore[method-assign]
    assert len(relay.received) == 24
    assert 1 < len(connections) <= LANES  # sent side by side, and the second drain opened none


def test_one_recipients_mail_reaches_the_relay_in_the_order_it_was_queued(relay, engine, settings):
    with transaction(engine) as session:
        for i in range(30):
            msg = EmailMessage()
            msg["Subject"] = f"mail {i}"
            msg.set_content("hello")
            enqueue(session, msg, settings, kind="notification", to=f"user{i % 3}@corp.example")
    relay.slow = b"Subject: mail 0\r\n"  # other lanes run ahead meanwhile; user0's next mail must not
    transport = SmtpTransport("127.0.0.1", relay.port)
    assert relay.loop.run_until_complete(drain(engine, transport)) == 30
    relay.loop.run_until_complete(transport.close())
    for user in range(3):
        subjects = [int(raw.split(b"Subject: mail ")[1].split(b"\r\n")[0]) for _, rcpts, raw in relay.received
                    if rcpts == [f"user{user}@corp.example"]]
        assert subjects == list(range(user, 30, 3))


def test_the_worker_soon_finds_mail_another_process_queued_and_marks_it_sent(relay, engine, settings):
    """``digest send`` beside ``serve`` cannot poke serve's worker: mail it queues is
    found by polling, which looks again soon after mail was sent (here: long before the
    60 s idle interval), and every mail sent is marked sent by the time the worker stops."""
    worker = OutboxWorker(engine, SmtpTransport("127.0.0.1", relay.port), idle_seconds=60)

    async def received(count: int) -> None:
        for _ in range(100):
            if len(relay.received) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(relay.received)} of {count} mails reached the relay")

    async def scenario() -> None:
        running = asyncio.create_task(worker.run())
        queue_mails(engine, settings, 3)  # no poke, as from another process
        await received(3)
        await asyncio.sleep(0.3)  # the worker has found nothing new meanwhile
        queue_mails(engine, settings, 2)
        await received(5)
        worker.stop()
        await running

    relay.loop.run_until_complete(scenario())
    assert [r.status for r in rows(engine)] == ["sent"] * 5
    assert len(relay.received) == 5


def test_mail_sent_slowly_is_marked_sent_before_a_full_batch_of_marks_gathers(engine, settings, monkeypatch):
    """Marks are committed 25 at a time, or when the oldest has waited MARK_WITHIN: a
    row must not outlive its lease unmarked while a slow relay trickles mail out."""
    monkeypatch.setattr(outbox, "MARK_WITHIN", 0.0)
    queue_mails(engine, settings, 1)
    [row] = rows(engine)

    async def one_mark() -> None:
        marks = SentMarks(engine)
        marks.add(row.id)  # type: ignore[arg-type]
        assert marks.commit is not None, "one row, yet its mark was not committed"
        await marks.commit

    asyncio.run(one_mark())
    assert rows(engine)[0].status == "sent"


def test_a_locked_database_after_sending_is_waited_out_not_a_second_send(relay, engine, settings):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite locking")
    import sqlite3
    import threading

    queue_mails(engine, settings, 1)
    transport = SmtpTransport("127.0.0.1", relay.port)
    path = engine.url.database
    blocker = sqlite3.connect(path, timeout=10, check_same_thread=False)

    class LockAfterSend:
        """The relay takes the mail; then, before it is marked sent, the database is locked for a while."""

        async def send(self, envelope_from, recipient, raw):  # type: ignore[no-untyped-def]
            await transport.send(envelope_from, recipient, raw)
            blocker.execute("BEGIN EXCLUSIVE")
            threading.Timer(6.0, blocker.rollback).start()  # longer than SQLite's 5 s busy timeout

        async def close(self):  # type: ignore[no-untyped-def]
            await transport.close()

    try:
        assert relay.loop.run_until_complete(drain(engine, LockAfterSend())) == 1
    finally:
        relay.loop.run_until_complete(transport.close())
    blocker.close()
    assert [r.status for r in rows(engine)] == ["sent"]
    assert relay.loop.run_until_complete(drain(engine, SmtpTransport("127.0.0.1", relay.port))) == 0
    assert len(relay.received) == 1


def queue_for(engine, settings, to: str, count: int) -> None:
    with transaction(engine) as session:
        for i in range(count):
            msg = EmailMessage()
            msg["Subject"] = f"mail {i} for {to}"
            msg["Message-ID"] = f"<{to}.{i}@corp.example>"
            msg.set_content("hello")
            enqueue(session, msg, settings, kind="notification", to=to)


def user(engine, email: str) -> User:
    with Session(engine) as session:
        return session.exec(select(User).where(User.email == email)).one()


def test_a_relay_refusing_a_departed_recipient_scores_each_refusal_as_a_hard_bounce_until_suspended(
        relay, engine, settings):
    """What Postfix and Exchange answer for a departed employee, at RCPT (SPEC §5)."""
    with transaction(engine) as session:
        session.add(User(email="dave@corp.example", handle="dave"))
        session.add(User(email="erin@corp.example", handle="erin"))
    relay.refuse_rcpt["dave@corp.example"] = (
        "550 5.1.1 <dave@corp.example>: Recipient address rejected: User unknown in local recipient table")
    queue_for(engine, settings, "dave@corp.example", HARD_BOUNCES_TO_SUSPEND)
    queue_for(engine, settings, "erin@corp.example", 1)
    transport = SmtpTransport("127.0.0.1", relay.port)
    assert relay.loop.run_until_complete(drain(engine, transport)) == 1  # erin's
    relay.loop.run_until_complete(transport.close())
    daves = [row for row in rows(engine) if row.to_addr == "dave@corp.example"]
    assert [row.status for row in daves] == ["failed"] * HARD_BOUNCES_TO_SUSPEND
    assert all("User unknown in local recipient table" in row.last_error for row in daves)
    with Session(engine) as session:
        bounces = list(session.exec(select(Bounce).order_by(Bounce.id)))
    assert [(b.recipient, b.status, b.hard) for b in bounces] == [("dave@corp.example", "5.1.1", True)] * 3
    assert {b.outbox_id for b in bounces} == {row.id for row in daves}
    dave, erin = user(engine, "dave@corp.example"), user(engine, "erin@corp.example")
    assert (dave.hard_bounces, dave.mail_suspended) == (HARD_BOUNCES_TO_SUSPEND, True)
    assert (erin.hard_bounces, erin.mail_suspended) == (0, False)


def test_a_5xx_to_data_is_a_hard_bounce_too_and_a_refusal_without_enhanced_code_is_5_0_0(relay, engine, settings):
    with transaction(engine) as session:
        session.add(User(email="dave@corp.example", handle="dave"))
    relay.mode = "refuse"  # 550 5.1.1 no such user, after DATA
    queue_for(engine, settings, "dave@corp.example", 1)
    transport = SmtpTransport("127.0.0.1", relay.port)
    relay.loop.run_until_complete(drain(engine, transport))
    relay.mode = "accept"
    relay.refuse_rcpt["dave@corp.example"] = "553 mailbox name not allowed"
    queue_for(engine, settings, "dave@corp.example", 1)
    make_due(engine)
    relay.loop.run_until_complete(drain(engine, transport))
    relay.loop.run_until_complete(transport.close())
    with Session(engine) as session:
        assert [(b.status, b.hard) for b in session.exec(select(Bounce).order_by(Bounce.id))] == [
            ("5.1.1", True), ("5.0.0", True)]
    assert user(engine, "dave@corp.example").hard_bounces == 2


def test_a_relay_refusing_our_sender_fails_the_mail_without_blaming_the_recipient(relay, engine, settings):
    """A 5xx to MAIL FROM (relay misconfigured, authentication required) is about us."""
    with transaction(engine) as session:
        session.add(User(email="dave@corp.example", handle="dave"))
    relay.refuse_mail = "530 5.7.0 Authentication required"
    queue_for(engine, settings, "dave@corp.example", 1)
    transport = SmtpTransport("127.0.0.1", relay.port)
    relay.loop.run_until_complete(drain(engine, transport))
    relay.loop.run_until_complete(transport.close())
    [row] = rows(engine)
    assert row.status == "failed" and "530" in row.last_error
    with Session(engine) as session:
        assert list(session.exec(select(Bounce))) == []
    assert user(engine, "dave@corp.example").hard_bounces == 0
