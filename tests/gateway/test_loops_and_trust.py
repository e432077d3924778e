"""Robots, bounces, loops and sender authentication through the whole gateway (SPEC §3 Loops, §5)."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage

import pytest
from sqlmodel import Session, select

from statusmail.config import load_settings
from statusmail.store.db import make_engine, upgrade
from statusmail.store.models import Bounce, InboundLog, Post, User
from tests.conftest import make_mail, outbox_messages, write_config


def post_count(engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(Post)).all())


@pytest.mark.parametrize("headers", [
    {"Auto_Submitted": "auto-generated"},
    {"Precedence": "bulk"},
    {"X_Autoreply": "yes"},
    {"X_Autorespond": "yes"},
    {"List_Id": "<status.corp.example>"},
    {"X_MS_Exchange_Inbox_Rules_Loop": "alice@corp.example"},
])
def test_robot_headers_mean_never_posted_never_answered(gateway, engine, settings, headers):
    assert gateway.send(make_mail(**headers))[0] == 250
    assert post_count(engine) == 0
    with Session(engine) as session:
        [entry] = session.exec(select(InboundLog)).all()
    assert entry.reason == "robot"


@pytest.mark.parametrize("subject", ["Automatic reply: Billing", "Abwesenheitsnotiz: Urlaub", "Réponse automatique",
                                     "Respuesta automática: vacaciones", "Autosvar: semester"])
def test_out_of_office_subjects_are_robots(gateway, engine, subject):
    assert gateway.send(make_mail(subject=subject, body="I am away until Monday")) == (250, "2.0.0 OK")
    assert post_count(engine) == 0
    with Session(engine) as session:
        assert session.exec(select(InboundLog.reason)).all() == ["robot"]


def test_x_auto_response_suppress_is_not_a_robot_marker(gateway, engine):
    assert gateway.send(make_mail(X_Auto_Response_Suppress="All")) == (250, "2.0.0 OK: posted")
    assert post_count(engine) == 1


def test_an_unrecognised_responder_gets_at_most_the_hourly_cap_of_answers(gateway_with):
    running = gateway_with("auto_answers_per_hour = 1")
    # A robot without any marker, answering each of our notices with a long text.
    for i in range(4):
        running.send(make_mail(body=f"Thank you for your message {i}. " * 20, subject="Thanks"))
    running.flush_outbox()
    assert len(outbox_messages(running.settings)) == 1

def dsn_for(bounce_to: str, recipient: str, status: str) -> bytes:
    """An RFC 3464 delivery status notification as Postfix writes one."""
    return (f"From: MAILER-DAEMON@mx.corp.example (Mail Delivery System)\r\n"
            f"To: {bounce_to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: {email.utils.make_msgid(domain='mx.corp.example')}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            f"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            f"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.corp.example\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; 550 {status} no such user\r\n--B--\r\n").encode()


def test_hard_bounces_to_the_verp_address_are_recorded_and_suspend_after_three(gateway, engine, settings, cli):
    cli("users", "add", "bob@corp.example")
    for i in range(3):
        gateway.send(make_mail(body=f"ping @bob {i}", subject="status"))
    gateway.flush_outbox()
    notifications = outbox_messages(settings)
    assert len(notifications) == 3
    for mail in notifications:
        bounce_to = mail["Return-Path"].strip("<>")
        assert bounce_to.startswith("status+bounce-") and bounce_to.endswith("@corp.example")
        assert gateway.send(dsn_for(bounce_to, "bob@corp.example", "5.1.1"), mail_from="", to=bounce_to)[0] == 250
    with Session(engine) as session:
        assert len(session.exec(select(Bounce).where(Bounce.hard)).all()) == 3
        bob = session.exec(select(User).where(User.email == "bob@corp.example")).one()
        assert bob.mail_suspended and bob.hard_bounces == 3
    assert post_count(engine) == 3  # bounces are never posted
    gateway.send(make_mail(body="another @bob", subject="status"))
    gateway.flush_outbox()
    assert len(outbox_messages(settings)) == 3  # suspended: no more mail to bob
    assert cli("users", "set", "bob@corp.example", "--reset-bounces").exit_code == 0


AUTHRES_CONFIG = 'sender_auth = "authres"\nauthserv_id = "mx.corp.example"'


@pytest.fixture
def authres_gateway(gateway_with):
    return gateway_with(AUTHRES_CONFIG)

def with_authres(*values: str) -> EmailMessage:
    msg = make_mail()
    for value in values:
        msg["Authentication-Results"] = value
    # Authentication-Results are prepended by each MTA: the first one in the header block is the topmost.
    return msg


def test_authres_mode_accepts_dmarc_pass_from_our_mta(authres_gateway):
    code, _ = authres_gateway.send(with_authres("mx.corp.example; dmarc=pass header.from=corp.example"))
    assert code == 250


def test_authres_mode_refuses_a_forged_header_below_ours(authres_gateway):
    code, reply = authres_gateway.send(with_authres(
        "mx.corp.example; dmarc=fail header.from=corp.example",
        "mx.corp.example; dmarc=pass header.from=corp.example"))
    assert code == 550 and reply.startswith("5.7.1")


def test_authres_mode_refuses_results_from_a_foreign_server(authres_gateway):
    code, _ = authres_gateway.send(with_authres("mx.evil.example; dmarc=pass header.from=corp.example"))
    assert code == 550


def test_authres_mode_refuses_mail_without_results(authres_gateway):
    assert authres_gateway.send(make_mail())[0] == 550


def test_an_envelope_sender_outside_the_from_organization_is_refused(gateway, engine):
    code, reply = gateway.send(make_mail(), mail_from="bounces@mailer.evil.example")
    assert code == 550 and reply.startswith("5.7.1")
    with Session(engine) as session:
        [entry] = session.exec(select(InboundLog)).all()
    assert "envelope sender domain mailer.evil.example" in entry.detail


def test_an_envelope_sender_in_a_subdomain_of_the_organization_is_fine(gateway):
    assert gateway.send(make_mail(), mail_from="alice@eu.corp.example") == (250, "2.0.0 OK: posted")

def test_over_imap_an_unauthenticated_post_is_held_not_refused(tmp_path, sqlite_url):
    from statusmail.inbound.envelope import Envelope
    from statusmail.inbound.pipeline import run

    settings = load_settings(str(write_config(tmp_path, sqlite_url, AUTHRES_CONFIG)), environ={})
    engine = make_engine(sqlite_url)
    upgrade(engine)
    imap = Envelope(mail_from="alice@corp.example", source="imap", notes=("hold-unauthenticated",))
    outcome = run(make_mail(body="no Authentication-Results here").as_bytes(), imap, settings, engine)
    assert (outcome.status, outcome.reason.name) == ("held", "HELD")
    assert "sender not authenticated" in outcome.detail
    long_one = run(make_mail(body="z " * 200, subject="status").as_bytes(), imap, settings, engine)
    assert long_one.reason.name == "TOO_LONG"
    with Session(engine) as session:
        assert session.get(Post, outcome.post_id).status == "held"
        from statusmail.store.models import Outbox
        assert session.exec(select(Outbox)).all() == []  # a possibly forged sender is never answered
    smtp = Envelope(mail_from="alice@corp.example", rcpt_tos=("status@corp.example",), source="smtp")
    assert run(make_mail(body="over smtp").as_bytes(), smtp, settings, engine).reason.name == "NOT_AUTHENTICATED"
    engine.dispose()
