"""Reply keywords over SMTP (SPEC §3): a reply that is only `mute`, `unmute`,
`unsubscribe`, `+1`, `like` or 👍 acts instead of posting, whatever client wrote it."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, func, select

from statusmail.inbound import outcome as replies
from statusmail.inbound.keywords import keyword_of
from statusmail.store.models import InboundLog, Like, Mute, Outbox, Post
from tests.conftest import make_mail, outbox_messages
from tests.gateway.clients import corpus_reply

BOB = "Bob Boss <bob@corp.example>"


def count(engine, model) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def start_thread(gateway, cli, settings):
    """Alice posts mentioning Bob and Carol; Bob's notification is returned."""
    cli("users", "add", "bob@corp.example", "--name", "Bob Boss")
    cli("users", "add", "carol@corp.example", "--name", "Carol Chen")
    gateway.send(make_mail(body="Closed the Q4 billing backlog, @bob @carol", subject="Billing backlog closed"))
    gateway.flush_outbox()
    [to_bob] = [m for m in outbox_messages(settings) if m["To"].addresses[0].addr_spec == "bob@corp.example"]
    return to_bob


def send_reply(gateway, notification, client: str, text: str, sender: str = BOB) -> tuple[int, str]:
    address = sender.split("<")[-1].rstrip(">")
    return gateway.send(corpus_reply(client, notification, sender, text), mail_from=address,
                        to=notification["Reply-To"])


@pytest.mark.parametrize("client, word", [("outlook", "mute"), ("gmail", "Mute"), ("apple", "MUTE."),
                                          ("iphone", "mute!")])
def test_a_mute_reply_mutes_the_sender_posts_nothing_and_confirms_in_one_line(gateway, cli, settings, engine,
                                                                              client, word):
    notification = start_thread(gateway, cli, settings)
    mailed = len(outbox_messages(settings))
    assert send_reply(gateway, notification, client, word) == (250, replies.OK_KEYWORD.removeprefix("250 "))
    assert count(engine, Post) == 1  # only Alice's post
    with Session(engine) as session:
        [mute] = session.exec(select(Mute)).all()
        root = session.exec(select(Post)).one()
        [entry] = session.exec(select(InboundLog).where(InboundLog.reason == "keyword")).all()
    assert mute.thread_id == root.id and entry.outcome == "accepted"
    gateway.flush_outbox()
    [answer] = [m for m in outbox_messages(settings) if m["In-Reply-To"] != notification["In-Reply-To"]
                and m["Auto-Submitted"] == "auto-replied"]  # the confirmation, to Bob alone
    assert len(outbox_messages(settings)) == mailed + 1
    assert answer["To"].addresses[0].addr_spec == "bob@corp.example"
    assert answer["Subject"] == "Re: Billing backlog closed"
    assert answer["Auto-Submitted"] == "auto-replied"
    body = answer.get_body(("plain",)).get_content().strip()
    assert body == 'Muted: no more mail about "Billing backlog closed". Send "unmute" in a reply to resume.'
    # Muted means muted: Carol's reply to the thread mails Alice, not Bob.
    [to_carol] = [m for m in outbox_messages(settings) if m["To"].addresses[0].addr_spec == "carol@corp.example"]
    assert send_reply(gateway, to_carol, "gmail", "Great news", sender="Carol Chen <carol@corp.example>")[0] == 250
    gateway.flush_outbox()
    told = [m["To"].addresses[0].addr_spec for m in outbox_messages(settings)
            if "Great news" in m.get_body(("plain",)).get_content()]
    assert told == ["alice@corp.example"]


def test_unmute_resumes_mail_about_the_thread(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    send_reply(gateway, notification, "gmail", "mute")
    assert count(engine, Mute) == 1
    assert send_reply(gateway, notification, "outlook", "unmute")[0] == 250
    assert count(engine, Mute) == 0 and count(engine, Post) == 1
    gateway.flush_outbox()
    answers = [m.get_body(("plain",)).get_content().strip() for m in outbox_messages(settings)
               if m["Auto-Submitted"] == "auto-replied"]
    assert sorted(answers)[-1] == 'Unmuted: mail about "Billing backlog closed" arrives again.'


def test_an_unsubscribe_reply_turns_the_digest_off_and_says_so(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    assert send_reply(gateway, notification, "apple", "Unsubscribe")[0] == 250
    assert json.loads(cli("users", "show", "bob@corp.example", "--json").stdout)["digest"] == "off"
    assert count(engine, Post) == 1
    gateway.flush_outbox()
    [answer] = [m for m in outbox_messages(settings) if m["Auto-Submitted"] == "auto-replied"]
    assert answer.get_body(("plain",)).get_content().startswith("Unsubscribed: no more digests.")


@pytest.mark.parametrize("client, word", [("gmail", "+1"), ("outlook", "Like"), ("apple", "\N{THUMBS UP SIGN}"),
                                          ("iphone", "\N{THUMBS UP SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}"),
                                          ("thunderbird", "like!")])
def test_a_like_reply_is_recorded_and_nobody_is_mailed(gateway, cli, settings, engine, client, word):
    notification = start_thread(gateway, cli, settings)
    with Session(engine) as session:
        queued = session.exec(select(func.count()).select_from(Outbox)).one()
    assert send_reply(gateway, notification, client, word) == (250, replies.OK_LIKED.removeprefix("250 "))
    assert send_reply(gateway, notification, client, word)[0] == 250  # a second like is the same like
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Outbox)).one() == queued  # nobody mailed
        [like] = session.exec(select(Like)).all()
        root = session.exec(select(Post)).one()
    assert like.post_id == root.id and count(engine, Post) == 1
    [shown] = json.loads(cli("posts", "list", "--json").stdout)
    assert shown["likes"] == 1 and shown["reply_count"] == 0


def test_a_like_shows_in_the_next_notification_of_the_thread(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    send_reply(gateway, notification, "gmail", "+1")
    to_carol = [m for m in outbox_messages(settings) if m["To"].addresses[0].addr_spec == "carol@corp.example"][0]
    send_reply(gateway, to_carol, "gmail", "Agreed, well done", sender="Carol Chen <carol@corp.example>")
    gateway.flush_outbox()
    # Bob liked, he did not reply: he is not part of the thread; Alice hears of Carol's answer.
    [to_alice] = [m for m in outbox_messages(settings) if "Agreed" in m.get_body(("plain",)).get_content()]
    assert to_alice["To"].addresses[0].addr_spec == "alice@corp.example"
    assert "In reply to Alice Example (1 like):" in to_alice.get_body(("plain",)).get_content()


@pytest.mark.parametrize("text", ["+1, and also the numbers look right", "Like it a lot", "mute the alarms please",
                                  "\N{THUMBS UP SIGN} shipped"])
def test_a_keyword_with_more_text_is_a_post(gateway, cli, settings, engine, text):
    notification = start_thread(gateway, cli, settings)
    assert send_reply(gateway, notification, "gmail", text) == (250, replies.OK_REPLIED.removeprefix("250 "))
    assert count(engine, Like) == 0 and count(engine, Mute) == 0
    with Session(engine) as session:
        assert session.exec(select(Post).where(Post.parent_id.is_not(None))).one().body == text


def test_a_new_post_that_is_one_keyword_is_a_post(gateway, engine):
    """Only a reply acts: "+1" mailed to the status address on its own starts a thread."""
    assert gateway.send(make_mail(body="+1", subject="status"))[0] == 250
    with Session(engine) as session:
        assert session.exec(select(Post)).one().body == "+1"


@pytest.mark.parametrize("text, expected", [
    ("mute", "mute"), (" Unmute.\n", "unmute"), ("UNSUBSCRIBE!", "unsubscribe"), ("+1", "like"), ("+1!", "like"),
    ("like", "like"), ("\N{THUMBS UP SIGN}\ufe0f", "like"), ("mute me", ""), ("+1 +1", ""), ("+2", ""), ("likes", ""),
    ("", ""), ("mute\n\nthanks", ""), ("mu\u200bte", "mute"),
])
def test_the_keyword_match_is_strict(text, expected):
    assert keyword_of(text) == expected


def auto_replies(settings):
    """The answers to a sender (Auto-Submitted: auto-replied), in no particular order:
    the Maildir's file names do not sort by time within a second."""
    return [m for m in outbox_messages(settings) if m["Auto-Submitted"] == "auto-replied"]


def at_the_hourly_limit(gateway_with, tmp_path, policy: str = ""):
    """A gateway where Bob may post once an hour and has: Alice's post mentioning him
    (his notification is returned) and his own update, so his next post is one too many."""
    from tests.conftest import cli_invoker

    running = gateway_with("posts_per_hour = 1\n" + policy)
    cli = cli_invoker(tmp_path / "statusmail.toml")  # gateway_with's configuration
    cli("users", "add", "bob@corp.example", "--name", "Bob Boss")
    assert running.send(make_mail(body="Closed the Q4 billing backlog, @bob", subject="Billing backlog closed"))[0] == 250
    running.flush_outbox()
    [to_bob] = [m for m in outbox_messages(running.settings) if m["To"].addresses[0].addr_spec == "bob@corp.example"]
    assert running.send(make_mail(body="Reviewed the vendor contracts", subject="status", sender=BOB),
                        mail_from="bob@corp.example") == (250, replies.OK_POSTED.removeprefix("250 "))
    return running, cli, to_bob


@pytest.mark.parametrize("client", ["gmail", "outlook", "apple"])
def test_keyword_replies_act_for_a_sender_at_the_hourly_post_limit_and_posts_are_still_deferred(
        gateway_with, tmp_path, client):
    """Keywords post nothing, so posts_per_hour does not defer them (SPEC §3): a "+1" or
    "mute" typed above the client's quoted original and attribution line acts at once."""
    running, cli, to_bob = at_the_hourly_limit(gateway_with, tmp_path)
    engine, settings = running.engine, running.settings
    assert send_reply(running, to_bob, client, "+1") == (250, replies.OK_LIKED.removeprefix("250 "))
    [alices] = [p for p in json.loads(cli("posts", "list", "--json").stdout) if p["author"] == "alice@corp.example"]
    assert alices["likes"] == 1
    assert send_reply(running, to_bob, client, "Mute") == (250, replies.OK_KEYWORD.removeprefix("250 "))
    with Session(engine) as session:
        [mute] = session.exec(select(Mute)).all()
    assert mute.thread_id == alices["id"]
    running.flush_outbox()
    [confirmation] = auto_replies(settings)  # the like mailed no one
    assert confirmation["To"].addresses[0].addr_spec == "bob@corp.example"
    assert confirmation["Subject"] == "Re: Billing backlog closed"
    assert confirmation.get_body(("plain",)).get_content().strip().startswith('Muted: no more mail about "Billing')
    # A real reply, and a new post, are still one post too many this hour.
    code, text = send_reply(running, to_bob, client, "Thanks, the numbers look right")
    assert (code, text) == (451, replies.DEFERRED_RATE.removeprefix("451 "))
    code, text = running.send(make_mail(body="Another update", subject="status", sender=BOB),
                              mail_from="bob@corp.example")
    assert (code, text) == (451, replies.DEFERRED_RATE.removeprefix("451 "))
    assert count(engine, Post) == 2  # Alice's and Bob's first; no reply, no third post
    reasons = [e["reason"].split(":")[0] for e in json.loads(cli("log", "--json").stdout)]
    assert reasons[:4] == ["rate_limited", "rate_limited", "keyword", "liked"]


def test_keyword_confirmations_beyond_the_limit_stay_capped_by_auto_answers_per_hour(gateway_with, tmp_path):
    """Not deferred is not unbounded: every keyword acts, but only auto_answers_per_hour
    confirmations a hour go to one sender, so a robot answering them cannot loop."""
    running, cli, to_bob = at_the_hourly_limit(gateway_with, tmp_path, "auto_answers_per_hour = 2")
    for word in ("mute", "unmute", "mute"):
        assert send_reply(running, to_bob, "gmail", word) == (250, replies.OK_KEYWORD.removeprefix("250 "))
    assert count(running.engine, Mute) == 1  # the last one acted too
    running.flush_outbox()
    answers = [m.get_body(("plain",)).get_content().strip() for m in auto_replies(running.settings)]
    assert sorted(a.split(":")[0] for a in answers) == ["Muted", "Unmuted"]
