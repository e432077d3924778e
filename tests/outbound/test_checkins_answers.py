"""Answers to the daily question that the plain token path missed (SPEC §7, #19): two
answers that arrive together. Over SMTP on loopback with the clock frozen, as in
test_checkins.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import time_machine
from sqlmodel import Session, select

from statusmail.store.models import Checkin, Like, Mute
from tests.conftest import RunningGateway
from tests.outbound.test_checkins import answer, asked, deliver, mails, posts, tags_of, text_of
from tests.outbound.test_checkins import env as env

KENJI = "Kenji <kenji@corp.example>"
HALF_PAST = datetime(2026, 11, 27, 7, 30, tzinfo=UTC)  # 16:30 in Tokyo, the question's day


def in_one_batch(gateway: RunningGateway, sends: list[Callable[[], tuple[int, str]]]) -> list[tuple[int, str]]:
    """Run each SMTP session in its own thread while serve's batcher is held, each queued
    before the next starts; then let the batcher go: what waits is one batch, in this
    order (as concurrent sessions are grouped, gateway/batcher.py)."""
    batcher = gateway.gateway.batcher

    async def hold() -> None:
        while batcher.draining is not None:
            await batcher.draining
        batcher.started = False  # submit() queues without draining until start()

    async def queued() -> int:
        return len(batcher.waiting)

    async def release() -> None:
        batcher.start()

    gateway.call(hold())
    batches = batcher.batches
    replies: list[tuple[int, str]] = [(0, "")] * len(sends)

    def run(i: int) -> None:
        replies[i] = sends[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sends))]
    for count, thread in enumerate(threads, start=1):
        thread.start()
        for _ in range(1200):  # until this session's DATA waits in the batcher
            if gateway.call(queued()) == count:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the session never reached the batcher")
    gateway.call(release())
    for thread in threads:
        thread.join(60)
    assert batcher.batches == batches + 1
    return replies


def answer_row(gateway: RunningGateway) -> Checkin:
    with Session(gateway.engine) as session:
        [row] = session.exec(select(Checkin))
    return row


# --- two answers in one batch -------------------------------------------------------------


def test_two_answers_in_one_batch_are_a_tagged_root_and_a_reply_to_it(env):
    question = asked(env)
    with time_machine.travel(HALF_PAST):
        replies = in_one_batch(env, [lambda: answer(env, question, "Shipped the billing export", KENJI),
                                     lambda: answer(env, question, "Also fixed the flaky deploy", KENJI)])
    assert replies == [(250, "2.0.0 OK: posted"), (250, "2.0.0 OK: reply posted")]
    first, second = posts(env.engine)
    assert first.body == "Shipped the billing export" and first.parent_id is None and first.thread_id == first.id
    assert second.body == "Also fixed the flaky deploy"
    assert second.parent_id == first.id and second.thread_id == first.id
    assert tags_of(env.engine, first.id) == ["checkin"] and tags_of(env.engine, second.id) == ["checkin"]
    assert answer_row(env).answer_post_id == first.id


def test_a_third_answer_in_the_same_batch_replies_to_the_first_too(env):
    question = asked(env)
    with time_machine.travel(HALF_PAST):
        replies = in_one_batch(env, [lambda n=n: answer(env, question, f"Update number {n}", KENJI)
                                     for n in range(3)])
    assert replies == [(250, "2.0.0 OK: posted")] + [(250, "2.0.0 OK: reply posted")] * 2
    first, *later = posts(env.engine)
    assert first.parent_id is None and {(p.parent_id, p.thread_id) for p in later} == {(first.id, first.id)}
    assert answer_row(env).answer_post_id == first.id


def test_a_keyword_after_an_answer_in_the_same_batch_acts_on_that_answer(env):
    """As when the first answer is stored: "+1" likes it, "mute" mutes its thread."""
    question = asked(env)
    with time_machine.travel(HALF_PAST):
        replies = in_one_batch(env, [lambda: answer(env, question, "Shipped the billing export", KENJI),
                                     lambda: answer(env, question, "+1", KENJI),
                                     lambda: answer(env, question, "mute", KENJI)])
        deliver(env)
    assert replies == [(250, "2.0.0 OK: posted"), (250, "2.0.0 OK: like recorded, not posted"),
                       (250, "2.0.0 OK: done, not posted; confirmed by mail")]
    [first] = posts(env.engine)
    with Session(env.engine) as session:
        assert [like.post_id for like in session.exec(select(Like))] == [first.id]
        assert [mute.thread_id for mute in session.exec(select(Mute))] == [first.id]
    [confirmation] = mails(env, "notice")
    assert 'Muted: no more mail about "Shipped the billing export"' in text_of(confirmation)
