"""Personalized digests: who gets one when, what it holds, and that a period is sent once."""

from __future__ import annotations

import asyncio
import gc
import re
import sys
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

from sqlmodel import Session, col, select

from statusmail.outbound.digest import DigestScheduler, preview, send_digests
from statusmail.outbound.digest_schedule import period_key
from statusmail.store.models import Digest, Follow, Mention, Mute, Outbox, OutboxBody, Post, PostTag, ReplyToken, User
from tests.conftest import make_mail, outbox_messages

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def add_user(engine: Any, email: str, name: str = "", **fields: Any) -> int:
    with Session(engine) as session:
        user = User(email=email, name=name, handle=email.split("@")[0], **fields)
        session.add(user)
        session.commit()
        return user.id  # type: ignore[return-value]


def add_post(engine: Any, author: int, body: str, at: datetime, *, parent: int | None = None,
             status: str = "visible", tags: tuple[str, ...] = (), mentions: tuple[int, ...] = ()) -> int:
    with Session(engine) as session:
        thread_id = session.get(Post, parent).thread_id if parent else None  # type: ignore[union-attr]
        post = Post(author_id=author, body=body, created_at=at, parent_id=parent, thread_id=thread_id, status=status,
                    message_id=f"<{body[:20].replace(' ', '.')}.{at.timestamp()}@corp.example>")
        session.add(post)
        session.flush()
        if parent is None:
            post.thread_id = post.id
        session.add_all([PostTag(post_id=post.id, tag=t) for t in tags])  # type: ignore[arg-type]
        session.add_all([Mention(post_id=post.id, user_id=u) for u in mentions])  # type: ignore[arg-type]
        session.commit()
        return post.id  # type: ignore[return-value]


def add_follow(engine: Any, user: int, target: int | None = None, tag: str = "", active: bool = True) -> None:
    with Session(engine) as session:
        session.add(Follow(user_id=user, target_user_id=target, tag=tag, active=active))
        session.commit()


def queued_digests(engine: Any) -> list[Outbox]:
    with Session(engine) as session:
        return list(session.exec(select(Outbox).where(Outbox.kind == "digest").order_by(col(Outbox.id))))


def digest_rows(engine: Any) -> list[Digest]:
    with Session(engine) as session:
        return list(session.exec(select(Digest).order_by(col(Digest.id))))


def text_of(settings: Any, engine: Any, user_id: int, now: datetime = NOW) -> str:
    message = preview(settings, engine, user_id, now=now).message
    return message.get_body(("plain",)).get_content() if message else ""  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def two_people(engine: Any) -> tuple[int, int]:
    """Lea (a leader) follows Carol."""
    lea = add_user(engine, "lea@corp.example", "Lea Leader")
    carol = add_user(engine, "carol@corp.example", "Carol Coder")
    add_follow(engine, lea, target=carol)
    return lea, carol


# --- when ---------------------------------------------------------------------------------


def test_readers_in_tokyo_and_new_york_get_their_digest_at_their_own_eight_oclock(settings, engine):
    tokyo = add_user(engine, "kenji@corp.example", timezone="Asia/Tokyo")
    york = add_user(engine, "nora@corp.example", timezone="America/New_York")
    carol = add_user(engine, "carol@corp.example", digest="off")
    with Session(engine) as session:  # both had yesterday's digest at their 08:00
        session.add(Digest(user_id=tokyo, period="2026-11-25", covered_until=datetime(2026, 11, 24, 23, tzinfo=UTC)))
        session.add(Digest(user_id=york, period="2026-11-25", covered_until=datetime(2026, 11, 25, 13, tzinfo=UTC)))
        session.commit()
    for reader in (tokyo, york):
        add_follow(engine, reader, target=carol)
    add_post(engine, carol, "Quarterly numbers are in", datetime(2026, 11, 25, 20, 0, tzinfo=UTC))
    clock = [datetime(2026, 11, 25, 22, 59, tzinfo=UTC)]
    pokes: list[int] = []
    scheduler = DigestScheduler(settings, engine, on_queued=lambda: pokes.append(1), now=lambda: clock[0])

    def tick_at(moment: datetime) -> set[str]:
        clock[0] = moment
        asyncio.run(scheduler.tick())
        with Session(engine) as session:
            return {f"{session.get(User, d.user_id).email} {d.period}"  # type: ignore[union-attr]
                    for d in session.exec(select(Digest).where(Digest.period == "2026-11-26"))}

    assert tick_at(datetime(2026, 11, 25, 22, 59, tzinfo=UTC)) == set()  # 07:59 in Tokyo
    assert tick_at(datetime(2026, 11, 25, 23, 0, tzinfo=UTC)) == {"kenji@corp.example 2026-11-26"}
    assert tick_at(datetime(2026, 11, 26, 12, 59, tzinfo=UTC)) == {"kenji@corp.example 2026-11-26"}
    assert tick_at(datetime(2026, 11, 26, 13, 0, tzinfo=UTC)) == {  # 08:00 EST
        "kenji@corp.example 2026-11-26", "nora@corp.example 2026-11-26"}
    assert tick_at(datetime(2026, 11, 26, 18, 0, tzinfo=UTC)) == {
        "kenji@corp.example 2026-11-26", "nora@corp.example 2026-11-26"}
    assert [row.to_addr for row in queued_digests(engine)] == ["kenji@corp.example", "nora@corp.example"]
    assert len(pokes) == 2


def test_a_weekly_digest_belongs_to_the_iso_week_and_waits_for_the_weekly_day(settings, engine):
    lea, carol = two_people(engine)
    with Session(engine) as session:
        user = session.get(User, lea)
        user.digest = "weekly"  # type: ignore[union-attr]
        session.add(user)
        session.commit()
    assert period_key("weekly", datetime(2026, 11, 26, tzinfo=UTC)) == "2026-W48"
    add_post(engine, carol, "Weekly plan", datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    sunday = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # week 48's monday 08:00 has passed
    assert send_digests(settings, engine, now=sunday, user_ids=[lea]).queued == 1
    monday_early = datetime(2026, 11, 30, 7, 59, tzinfo=UTC)
    add_post(engine, carol, "Monday plan", datetime(2026, 11, 30, 7, 0, tzinfo=UTC))
    assert send_digests(settings, engine, now=monday_early, user_ids=[lea]).queued == 0
    assert send_digests(settings, engine, now=monday_early.replace(hour=8, minute=0), user_ids=[lea]).queued == 1
    assert [(row.period, row.item_count) for row in digest_rows(engine)] == [("2026-W48", 1), ("2026-W49", 1)]


# --- exactly once -------------------------------------------------------------------------


def test_two_concurrent_senders_make_one_digest_and_one_mail_per_reader(settings, engine):
    carol = add_user(engine, "carol@corp.example")
    readers = [add_user(engine, f"reader{n}@corp.example") for n in range(6)]
    for reader in readers:
        add_follow(engine, reader, target=carol)
    for n in range(3):
        add_post(engine, carol, f"Update {n}", NOW - timedelta(hours=n + 1))
    start = threading.Barrier(2)
    reports = []
    switch_interval = sys.getswitchinterval()

    def sender() -> None:
        start.wait()
        reports.append(send_digests(settings, engine, now=NOW, force=True))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(r.user_id for r in digest_rows(engine) if r.user_id != carol) == readers
    assert sorted(row.user_id for row in queued_digests(engine)) == readers  # type: ignore[type-var]
    assert sum(r.queued for r in reports) == 6
    assert {r.outbox_id for r in digest_rows(engine) if r.user_id != carol} == {row.id for row in queued_digests(engine)}
    # A run shortens the interpreter's thread switch interval and freezes its heap for
    # the garbage collector; overlapping runs leave both as they found them.
    assert sys.getswitchinterval() == switch_interval
    assert gc.get_freeze_count() == 0


def test_the_outbox_worker_is_woken_when_a_batch_commits_not_when_the_next_is_composed(settings, engine,
                                                                                      monkeypatch):
    """serve's worker sends the first digests while the run composes the rest: the
    wake-up comes from the commit (a batch is one reader here, and composing the second
    digest waits for the first one's wake-up; before, it came only after that composing)."""
    from statusmail.outbound import digest

    readers = [add_user(engine, "lea@corp.example"), add_user(engine, "nora@corp.example")]
    carol = add_user(engine, "carol@corp.example", digest="off")
    for reader in readers:
        add_follow(engine, reader, target=carol)
    add_post(engine, carol, "Quarterly numbers are in", NOW - timedelta(hours=2))
    monkeypatch.setattr(digest, "BATCH", 1)
    woken = threading.Event()
    seen_when_composing: list[bool] = []
    prepare = digest.prepare

    def composing(engine: Any, settings: Any, batch: list[Any], now: datetime) -> Any:
        if batch[0][0].recipient.email == "nora@corp.example":
            seen_when_composing.append(woken.wait(5))
        return prepare(engine, settings, batch, now)

    monkeypatch.setattr(digest, "prepare", composing)
    report = send_digests(settings, engine, now=NOW, force=True, on_queued=woken.set)
    assert report.queued == 2 and seen_when_composing == [True]


def test_a_period_already_sent_is_not_sent_again_even_with_now(settings, engine):
    lea, carol = two_people(engine)
    add_post(engine, carol, "First", NOW - timedelta(hours=2))
    assert send_digests(settings, engine, now=NOW, force=True).queued == 1
    add_post(engine, carol, "Second", NOW + timedelta(minutes=5))
    again = send_digests(settings, engine, now=NOW + timedelta(minutes=10), force=True)
    assert (again.queued, len(queued_digests(engine))) == (0, 1)


def test_the_next_digest_starts_where_the_last_one_ended(settings, engine):
    lea, carol = two_people(engine)
    add_post(engine, carol, "Old news", NOW - timedelta(hours=3))
    send_digests(settings, engine, now=NOW)
    add_post(engine, carol, "Fresh news", NOW + timedelta(hours=5))
    tomorrow = NOW + timedelta(days=1)
    assert send_digests(settings, engine, now=tomorrow).queued == 1
    body = outbox_body(engine, queued_digests(engine)[-1])
    assert "Fresh news" in body and "Old news" not in body


def test_readers_of_one_run_each_get_what_is_new_since_their_own_last_digest(settings, engine):
    """The run loads the news once from the earliest reader's start; a reader whose last
    digest ended later gets only what came after it."""
    lea, carol = two_people(engine)
    bob = add_user(engine, "bob@corp.example", "Bob")
    add_follow(engine, bob, target=carol)
    add_post(engine, carol, "Earlier news", NOW - timedelta(hours=22))
    # Yesterday's digest, at 13:00: Lea's next one starts there, Bob's 24 hours back.
    assert send_digests(settings, engine, now=NOW - timedelta(hours=20), force=True, user_ids=[lea]).queued == 1
    add_post(engine, carol, "Recent news", NOW - timedelta(hours=1))
    assert send_digests(settings, engine, now=NOW, force=True, user_ids=[lea, bob]).queued == 2
    latest = {row.to_addr: outbox_body(engine, row) for row in queued_digests(engine)}
    assert "Recent news" in latest["lea@corp.example"] and "Earlier news" not in latest["lea@corp.example"]
    assert "Recent news" in latest["bob@corp.example"] and "Earlier news" in latest["bob@corp.example"]


def queued_bytes(engine: Any, row: Outbox) -> bytes:
    with Session(engine) as session:
        return session.get(OutboxBody, row.id).raw  # type: ignore[union-attr]


def outbox_body(engine: Any, row: Outbox) -> str:
    from email import message_from_bytes, policy

    message = message_from_bytes(queued_bytes(engine, row), policy=policy.default)
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr, attr-defined]


# --- what ---------------------------------------------------------------------------------


def test_hidden_held_and_deleted_posts_never_appear(settings, engine):
    lea, carol = two_people(engine)
    for status in ("hidden", "held", "deleted"):
        add_post(engine, carol, f"A {status} thought", NOW - timedelta(hours=1), status=status)
    hidden_root = add_post(engine, carol, "Root that was hidden later", NOW - timedelta(hours=2), status="hidden")
    add_post(engine, carol, "Answer under a hidden root", NOW - timedelta(hours=1), parent=hidden_root)
    add_post(engine, carol, "A visible thought", NOW - timedelta(hours=1))
    text = text_of(settings, engine, lea)
    assert "A visible thought" in text
    for gone in ("hidden thought", "held thought", "deleted thought", "hidden later", "under a hidden root"):
        assert gone not in text


def test_muted_threads_are_left_out(settings, engine):
    lea, carol = two_people(engine)
    loud = add_post(engine, carol, "The loud thread", NOW - timedelta(hours=3))
    add_post(engine, carol, "More of the loud thread", NOW - timedelta(hours=2), parent=loud)
    add_post(engine, carol, "The quiet thread", NOW - timedelta(hours=2))
    with Session(engine) as session:
        session.add(Mute(user_id=lea, thread_id=loud))
        session.commit()
    text = text_of(settings, engine, lea)
    assert "The quiet thread" in text and "loud thread" not in text


def test_nothing_new_sends_no_mail_and_the_empty_period_is_recorded(settings, engine):
    lea, carol = two_people(engine)
    add_post(engine, lea, "Only my own update", NOW - timedelta(hours=1))
    add_post(engine, carol, "Yesterday's news", NOW - timedelta(days=2))
    assert preview(settings, engine, lea, now=NOW).reason == "nothing new"
    report = send_digests(settings, engine, now=NOW, user_ids=[lea])
    assert (report.queued, report.empty) == (0, 1)
    assert queued_digests(engine) == []
    [row] = digest_rows(engine)
    assert (row.period, row.item_count, row.outbox_id) == ("2026-11-26", 0, None)
    assert send_digests(settings, engine, now=NOW + timedelta(hours=1), user_ids=[lea]).empty == 0


def test_sections_hold_mentions_replies_in_my_threads_follows_and_company_discussions(settings, engine):
    lea, carol = two_people(engine)
    dan = add_user(engine, "dan@corp.example", "Dan")
    eve = add_user(engine, "eve@corp.example", "Eve")
    add_follow(engine, lea, tag="billing")
    add_follow(engine, lea, target=eve, active=False)
    mine = add_post(engine, lea, "My plan for Q1", NOW - timedelta(days=3))
    add_post(engine, dan, "Looks good to me", NOW - timedelta(hours=4), parent=mine)
    add_post(engine, dan, "Hey @lea see this", NOW - timedelta(hours=4), mentions=(lea,))
    add_post(engine, dan, "Invoices fixed #billing", NOW - timedelta(hours=4), tags=("billing",))
    add_post(engine, eve, "Unfollowed voice", NOW - timedelta(hours=4))
    fay = add_user(engine, "fay@corp.example", "Fay")
    hot = add_post(engine, eve, "Should we move offices?", NOW - timedelta(days=2))
    for author in (fay, dan, eve):
        add_post(engine, author, "an opinion", NOW - timedelta(hours=1), parent=hot)
    text = text_of(settings, engine, lea)
    sections = re.findall(r"^== (.+) ==$", text, re.M)
    assert sections == ["Mentioning you", "New replies in your threads", "From people and tags you follow",
                        "Most discussed across the company"]
    assert "Hey @lea see this" in text and "Looks good to me" in text and "Invoices fixed" in text
    assert "Should we move offices?" in text and "3 replies" in text
    assert "Unfollowed voice" not in text
    assert "\n  My plan for Q1\n" not in text and 'in "My plan for Q1"' in text  # my own root: context only


def test_each_item_shows_author_local_time_reply_count_and_a_reply_link(settings, engine):
    lea = add_user(engine, "lea@corp.example", "Lea Leader", timezone="Europe/Berlin")
    carol = add_user(engine, "carol@corp.example", "Carol Coder")
    add_follow(engine, lea, target=carol)
    post = add_post(engine, carol, "Ship it? Yes & no <b>", datetime(2026, 11, 26, 7, 5, tzinfo=UTC))
    add_post(engine, lea, "yes", NOW - timedelta(minutes=10), parent=post)
    report = send_digests(settings, engine, now=NOW, force=True, user_ids=[lea])
    assert report.queued == 1
    [row] = queued_digests(engine)
    from email import message_from_bytes, policy

    message = message_from_bytes(queued_bytes(engine, row), policy=policy.default)
    assert message["Subject"] == "Your Status digest: 1 update"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] == "<mailto:status-request@corp.example?subject=unsubscribe>"
    assert message["To"] == "Lea Leader <lea@corp.example>" and row.kind == "digest"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr, attr-defined]
    assert "Carol Coder - Thu 26 Nov, 08:05" in text and "1 reply" in text
    with Session(engine) as session:
        token = session.exec(select(ReplyToken.token).where(ReplyToken.user_id == lea, ReplyToken.post_id == post)).one()
    assert f"reply: status+{token}@corp.example" in text
    html = html_of(message)  # type: ignore[arg-type]
    [link] = re.findall(r'href="(mailto:status\+[^"]+)"', html)
    assert link == f"mailto:status+{token}@corp.example?subject=Re%3A%20Ship%20it%3F%20Yes%20%26%20no%20%3Cb%3E"
    assert unquote(link.split("subject=")[1]) == "Re: Ship it? Yes & no <b>"


def test_the_html_part_escapes_a_script_and_links_a_url(settings, engine):
    lea, carol = two_people(engine)
    add_post(engine, carol, "<script>alert(1)</script> see https://wiki.corp.example/q4?a=1&b=2.",
             NOW - timedelta(hours=1))
    message = preview(settings, engine, lea, now=NOW).message
    assert message is not None
    html = html_of(message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<a href="https://wiki.corp.example/q4?a=1&amp;b=2" style="color:#1a56db">' in html


def test_banned_and_suspended_readers_get_no_digest(settings, engine):
    carol = add_user(engine, "carol@corp.example")
    banned = add_user(engine, "ben@corp.example", banned=True)
    bounced = add_user(engine, "bo@corp.example", mail_suspended=True)
    off = add_user(engine, "olga@corp.example", digest="off")
    for reader in (banned, bounced, off):
        add_follow(engine, reader, target=carol)
    add_post(engine, carol, "News", NOW - timedelta(hours=1))
    report = send_digests(settings, engine, now=NOW, force=True)
    assert (report.queued, report.empty) == (0, 1)  # carol herself, with nothing new
    assert queued_digests(engine) == []


# --- answering from a digest --------------------------------------------------------------


def test_a_reply_to_a_digest_items_address_lands_in_that_items_thread(settings, engine, gateway):
    lea, carol = two_people(engine)
    now = datetime.now(UTC)
    root = add_post(engine, carol, "Launch checklist", now - timedelta(hours=3))
    answer = add_post(engine, carol, "Checklist item 3 is done", now - timedelta(hours=1), parent=root)
    assert send_digests(settings, engine, now=now, force=True, user_ids=[lea]).queued == 1
    gateway.flush_outbox()
    [digest] = [m for m in outbox_messages(settings) if m["Subject"].startswith("Your Status digest")]
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    address = re.search(r"Checklist item 3 is done\s+0 replies - reply: (\S+)", text).group(1)  # type: ignore[union-attr]
    html = html_of(digest)
    assert f'href="mailto:{address}?subject=Re%3A%20Launch%20checklist"' in html
    reply = make_mail(body="Thanks, on it", subject="Re: Launch checklist", sender="Lea Leader <lea@corp.example>",
                      to=address)
    assert gateway.send(reply, mail_from="lea@corp.example", to=address)[0] == 250
    with Session(engine) as session:
        stored = session.exec(select(Post).where(Post.author_id == lea)).one()
    assert (stored.thread_id, stored.parent_id, stored.body) == (root, answer, "Thanks, on it")


def test_a_digest_run_inside_serve_leaves_the_process_switches_alone(settings, engine) -> None:
    """Process-wide switches belong to a process's entry point (`statusmail digest send`),
    never to a run that shares the process with serve's listener."""
    reader = add_user(engine, "reader@corp.example")
    author = add_user(engine, "author@corp.example")
    add_follow(engine, reader, author)
    add_post(engine, author, "something new", datetime.now(UTC) - timedelta(hours=1))
    before = sys.getswitchinterval()
    seen: list[tuple[float, int]] = []
    send_digests(settings, engine, force=True, progress=lambda done, total: seen.append(
        (sys.getswitchinterval(), gc.get_freeze_count())))
    assert seen and all(interval == before and frozen == 0 for interval, frozen in seen)
    assert sys.getswitchinterval() == before
