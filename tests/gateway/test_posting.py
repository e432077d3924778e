"""Posting by mail over real SMTP on loopback: the answers a sender's MTA gets, and
what ends up stored and mailed back."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from statusmail.inbound import outcome as replies
from statusmail.store.models import InboundLog, Post, User
from tests.conftest import make_mail, outbox_messages


def stored_posts(engine) -> list[Post]:
    with Session(engine) as session:
        return list(session.exec(select(Post).order_by(Post.id)))


def test_an_update_becomes_a_post_with_subject_as_first_line(gateway, engine):
    code, reply = gateway.send(make_mail(body="Shipped the billing export #Billing", subject="Billing export done"))
    assert (code, reply) == (250, replies.OK_POSTED.removeprefix("250 "))
    [post] = stored_posts(engine)
    assert post.body == "Billing export done\n\nShipped the billing export #Billing"
    assert post.status == "visible" and post.thread_id == post.id


def test_a_generic_subject_is_dropped_from_the_post(gateway, engine):
    for subject in ("status", "UPDATE", "(no subject)", "Re: something", "AW: etwas", "Fwd: a thing"):
        gateway.send(make_mail(body=f"body under {subject}", subject=subject))
    assert [p.body for p in stored_posts(engine)] == [
        "body under status", "body under UPDATE", "body under (no subject)", "body under Re: something",
        "body under AW: etwas", "body under Fwd: a thing"]


def test_subject_alone_is_the_post_when_the_body_is_empty(gateway, engine):
    gateway.send(make_mail(body="\n\n", subject="Deploying the new search today"))
    assert [p.body for p in stored_posts(engine)] == ["Deploying the new search today"]


def test_an_empty_message_is_refused_in_the_dialogue(gateway, engine):
    code, _ = gateway.send(make_mail(body="", subject="status"))
    assert code == 550
    assert stored_posts(engine) == []


def test_the_same_message_id_twice_yields_one_post_and_two_250s(gateway, engine):
    mail = make_mail()
    first = gateway.send(mail)
    second = gateway.send(mail)
    assert first[0] == second[0] == 250
    assert second[1] == replies.OK_DUPLICATE.removeprefix("250 ")
    assert len(stored_posts(engine)) == 1
    with Session(engine) as session:
        rows = session.exec(select(InboundLog).order_by(InboundLog.id)).all()
    # SPEC §3: the redelivery is logged as accepted/duplicate, without a second copy of the bytes.
    assert [(r.outcome, r.reason) for r in rows] == [("accepted", "posted"), ("accepted", "duplicate")]
    assert rows[1].raw is None and rows[1].post_id is None


def test_a_message_without_message_id_is_deduplicated_by_its_bytes(gateway, engine):
    raw = b"From: alice@corp.example\r\nTo: status@corp.example\r\nSubject: x\r\n\r\nno id here\r\n"
    assert gateway.send(raw)[0] == 250
    assert gateway.send(raw)[0] == 250
    assert len(stored_posts(engine)) == 1


def test_an_unknown_sender_of_an_allowed_domain_is_registered(gateway, engine):
    gateway.send(make_mail(sender="Bob Builder <Bob@Corp.Example>"), mail_from="bob@corp.example")
    with Session(engine) as session:
        user = session.exec(select(User).where(User.email == "bob@corp.example")).one()
    assert (user.name, user.handle) == ("Bob Builder", "bob")


def test_a_sender_from_another_domain_is_refused_550_5_7_1(gateway, engine):
    code, reply = gateway.send(make_mail(sender="mallory@evil.example"), mail_from="mallory@evil.example")
    assert code == 550 and reply.startswith("5.7.1")
    assert stored_posts(engine) == []
    with Session(engine) as session:
        [entry] = session.exec(select(InboundLog)).all()
    assert entry.outcome == "refused" and entry.reason == "domain_not_allowed"
    assert entry.raw and b"mallory@evil.example" in entry.raw


def test_a_recipient_that_is_not_ours_is_refused_at_rcpt_and_logged(gateway, engine):
    code, reply = gateway.send(make_mail(), to="someone-else@corp.example")
    assert (code, reply) == (550, replies.REFUSED_RECIPIENT.removeprefix("550 "))
    with Session(engine) as session:
        [entry] = session.exec(select(InboundLog)).all()
    assert entry.reason == "unknown_recipient"


def test_a_281_character_update_is_not_posted_and_the_sender_is_told(gateway, engine, settings):
    text = "x" * 281
    code, _ = gateway.send(make_mail(body=text, subject="status"))
    assert code == 250
    assert stored_posts(engine) == []
    gateway.flush_outbox()
    [notice] = outbox_messages(settings)
    assert notice["To"].addresses[0].addr_spec == "alice@corp.example"
    assert notice["Auto-Submitted"] == "auto-replied"
    for header in ("Message-ID", "In-Reply-To", "List-Id", "List-Unsubscribe", "Thread-Topic", "Thread-Index"):
        assert notice[header], header
    body = notice.get_body(("plain",)).get_content()
    assert "281 characters" in body and "at most 280" in body and "> " + text in body


def test_a_280_character_update_with_a_long_url_is_posted(gateway, engine):
    url = "https://intranet.corp.example/" + "a" * 200
    text = "y" * (280 - 24) + " " + url
    assert gateway.send(make_mail(body=text, subject="status"))[0] == 250
    assert [p.body for p in stored_posts(engine)] == [text]


def test_tags_and_mentions_are_recorded_and_the_mentioned_user_is_mailed(gateway, engine, settings, cli):
    cli("users", "add", "bob@corp.example", "--name", "Bob")
    gateway.send(make_mail(body="Pairing with @bob on #Billing and #ops", subject="status"))
    result = cli("posts", "list", "--json")
    [post] = json.loads(result.stdout)
    assert post["tags"] == ["billing", "ops"] and post["mentions"] == ["bob@corp.example"]
    gateway.flush_outbox()
    [mail] = outbox_messages(settings)
    assert mail["To"].addresses[0].addr_spec == "bob@corp.example"
    assert "Pairing with @bob" in mail.get_body(("plain",)).get_content()


def test_an_untrusted_peer_is_refused_at_mail_from(gateway_with):
    running = gateway_with('trusted_networks = ["10.0.0.0/8"]')
    code, reply = running.send(make_mail())
    assert code == 550 and reply.startswith("5.7.1")
    with Session(running.engine) as session:
        assert session.exec(select(InboundLog.reason)).all() == ["untrusted_peer"]


def test_a_message_over_the_size_limit_is_refused_552_5_3_4(gateway_with):
    running = gateway_with(smtp="max_message_bytes = 2000")
    code, reply = running.send(make_mail(body=("z" * 70 + "\n") * 80))
    assert (code, reply) == (552, replies.REFUSED_TOO_LARGE.removeprefix("552 "))
    with Session(running.engine) as session:
        assert session.exec(select(InboundLog.reason)).all() == ["too_large"]

def test_a_size_declared_too_large_at_mail_from_is_refused_552_and_logged_with_its_sender(gateway_with):
    # RFC 1870 §6: the client declares SIZE= with MAIL; the refusal comes before any
    # envelope exists, and the log still says whose mail it was (SPEC §3).
    running = gateway_with(smtp="max_message_bytes = 2000")
    with running.smtp() as client:
        client.ehlo()
        code, reply = client.mail("alice@corp.example", ["SIZE=5000"])
    assert (code, reply.decode()) == (552, replies.REFUSED_TOO_LARGE.removeprefix("552 "))
    with Session(running.engine) as session:
        [entry] = session.exec(select(InboundLog)).all()
    assert (entry.reason, entry.sender) == ("too_large", "alice@corp.example")


def test_a_robot_is_accepted_silently_never_posted_never_answered(gateway, engine, settings):
    code, _ = gateway.send(make_mail(subject="Out of Office: back Monday", body="I am away"))
    assert code == 250
    code, _ = gateway.send(make_mail(body="auto", Auto_Submitted="auto-replied"))
    assert code == 250
    assert stored_posts(engine) == []
    gateway.flush_outbox()
    assert outbox_messages(settings) == []


def test_a_null_sender_is_never_posted(gateway, engine):
    assert gateway.send(make_mail(), mail_from="")[0] == 250
    assert stored_posts(engine) == []


def test_html_only_mail_is_posted_as_text_without_markup_or_script(gateway, engine):
    msg = make_mail(subject="status")
    msg.set_content("<html><head><script>alert(1)</script></head><body><p>Rolled out <b>v2</b> today</p></body></html>",
                    subtype="html")
    assert gateway.send(msg)[0] == 250
    [post] = stored_posts(engine)
    assert post.body == "Rolled out v2 today"


def test_posts_beyond_the_hourly_limit_are_deferred_451_4_7_1(gateway_with):
    running = gateway_with("posts_per_hour = 2")
    codes = [running.send(make_mail(body=f"update {i}"))[0] for i in range(3)]
    last = running.send(make_mail(body="one more"))
    assert codes == [250, 250, 451]
    assert last[0] == 451 and last[1].startswith("4.7.1")


def test_an_over_long_update_at_the_hourly_limit_is_answered_at_once_not_deferred(gateway_with):
    """posts_per_hour counts posts: mail that would post nothing is not held back an hour
    only to be refused then; its sender hears now (within auto_answers_per_hour)."""
    running = gateway_with("posts_per_hour = 1")
    assert running.send(make_mail(body="update 1"))[0] == 250
    assert running.send(make_mail(body="w " * 200)) == (250, replies.OK_TOO_LONG.removeprefix("250 "))
    running.flush_outbox()
    [notice] = outbox_messages(running.settings)
    assert notice["Subject"] == "Not posted: your update is 419 characters (the limit is 280)"
    assert running.send(make_mail(body="update 2"))[0] == 451


def test_a_line_longer_than_1000_octets_is_refused_and_logged(gateway, engine):
    raw = b"From: alice@corp.example\r\nSubject: status\r\n\r\n" + b"x" * 1200 + b"\r\n"
    code, reply = gateway.send(raw)
    assert (code, reply) == (500, replies.REFUSED_LINE_TOO_LONG.removeprefix("500 "))
    with Session(engine) as session:
        assert session.exec(select(InboundLog.reason)).all() == ["line_too_long"]


def test_lmtp_answers_data_once_per_recipient(gateway_with):
    import socket

    running = gateway_with(smtp="lmtp = true")
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        stream = sock.makefile("rwb")

        def command(line: bytes, replies: int = 1) -> list[bytes]:
            if line:
                stream.write(line + b"\r\n")
                stream.flush()
            answers = []
            while len(answers) < replies:
                answer = stream.readline()
                if answer[3:4] != b"-":
                    answers.append(answer.strip())
            return answers

        assert command(b"")[0].startswith(b"220")
        assert command(b"LHLO mta.corp.example")[0].startswith(b"250")
        assert command(b"MAIL FROM:<alice@corp.example>")[0].startswith(b"250")
        assert command(b"RCPT TO:<status@corp.example>")[0].startswith(b"250")
        assert command(b"RCPT TO:<status-request@corp.example>")[0].startswith(b"250")
        assert command(b"DATA")[0].startswith(b"354")
        body = b"From: alice@corp.example\r\nTo: status@corp.example\r\nSubject: help\r\nMessage-ID: <l1@corp.example>\r\n\r\nhelp\r\n."
        answers = command(body, replies=2)
        assert [a[:3] for a in answers] == [b"250", b"250"]
        assert command(b"QUIT")[0].startswith(b"221")
