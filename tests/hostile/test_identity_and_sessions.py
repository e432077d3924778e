"""Limits that could be walked around: sub-addresses (SPEC §5), a reverse-path without a
domain, replies answering replies in one thread (thread_replies_per_hour), someone
else's Message-ID (per-sender dedupe), and one session writing unlimited refusals."""

from __future__ import annotations

import smtplib

import pytest

from statusmail.inbound.outcome import OK_DUPLICATE, OK_HELD, OK_POSTED, OK_REPLIED, REFUSED_SESSION
from tests.conftest import make_mail, outbox_messages


def ok(reply: str) -> tuple[int, str]:
    return 250, reply.removeprefix("250 ")


def test_a_banned_user_cannot_post_again_from_a_sub_address(hostile):
    gw = hostile.start()
    gw.send(make_mail(body="first", subject="status", sender="mallory@corp.example"), mail_from="mallory@corp.example")
    assert hostile.cli("users", "ban", "mallory@corp.example", "--reason", "spam").exit_code == 0
    # Envelope and From both sub-addressed: refused at RCPT, before the message is sent.
    code, text = gw.send(make_mail(body="I am back", subject="status", sender="mallory+again@corp.example"),
                         mail_from="mallory+again@corp.example")
    assert code == 550 and text.startswith("5.7.1")
    # Only the From sub-addressed (the envelope is someone else's): refused at DATA.
    code, text = gw.send(make_mail(body="Still here", subject="status", sender="Mallory <MALLORY+x@corp.example>"),
                         mail_from="relay@corp.example")
    assert code == 550 and text.startswith("5.7.1")
    assert [p.body for p in hostile.posts()] == ["first"]
    assert [e.reason for e in hostile.log()][-2:] == ["banned", "banned"]


def test_sub_addresses_are_one_identity_for_posts_and_rate_limits(hostile):
    gw = hostile.start("posts_per_hour = 2")
    for i, sender in enumerate(("alice+work@corp.example", "Alice <alice+x@corp.example>")):
        assert gw.send(make_mail(body=f"update {i}", subject="status", sender=sender),
                       mail_from="alice@corp.example") == ok(OK_POSTED)
    code, text = gw.send(make_mail(body="third", subject="status", sender="alice+y@corp.example"))
    assert code == 451 and text.startswith("4.7.1")
    users = hostile.cli("users", "list", "--json").stdout
    assert "alice+" not in users
    assert {p.author_id for p in hostile.posts()} == {hostile.posts()[0].author_id}


@pytest.mark.parametrize("reverse_path", ["attacker", "ceo", "corp.example"])
def test_a_reverse_path_without_a_domain_is_refused_like_a_foreign_one(hostile, reverse_path):
    gw = hostile.start()
    code, text = gw.send(make_mail(body="Wire the money today", subject="status", sender="ceo@corp.example"),
                         mail_from=reverse_path)
    assert code == 550 and text.startswith("5.7.1")
    assert hostile.posts() == []
    [entry] = hostile.log()
    assert entry.reason == "not_authenticated" and "has no domain" in entry.detail


def test_replies_beyond_thread_replies_per_hour_are_held_and_mail_nobody(hostile):
    gw = hostile.start("thread_replies_per_hour = 3")
    gw.send(make_mail(body="Out of office until Monday?", subject="status"))
    [root] = hostile.posts()
    answers = []
    for i in range(5):  # an auto-responder nobody recognised, answering every notification
        answers.append(gw.send(make_mail(body=f"Thank you for your message ({i})", subject="Re: x",
                                         sender="robot@corp.example", In_Reply_To=root.message_id),
                               mail_from="robot@corp.example"))
    assert answers == [ok(OK_REPLIED)] * 3 + [ok(OK_HELD)] * 2
    held = [p for p in hostile.posts() if p.status == "held"]
    assert len(held) == 2 and all("thread_replies_per_hour" in p.status_reason for p in held)
    gw.flush_outbox()
    assert len(outbox_messages(hostile.settings)) == 3  # alice heard of the first three only
    # Another thread of the same sender is not capped by this one.
    gw.send(make_mail(body="Second thread", subject="status"))
    other = hostile.posts()[-1]
    assert gw.send(make_mail(body="ok", subject="Re: y", sender="robot@corp.example", In_Reply_To=other.message_id),
                   mail_from="robot@corp.example") == ok(OK_REPLIED)


def test_someone_elses_message_id_does_not_suppress_their_post(hostile):
    gw = hostile.start()
    stolen = "<q3-numbers@corp.example>"
    squat = make_mail(body="squatting", subject="status", sender="mallory@corp.example")
    squat.replace_header("Message-ID", stolen)
    assert gw.send(squat, mail_from="mallory@corp.example") == ok(OK_POSTED)
    mail = make_mail(body="Q3 numbers are in", subject="status")
    mail.replace_header("Message-ID", stolen)
    assert gw.send(mail) == ok(OK_POSTED)
    assert gw.send(mail) == ok(OK_DUPLICATE)  # her own redelivery is still one post
    assert sorted(p.body for p in hostile.posts()) == ["Q3 numbers are in", "squatting"]
    last = hostile.log()[-1]
    assert (last.outcome, last.reason, last.message_id) == ("accepted", "duplicate", stolen)


def refusals_then_close(client: smtplib.SMTP, command: str, argument: str) -> list[int]:
    codes = []
    for _ in range(30):
        try:
            code, text = client.docmd(command, argument)
        except smtplib.SMTPServerDisconnected:
            break
        codes.append(code)
        if code == 421:
            assert text.decode() == REFUSED_SESSION.removeprefix("421 ")
    return codes


def test_an_untrusted_peer_gets_421_after_20_refused_mail_commands_and_one_log_entry(hostile):
    gw = hostile.start('trusted_networks = ["10.0.0.0/8"]')
    with gw.smtp() as client:
        client.ehlo()
        codes = refusals_then_close(client, "MAIL", "FROM:<x@corp.example>")
    assert codes == [550] * 20 + [421]  # and then the connection was closed
    log = hostile.log()
    assert [e.reason for e in log] == ["untrusted_peer"] * 20 + ["too_many_refusals"]
    assert "more than 20 refusals" in log[-1].detail


def test_a_session_probing_unknown_recipients_is_closed_after_20(hostile):
    gw = hostile.start()
    with gw.smtp() as client:
        client.ehlo()
        assert client.mail("alice@corp.example")[0] == 250
        codes = []
        for i in range(30):
            try:
                codes.append(client.docmd("RCPT", f"TO:<nobody{i}@corp.example>")[0])
            except smtplib.SMTPServerDisconnected:
                break
    assert codes == [550] * 20 + [421]
    assert [e.reason for e in hostile.log()] == ["unknown_recipient"] * 20 + ["too_many_refusals"]
    # A new session starts afresh.
    assert gw.send(make_mail(body="hello", subject="status"))[0] == 250
