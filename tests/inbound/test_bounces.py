"""parse_dsn: delivery status notifications into bounce reports (RFC 3464)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.bounces import BounceReport, parse_dsn

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
TORTURE = CORPORA / "mime-torture"


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def corpus(name: str) -> EmailMessage:
    path = TORTURE / name
    if not path.is_file():
        pytest.skip(f"corpus file {path} is absent (../shared/corpora not laid out)")
    return parse(path.read_bytes())


def dsn(*recipient_blocks: str, report_type: str = "delivery-status") -> EmailMessage:
    blocks = "\r\n\r\n".join(["Reporting-MTA: dns; mx.corp.example", *recipient_blocks])
    raw = (
        "From: MAILER-DAEMON@mx.corp.example\r\n"
        "To: bounce+abc@corp.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Content-Type: multipart/report; report-type={report_type}; boundary=BB\r\n"
        "\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
        f"--BB\r\nContent-Type: message/delivery-status\r\n\r\n{blocks}\r\n"
        "--BB\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n"
        "--BB--\r\n"
    )
    return parse(raw.encode())


def test_permanent_failure_is_a_hard_bounce() -> None:
    msg = dsn(
        "Final-Recipient: rfc822; bob@corp.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@corp.example>: Recipient address rejected"
    )
    assert parse_dsn(msg) == [
        BounceReport(
            "bob@corp.example", "5.1.1", True, "smtp; 550 5.1.1 <bob@corp.example>: Recipient address rejected"
        )
    ]


def test_transient_failure_is_a_soft_bounce() -> None:
    msg = dsn("Final-Recipient: rfc822; bob@corp.example\r\nAction: failed\r\nStatus: 4.2.2")
    assert parse_dsn(msg) == [BounceReport("bob@corp.example", "4.2.2", False, "")]


def test_delay_notice_is_a_soft_bounce_even_with_a_class_5_status() -> None:
    msg = dsn("Final-Recipient: rfc822; bob@corp.example\r\nAction: delayed\r\nStatus: 5.4.7")
    [report] = parse_dsn(msg)
    assert report.hard is False


def test_every_recipient_block_gives_one_report_in_order() -> None:
    msg = dsn(
        "Final-Recipient: rfc822; a@corp.example\r\nAction: failed\r\nStatus: 5.1.1",
        "Final-Recipient: rfc822; b@corp.example\r\nAction: delayed\r\nStatus: 4.4.1",
        "Final-Recipient: rfc822; c@corp.example\r\nAction: delivered\r\nStatus: 2.0.0",
    )
    assert [(r.recipient, r.hard) for r in parse_dsn(msg)] == [("a@corp.example", True), ("b@corp.example", False)]


def test_original_recipient_is_preferred_over_final_recipient() -> None:
    msg = dsn(
        "Original-Recipient: rfc822;bob@corp.example\r\n"
        "Final-Recipient: rfc822;robert.smith@mailhost.corp.example\r\nAction: failed\r\nStatus: 5.2.1"
    )
    assert parse_dsn(msg)[0].recipient == "bob@corp.example"


def test_field_names_and_values_are_case_insensitive_and_folded() -> None:
    msg = dsn(
        "FINAL-RECIPIENT: RFC822; <Bob@corp.example>\r\naction: FAILED (permanent)\r\n"
        "status: 5.7.1 (blocked)\r\ndiagnostic-code: smtp; 554 5.7.1\r\n  rejected by policy"
    )
    assert parse_dsn(msg) == [BounceReport("Bob@corp.example", "5.7.1", True, "smtp; 554 5.7.1 rejected by policy")]


def test_missing_status_is_recovered_from_the_diagnostic_code() -> None:
    msg = dsn("Final-Recipient: rfc822; bob@corp.example\r\nAction: failed\r\nDiagnostic-Code: smtp; 550-5.1.1 no")
    assert parse_dsn(msg)[0].status == "5.1.1"


def test_disposition_notification_is_not_a_bounce() -> None:
    msg = dsn("Final-Recipient: rfc822; bob@corp.example\r\nAction: failed\r\nStatus: 5.1.1",
              report_type="disposition-notification")
    assert parse_dsn(msg) == []


def test_ordinary_mail_is_not_a_dsn() -> None:
    msg = EmailMessage()
    msg["From"] = "alice@corp.example"
    msg.set_content("Final-Recipient: rfc822; bob@corp.example\nAction: failed\nStatus: 5.1.1\n")
    assert parse_dsn(msg) == []


def test_dsn_forwarded_inside_a_human_mail_is_not_a_bounce() -> None:
    outer = EmailMessage()
    outer["From"] = "alice@corp.example"
    outer.set_content("look at this bounce")
    outer.add_attachment(dsn("Final-Recipient: rfc822; bob@corp.example\r\nAction: failed\r\nStatus: 5.1.1"))
    assert parse_dsn(outer) == []


def test_postfix_bounce_from_the_corpus_is_hard() -> None:
    [report] = parse_dsn(corpus("bounce/zed.eml"))
    assert report.recipient == "asdfasdfasdfasdfasdfasdfewrqertrtyrthsfgdfgadfqeadvxzvz@gmail.com"
    assert (report.status, report.hard) == ("5.1.1", True)
    assert report.diagnostic.startswith("smtp; 550-5.1.1 The email account that you tried to reach does not exist.")


def test_office365_bounce_from_the_corpus_is_hard() -> None:
    [report] = parse_dsn(corpus("bounce/office365.eml"))
    assert report == BounceReport(
        "noname@example.com",
        "5.1.10",
        True,
        "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient noname@example.com not found by SMTP address lookup",
    )


def test_aol_mailbox_full_from_the_corpus_is_read_despite_stray_mime_fields() -> None:
    assert parse_dsn(corpus("bounce/mailbox-full.eml")) == [
        BounceReport("user@aol.com", "5.2.2", True, "smtp; 552 5.2.2 E4.12 user MAILBOX FULL")
    ]


@pytest.mark.parametrize(
    ("name", "recipient", "status"),
    [("bounce/delayed.eml", "foo@example.com", "4.0.0"), ("bounce/no-mx.eml", "user@example.com", "4.4.4")],
)
def test_transient_bounces_from_the_corpus_are_soft(name: str, recipient: str, status: str) -> None:
    [report] = parse_dsn(corpus(name))
    assert (report.recipient, report.status, report.hard) == (recipient, status, False)


def test_bare_delivery_status_body_from_the_corpus_is_read() -> None:
    assert parse_dsn(corpus("bounce/delayed-broken.eml")) == [BounceReport("demo@example.com", "4.2.2", False, "")]


@pytest.mark.parametrize(
    "name",
    [
        "bounce/gmail-invalid-address.eml",  # prose, not a DSN: no fallback by design
        "bounce/gmail-no-dns.eml",
        "bounce/broken-mime.eml",
        "complaints/aol.eml",  # feedback reports are not bounces
        "complaints/yahoo.eml",
        "disposition-notification.eml",
    ],
)
def test_corpus_messages_that_are_not_dsns_give_no_reports(name: str) -> None:
    assert parse_dsn(corpus(name)) == []


def test_whole_torture_corpus_never_raises() -> None:
    if not TORTURE.is_dir():
        pytest.skip(f"corpus folder {TORTURE} is absent")
    paths = sorted(TORTURE.rglob("*.eml"))
    assert paths
    for path in paths:
        assert isinstance(parse_dsn(parse(path.read_bytes())), list), path.name


field_line = st.tuples(
    st.sampled_from(["Final-Recipient", "Original-Recipient", "Action", "Status", "Diagnostic-Code", "X"]),
    st.text(alphabet=st.sampled_from(list("rfc822;<>@.a5 4.1-failed delayed\t()")), max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(st.lists(field_line, max_size=5), max_size=4))
def test_parse_dsn_never_raises_on_random_fields(blocks: list[list[tuple[str, str]]]) -> None:
    texts = ["\r\n".join(f"{name}: {value}" for name, value in block) for block in blocks if block]
    for report in parse_dsn(dsn(*texts)):
        assert isinstance(report, BounceReport)
        assert not report.hard or report.status.startswith("5.")


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=600))
def test_parse_dsn_never_raises_on_arbitrary_bytes(body: bytes) -> None:
    raw = b"Content-Type: multipart/report; report-type=delivery-status; boundary=BB\r\n\r\n--BB\r\n" + body
    assert isinstance(parse_dsn(parse(raw)), list)
