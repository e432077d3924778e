"""Answers to the daily question that the plain token path missed (SPEC §7, #19): two
answers that arrive together, and an answer from a client that ignores Reply-To. Over
SMTP on loopback with the clock frozen, as in test_checkins.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import time_machine
from sqlmodel import Session, select

from statusmail.store.models import Checkin, Like, Mute
from tests.conftest import RunningGateway, make_mail
from tests.outbound.test_checkins import answer, asked, deliver, mails, posts, tags_of, text_of
from tests.outbound.test_checkins import env as env
from tests.outbound.test_checkins import env_with as env_with

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


# --- a client that ignores Reply-To -------------------------------------------------------


def client_reply(question: EmailMessage, body: str, sender: str, to: str) -> EmailMessage:
    """A reply as a client writes it that answers the question's From, not its Reply-To:
    the threading headers, "Re:", and the question quoted under an attribution line."""
    quoted = "\n".join("> " + line for line in text_of(question).splitlines())
    return make_mail(body=f"{body}\n\nOn Fri, 27 Nov 2026 at 16:00, Status <status@corp.example> wrote:\n{quoted}\n",
                     subject="Re: " + str(question["Subject"]), sender=sender, to=to,
                     In_Reply_To=str(question["Message-ID"]), References=str(question["Message-ID"]))


def reply_to_from(gateway: RunningGateway, question: EmailMessage, body: str, sender: str = KENJI) -> tuple[int, str]:
    """The reply sent where a client that ignores Reply-To sends it: the question's From."""
    [author] = question["From"].addresses
    address = sender.split("<")[-1].strip(">")
    return gateway.send(client_reply(question, body, sender, author.addr_spec), mail_from=address,
                        to=author.addr_spec)


def test_a_reply_to_the_questions_from_address_is_the_answer(env):
    question = asked(env)
    assert question["From"].addresses[0].addr_spec == "status@corp.example"
    with time_machine.travel(HALF_PAST):
        assert reply_to_from(env, question, "Shipped the billing export #billing") == (250, "2.0.0 OK: posted")
        # The second that day replies to it, whichever address it came to.
        assert answer(env, question, "Also fixed the flaky deploy", KENJI) == (250, "2.0.0 OK: reply posted")
        assert reply_to_from(env, question, "And reviewed Nora's change") == (250, "2.0.0 OK: reply posted")
        deliver(env)
    first, second, third = posts(env.engine)
    # The new text only: the quoted question, its attribution line and "Re:" are gone.
    assert first.body == "Shipped the billing export #billing" and first.parent_id is None
    assert sorted(tags_of(env.engine, first.id)) == ["billing", "checkin"]
    assert (second.parent_id, third.parent_id) == (first.id, first.id)
    assert third.body == "And reviewed Nora's change" and tags_of(env.engine, third.id) == ["checkin"]
    assert answer_row(env).answer_post_id == first.id
    assert mails(env, "command") == [] and mails(env, "notice") == []  # no "not understood"


def test_skip_and_brevity_apply_to_an_answer_sent_to_the_from_address(env):
    question = asked(env)
    with time_machine.travel(HALF_PAST):
        assert reply_to_from(env, question, "word " * 100) == (
            250, "2.0.0 OK: not posted, too long; the sender was told by mail")
        assert reply_to_from(env, question, "Skip.") == (250, "2.0.0 OK: check-in skipped, nothing posted")
        deliver(env)
    assert posts(env.engine) == [] and answer_row(env).skipped
    [notice] = mails(env, "notice")
    assert "the limit is 280" in notice["Subject"] and mails(env, "command") == []


def test_an_answer_sent_to_the_from_address_is_held_like_any_post(env_with):
    running = env_with('hold_patterns = ["(?i)secret"]')
    question = asked(running)
    with time_machine.travel(HALF_PAST):
        assert reply_to_from(running, question, "Worked on the secret merger") == (
            250, "2.0.0 OK: held for moderation")
    [post] = posts(running.engine)
    assert post.status == "held" and post.body == "Worked on the secret merger"
    assert tags_of(running.engine, post.id) == ["checkin"] and answer_row(running).answer_post_id == post.id


def test_another_users_reply_to_the_question_is_not_their_answer(env):
    question = asked(env)
    asked(env, "nora@corp.example")
    with time_machine.travel(HALF_PAST):
        # Nora replies to a copy of Kenji's question (forwarded to her): as before, a
        # reply to mail about no post from her is run as commands (SPEC §3).
        assert reply_to_from(env, question, "I did it all", "Nora <nora@corp.example>") == (
            250, "2.0.0 OK: commands answered by mail")
        deliver(env)
    assert posts(env.engine) == []
    with Session(env.engine) as session:
        assert [row.answer_post_id for row in session.exec(select(Checkin))] == [None, None]
    [commands] = mails(env, "command")
    assert "nora@corp.example" in commands["To"] and "not understood" in text_of(commands)


def test_checkin_off_sent_to_the_request_address_in_reply_to_the_question_is_a_command(env):
    """The question says where "checkin off" goes; a reply sent there stays a command."""
    question = asked(env)
    with time_machine.travel(HALF_PAST):
        mail = client_reply(question, "checkin off", KENJI, "status-request@corp.example")
        assert env.send(mail, mail_from="kenji@corp.example", to="status-request@corp.example") == (
            250, "2.0.0 OK: commands answered by mail")
        deliver(env)
    assert posts(env.engine) == [] and answer_row(env).answer_post_id is None
    [commands] = mails(env, "command")
    assert "check-ins turned off" in text_of(commands)
