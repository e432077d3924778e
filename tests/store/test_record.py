"""record_batch: the one function that writes what the pipeline decided (store/record.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlmodel import Session, select

from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Reason
from statusmail.inbound.pipeline import commit_batch
from statusmail.store.db import begin_immediate, insert_values, transaction
from statusmail.store.models import InboundLog, Post, User
from statusmail.store.record import Decision, NewPost, record_batch
from statusmail.store.users import new_user
from tests.conftest import PG_URL, make_mail


def raw(body: str, sender: str = "alice@corp.example", message_id: str = "") -> bytes:
    mail = make_mail(body=body, subject="status", sender=sender)
    if message_id:
        mail.replace_header("Message-ID", message_id)
    return mail.as_bytes()


def envelope(sender: str = "alice@corp.example") -> Envelope:
    return Envelope(mail_from=sender, rcpt_tos=("status@corp.example",), peer="127.0.0.1")


def test_a_root_post_is_its_own_thread_and_its_log_row_names_it(settings: Any, engine: Any) -> None:
    [outcome] = commit_batch(settings, engine, [(raw("first update"), envelope())])
    with Session(engine) as session:
        post = session.get(Post, outcome.post_id)
        entry = session.get(InboundLog, outcome.log_id)
    assert post is not None and entry is not None
    assert (post.thread_id, post.parent_id, post.body) == (post.id, None, "first update")
    assert (entry.outcome, entry.reason, entry.post_id) == ("accepted", "posted", post.id)


def test_a_refused_message_writes_only_its_log_row(settings: Any, engine: Any) -> None:
    """A new sender whose message is refused after identify_user is not registered."""
    long_ago = raw("x", sender="newbie@corp.example")
    outcomes = commit_batch(settings, engine, [(long_ago, Envelope(mail_from="newbie@elsewhere.example",
                                                                   rcpt_tos=("status@corp.example",)))])
    assert [o.reason for o in outcomes] == [Reason.NOT_AUTHENTICATED]
    with Session(engine) as session:
        assert session.exec(select(User)).all() == []
        [entry] = session.exec(select(InboundLog)).all()
    assert entry.outcome == "refused" and entry.raw == long_ago and entry.dedupe_key is None


def test_two_messages_of_a_new_sender_in_one_batch_register_them_once(settings: Any, engine: Any) -> None:
    jobs = [(raw("one", sender="carol@corp.example"), envelope("carol@corp.example")),
            (raw("two", sender="carol@corp.example"), envelope("carol@corp.example"))]
    outcomes = commit_batch(settings, engine, jobs)
    assert [o.reason for o in outcomes] == [Reason.POSTED, Reason.POSTED]
    with Session(engine) as session:
        [carol] = session.exec(select(User)).all()
        authors = {p.author_id for p in session.exec(select(Post))}
    assert carol.handle == "carol" and authors == {carol.id}


def test_a_message_another_process_stored_first_is_a_duplicate_and_the_batch_goes_on(
        settings: Any, engine: Any) -> None:
    """The log row's ON CONFLICT decides: the loser writes no post, only a duplicate's row."""
    key = "mid:raced"
    with transaction(engine) as session:
        begin_immediate(session)
        alice = new_user(session, "alice@corp.example")
        raced = Decision(log={"outcome": "accepted", "reason": "posted", "dedupe_key": key}, new_user=alice,
                         post=NewPost(author=alice, body="raced", trimmed="", created_at=alice.created_at,
                                      parent=None, message_id="<raced@corp.example>", thread_index=""))
        other = Decision(log={"outcome": "accepted", "reason": "posted", "dedupe_key": "mid:other"},
                         post=NewPost(author=alice, body="other", trimmed="", created_at=alice.created_at,
                                      parent=None, message_id="<other@corp.example>", thread_index=""))
        # What another process committed between this batch's dedupe check and its INSERT:
        insert_values(session, InboundLog, outcome="accepted", reason="posted", dedupe_key=key)
        record_batch(session, [raced, other])
    assert raced.duplicate and not other.duplicate
    with Session(engine) as session:
        assert [p.body for p in session.exec(select(Post))] == ["other"]
        rows = session.exec(select(InboundLog).order_by(InboundLog.id)).all()
    assert [(r.reason, r.dedupe_key) for r in rows] == [("posted", key), ("posted", "mid:other"),
                                                        ("duplicate", None)]
    assert rows[2].id == raced.log_id


def new_post(author: User, body: str, parent: Post | NewPost | None = None) -> NewPost:
    return NewPost(author=author, body=body, trimmed="", created_at=author.created_at, parent=parent,
                   message_id=f"<{body.replace(' ', '-')}@corp.example>", thread_index="")


def test_a_reply_to_a_post_of_the_same_batch_names_it_as_parent_and_thread(settings: Any, engine: Any) -> None:
    """A second check-in answer decided with the first (inbound/checkins.py) replies to it."""
    with transaction(engine) as session:
        begin_immediate(session)
        alice = new_user(session, "alice@corp.example")
        root = new_post(alice, "the answer")
        reply = new_post(alice, "a second answer", parent=root)
        deeper = new_post(alice, "a third", parent=reply)
        record_batch(session, [Decision(log={"outcome": "accepted", "reason": "posted"}, new_user=alice, post=root),
                               Decision(log={"outcome": "accepted", "reason": "replied"}, post=reply),
                               Decision(log={"outcome": "accepted", "reason": "replied"}, post=deeper)])
    with Session(engine) as session:
        stored = {p.body: (p.id, p.parent_id, p.thread_id) for p in session.exec(select(Post))}
    assert stored == {"the answer": (root.id, None, root.id), "a second answer": (reply.id, root.id, root.id),
                      "a third": (deeper.id, reply.id, root.id)}


def test_a_reply_to_a_post_of_the_batch_that_lost_its_race_begins_its_own_thread(settings: Any, engine: Any) -> None:
    key = "mid:raced"
    with transaction(engine) as session:
        begin_immediate(session)
        alice = new_user(session, "alice@corp.example")
        raced = new_post(alice, "raced")
        reply = new_post(alice, "its reply", parent=raced)
        insert_values(session, InboundLog, outcome="accepted", reason="posted", dedupe_key=key)  # another process
        record_batch(session, [Decision(log={"outcome": "accepted", "reason": "posted", "dedupe_key": key},
                                        new_user=alice, post=raced),
                               Decision(log={"outcome": "accepted", "reason": "replied"}, post=reply)])
    with Session(engine) as session:
        [stored] = session.exec(select(Post))
    assert (stored.body, stored.parent_id, stored.thread_id) == ("its reply", None, stored.id)


@pytest.mark.skipif(not PG_URL, reason="STATUSMAIL_TEST_DATABASE_URL is not set (no PostgreSQL server)")
def test_two_processes_racing_on_one_message_id_store_one_post(settings: Any, engine: Any) -> None:
    """Two writers on PostgreSQL decide the same message at once; one post, two 250s."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a real race needs two writers at once: PostgreSQL")
    same = raw("only once", message_id="<race@corp.example>")
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def hold(session: Session) -> None:
        # The first to get here waits, uncommitted, while the other decides "not seen"
        # and then blocks on the first one's dedupe key; the wait ends by timing out.
        try:
            barrier.wait(2)
        except threading.BrokenBarrierError:
            pass

    def writer() -> None:
        results.extend(commit_batch(settings, engine, [(same, envelope())], before_commit=hold))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o.reason for o in results) == sorted([Reason.POSTED, Reason.DUPLICATE])
    with Session(engine) as session:
        assert [p.body for p in session.exec(select(Post))] == ["only once"]
