"""What lands in the feed is what the sender typed (SPEC §3): replies in the forms real
clients write, sent over SMTP, stored without their quotes, attributions, signatures
and tracking marks; and a mail with no new text is not posted, its sender told why."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage

import pytest
from sqlmodel import Session, func, select

from statusmail.inbound import outcome as replies
from statusmail.store.models import InboundLog, Post
from tests.conftest import make_mail, outbox_messages

NEW = "Deploy is done, all green."
QUOTE = "> Closed the Q4 billing backlog, @bob\n"
FORMS = {
    "gmail-iso-gmt-wrapped": f"{NEW}\n\nOn 2026-11-26 09:14 GMT+01:00, Alice Example <alice@corp.example>\nwrote:\n\n{QUOTE}",
    "gmail-de-wrapped": f"{NEW}\n\nAlice Example <alice@corp.example> schrieb am Do., 26. Nov. 2026 um\n09:14 Uhr:\n\n{QUOTE}",
    "gmail-uk": f"{NEW}\n\nчт, 26 лист. 2026 р. о 09:14 Alice Example <alice@corp.example> пише:\n\n{QUOTE}",
    "gmail-ru": f"{NEW}\n\nчт, 26 нояб. 2026 г. в 09:14, Alice Example <alice@corp.example>\nнаписал:\n\n{QUOTE}",
    "pipe-quote": f"{NEW}\n\nOn Thu, Nov 26, 2026 at 9:14 AM Alice <alice@corp.example> wrote:\n| Closed the backlog\n",
    "tracking-mark": f"{NEW}\u1427\n\nOn Thu, Nov 26, 2026 at 9:14 AM Alice <alice@corp.example> wrote:\n{QUOTE}",
    "outlook-card": f"{NEW}\n\nBob Boss\nHead of Billing | Corp Example\nPhone: +49 30 1234567\n\n"
                    "________________________________\nFrom: Status <status@corp.example>\nSent: Thursday\n\nold",
}


def reply(notification: EmailMessage, body: str, charset_text: bool = True) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Bob Boss <bob@corp.example>"
    msg["To"] = notification["Reply-To"]
    msg["Subject"] = "Re: " + notification["Subject"].removeprefix("Re: ")
    msg["Message-ID"] = email.utils.make_msgid(domain="corp.example")
    msg["In-Reply-To"] = notification["Message-ID"]
    msg["References"] = notification["Message-ID"]
    msg.set_content(body)
    return msg


@pytest.fixture
def notification(gateway, cli, settings):
    cli("users", "add", "bob@corp.example", "--name", "Bob Boss")
    gateway.send(make_mail(body="Closed the Q4 billing backlog, @bob", subject="Billing backlog closed"))
    gateway.flush_outbox()
    [mail] = outbox_messages(settings)
    return mail


@pytest.mark.parametrize("form", FORMS)
def test_each_client_form_is_stored_as_the_new_text_alone(gateway, engine, notification, form):
    code, text = gateway.send(reply(notification, FORMS[form]), mail_from="bob@corp.example",
                              to=notification["Reply-To"])
    assert (code, text) == (250, replies.OK_REPLIED.removeprefix("250 "))
    with Session(engine) as session:
        stored = session.exec(select(Post).where(Post.parent_id.is_not(None))).one()  # type: ignore[union-attr]
    assert stored.body == NEW
    assert stored.trimmed  # what was cut is kept with the post, for moderators


def test_an_indented_code_block_is_posted_whole(gateway, engine, notification):
    body = "Run this before merging:\n\n    > make test\n    > make lint\n"
    assert gateway.send(reply(notification, body), mail_from="bob@corp.example", to=notification["Reply-To"])[0] == 250
    with Session(engine) as session:
        stored = session.exec(select(Post).where(Post.parent_id.is_not(None))).one()  # type: ignore[union-attr]
    # Posted whole, not cut as a quote; stored as counted (SPEC §3: runs of spaces collapsed).
    assert stored.body == "Run this before merging:\n\n> make test\n> make lint"


def test_a_reply_with_nothing_new_is_not_posted_and_the_sender_is_told_what_was_removed(gateway, engine, settings,
                                                                                       notification):
    body = "Sent from my iPhone\n\n> On 26 Nov 2026, at 09:14, Status <status@corp.example> wrote:\n>\n" + QUOTE
    mail = reply(notification, body)
    code, text = gateway.send(mail, mail_from="bob@corp.example", to=notification["Reply-To"])
    assert (code, text) == (250, replies.OK_NOTHING_NEW.removeprefix("250 "))
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Post)).one() == 1
        [entry] = session.exec(select(InboundLog).where(InboundLog.reason == "nothing_new")).all()
    assert entry.outcome == "accepted"
    gateway.flush_outbox()
    [answer] = [m for m in outbox_messages(settings) if m["In-Reply-To"] == mail["Message-ID"]]
    assert answer["Subject"] == "Not posted: no new text in your mail"
    told = answer.get_body(("plain",)).get_content()
    assert "| > Closed the Q4 billing backlog, @bob" in told and "| Sent from my iPhone" in told
    assert answer["To"].addresses[0].addr_spec == "bob@corp.example"
