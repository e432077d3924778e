"""Reply by mail, round trips over SMTP: a post, the notification it causes, a reply
composed from it the way real clients compose replies, and the thread that results."""

from __future__ import annotations

import base64
import email.utils
import json
from email.message import EmailMessage

from sqlmodel import Session, select

from statusmail.inbound import outcome as replies
from statusmail.store.models import InboundLog, Outbox, Post
from tests.conftest import make_mail, outbox_messages


def posts(engine) -> list[Post]:
    with Session(engine) as session:
        return list(session.exec(select(Post).order_by(Post.id)))


def reply_headers(notification: EmailMessage, sender: str, style: str) -> EmailMessage:
    """The headers of a reply to ``notification``: to its Reply-To, threaded under it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = notification["Reply-To"]
    msg["Subject"] = ("RE: " if style == "outlook" else "Re: ") + notification["Subject"].removeprefix("Re: ")
    msg["Message-ID"] = email.utils.make_msgid(domain="corp.example")
    msg["In-Reply-To"] = notification["Message-ID"]
    msg["References"] = f'{notification["References"]} {notification["Message-ID"]}'
    return msg


def reply_to(notification: EmailMessage, sender: str, new_text: str, style: str) -> EmailMessage:
    """A reply as Outlook, Gmail or Apple Mail would compose it: to Reply-To, quoting the mail."""
    quoted = notification.get_body(("plain",)).get_content()
    msg = reply_headers(notification, sender, style)
    if style == "outlook":
        body = (f"{new_text}\n\n________________________________\nFrom: Status <status@corp.example>\n"
                f"Sent: Thursday, November 26, 2026 9:14 AM\nTo: {sender}\nSubject: {notification['Subject']}\n\n{quoted}")
    elif style == "gmail":
        body = (f"{new_text}\n\nOn Thu, Nov 26, 2026 at 9:14 AM Status <status@corp.example>\nwrote:\n\n"
                + "".join(f"> {line}\n" for line in quoted.splitlines()))
    else:  # Apple Mail
        body = (f"{new_text}\n\nSent from my iPhone\n\n> On 26 Nov 2026, at 09:14, Status <status@corp.example> wrote:\n>\n"
                + "".join(f"> {line}\n" for line in quoted.splitlines()))
    msg.set_content(body)
    return msg


def start_thread(gateway, cli, settings) -> EmailMessage:
    """Alice posts mentioning Bob; Bob's notification is returned."""
    cli("users", "add", "bob@corp.example", "--name", "Bob Boss", "--role", "leader")
    gateway.send(make_mail(body="Closed the Q4 billing backlog, @bob", subject="Billing backlog closed"))
    gateway.flush_outbox()
    [notification] = outbox_messages(settings)
    return notification


def test_a_mention_notification_carries_a_token_reply_address_and_threading_headers(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    [root] = posts(engine)
    assert notification["Reply-To"].startswith("status+") and notification["Reply-To"].endswith("@corp.example")
    token = notification["Reply-To"].split("+", 1)[1].split("@")[0]
    assert len(token) >= 26  # at least 128 bits in base32
    assert notification["Subject"] == "Re: Billing backlog closed"
    # The mail about the root is the root, as a list passes a post on: nothing above it.
    assert notification["Message-ID"] == root.message_id
    assert notification["In-Reply-To"] is None and notification["References"] is None
    [sender] = notification["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Alice Example via Status", "status@corp.example")
    assert notification["Thread-Topic"] == "Billing backlog closed"
    assert len(base64.b64decode(notification["Thread-Index"])) == 22  # the root's own block
    assert notification["List-Id"] == "Status <status.corp.example>"
    assert notification["List-Unsubscribe"] == "<mailto:status-request@corp.example?subject=unsubscribe>"
    assert notification["Auto-Submitted"] == "auto-generated"
    assert notification.get_body(("html",)) is not None


def test_replies_from_outlook_gmail_and_apple_mail_land_in_the_thread_with_quotes_trimmed(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    for style, text in (("outlook", "Great work, thank you"), ("gmail", "Which customers were affected?"),
                        ("apple", "Let us talk Friday")):
        code, reply = gateway.send(reply_to(notification, "Bob Boss <bob@corp.example>", text, style),
                                   mail_from="bob@corp.example", to=notification["Reply-To"])
        assert (code, reply) == (250, replies.OK_REPLIED.removeprefix("250 ")), style
    root, *answers = posts(engine)
    assert [a.body for a in answers] == ["Great work, thank you", "Which customers were affected?", "Let us talk Friday"]
    assert all(a.thread_id == root.id and a.parent_id == root.id for a in answers)
    assert "From: Status" in answers[0].trimmed and "wrote:" in answers[1].trimmed


def test_the_authors_notification_threads_under_her_original_message(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    gateway.send(reply_to(notification, "bob@corp.example", "Nice one", "gmail"), mail_from="bob@corp.example",
                 to=notification["Reply-To"])
    gateway.flush_outbox()
    to_alice = [m for m in outbox_messages(settings) if m["To"].addresses[0].addr_spec == "alice@corp.example"]
    [mail] = to_alice
    root, reply = posts(engine)
    assert mail["Subject"] == "Re: Billing backlog closed"
    # Bob's reply, passed on: under the message in Alice's Sent folder.
    assert mail["References"] == mail["In-Reply-To"] == root.message_id
    assert mail["Message-ID"] == reply.message_id
    assert mail["From"].addresses[0].display_name == "Bob Boss via Status"
    assert "Nice one" in mail.get_body(("plain",)).get_content()
    # Outlook: the same conversation GUID as Bob's mail about the thread.
    assert base64.b64decode(mail["Thread-Index"])[:22] == base64.b64decode(notification["Thread-Index"])[:22]


def test_the_replier_is_never_notified_of_their_own_reply(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    gateway.send(reply_to(notification, "bob@corp.example", "Noted", "gmail"), mail_from="bob@corp.example",
                 to=notification["Reply-To"])
    gateway.flush_outbox()
    recipients = [m["To"].addresses[0].addr_spec for m in outbox_messages(settings)]
    assert sorted(recipients) == ["alice@corp.example", "bob@corp.example"]


def test_a_reply_from_someone_other_than_the_token_owner_is_refused_and_nothing_is_sent(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    forged = reply_to(notification, "mallory@corp.example", "I speak for Bob", "gmail")
    code, reply = gateway.send(forged, mail_from="mallory@corp.example", to=notification["Reply-To"])
    assert code == 550 and reply.startswith("5.7.1")
    assert len(posts(engine)) == 1
    with Session(engine) as session:
        assert len(session.exec(select(Outbox)).all()) == 1  # only Bob's original notification
        [entry] = session.exec(select(InboundLog).where(InboundLog.outcome == "refused")).all()
    assert entry.reason == "wrong_replier"


def test_an_unknown_token_is_refused_as_no_such_recipient(gateway, engine):
    code, _ = gateway.send(make_mail(body="hi"), to="status+aaaaaaaaaaaaaaaaaaaaaaaaaa@corp.example")
    assert code == 550
    assert posts(engine) == []


def test_a_reply_with_in_reply_to_and_no_token_threads(gateway, engine):
    gateway.send(make_mail(body="Root post", subject="status"))
    [root] = posts(engine)
    reply = make_mail(body="Answer without a token", subject="Re: Root post", sender="bob@corp.example",
                      In_Reply_To=root.message_id, References=root.message_id)
    assert gateway.send(reply, mail_from="bob@corp.example")[0] == 250
    _, answer = posts(engine)
    assert (answer.parent_id, answer.thread_id, answer.body) == (root.id, root.id, "Answer without a token")


def test_a_reply_to_our_notification_message_id_threads_without_a_token(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    reply = make_mail(body="Replying to status@ directly", subject="Re: whatever", sender="bob@corp.example",
                      In_Reply_To=notification["Message-ID"])
    gateway.send(reply, mail_from="bob@corp.example")
    root, answer = posts(engine)
    assert answer.thread_id == root.id and answer.body == "Replying to status@ directly"


def test_posts_show_json_includes_the_whole_thread_oldest_first(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    gateway.send(reply_to(notification, "bob@corp.example", "First answer", "gmail"), mail_from="bob@corp.example",
                 to=notification["Reply-To"])
    root, answer = posts(engine)
    shown = json.loads(cli("posts", "show", str(answer.id), "--json").stdout)
    assert shown["id"] == answer.id and shown["parent_id"] == root.id
    assert [p["id"] for p in shown["thread"]] == [root.id, answer.id]
    root_json = json.loads(cli("posts", "show", str(root.id), "--json").stdout)
    assert root_json["reply_count"] == 1


def test_a_notification_header_never_carries_a_users_line_break(gateway, cli, settings):
    cli("users", "add", "bob@corp.example")
    evil = "Status =?utf-8?q?x=0D=0ABcc:_all@corp.example?= done @bob"
    gateway.send(make_mail(body="body @bob", subject=evil))
    gateway.flush_outbox()
    [mail] = outbox_messages(settings)
    assert "Bcc" not in mail and mail["Subject"].startswith("Re: Status")
    raw_headers = mail.as_bytes().split(b"\n\n", 1)[0].decode()
    assert "\nBcc:" not in raw_headers


def test_reply_addresses_outlive_their_first_use_and_expire_only_when_configured(gateway, cli, settings, engine):
    from datetime import timedelta

    from statusmail.inbound.threads import token_expired
    from statusmail.store.models import ReplyToken, utcnow

    notification = start_thread(gateway, cli, settings)
    for text in ("First answer", "Second answer"):
        assert gateway.send(reply_to(notification, "bob@corp.example", text, "gmail"), mail_from="bob@corp.example",
                            to=notification["Reply-To"])[0] == 250
    with Session(engine) as session:
        token = session.exec(select(ReplyToken)).first()
    token.created_at = utcnow() - timedelta(days=400)
    assert not token_expired(token, 0)  # the default: never
    assert token_expired(token, 365) and not token_expired(token, 500)


def test_html_only_replies_from_gmail_and_outlook_land_trimmed_in_the_thread(gateway, cli, settings, engine):
    notification = start_thread(gateway, cli, settings)
    gmail = reply_headers(notification, "bob@corp.example", "gmail")
    gmail.set_content('<div dir="ltr">Well done, <b>team</b>!</div><br><div class="gmail_quote">'
                      '<div class="gmail_attr">On Thu, Nov 26, 2026 at 9:14 AM Status &lt;status@corp.example&gt; '
                      'wrote:<br></div><blockquote class="gmail_quote">Closed the Q4 billing backlog</blockquote></div>',
                      subtype="html")
    outlook = reply_headers(notification, "bob@corp.example", "outlook")
    outlook.set_content('<html><body><div class="WordSection1"><p>Send me the numbers please</p>'
                        '<div id="divRplyFwdMsg"><b>From:</b> Status &lt;status@corp.example&gt;<br>'
                        '<b>Sent:</b> Thursday</div><div>Closed the Q4 billing backlog</div></div></body></html>',
                        subtype="html")
    for mail in (gmail, outlook):
        assert gateway.send(mail, mail_from="bob@corp.example", to=notification["Reply-To"])[0] == 250
    root, first, second = posts(engine)
    assert (first.body, second.body) == ("Well done, team!", "Send me the numbers please")
    assert first.parent_id == second.parent_id == root.id
