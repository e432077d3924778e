"""robot_reason: which mail is machine-sent (SPEC §3 Loops, RFC 3834)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.robots import robot_reason

HUMAN = "alice@corp.example"
CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"


def human_mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@corp.example>"
    msg["To"] = "status@corp.example"
    msg["Subject"] = "Shipped the billing export"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Done, see #billing")
    return msg


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_ordinary_mail_from_a_person_is_not_a_robot() -> None:
    assert robot_reason(human_mail(), HUMAN) is None


@pytest.mark.parametrize("sender", ["", "<>", "  <> "])
def test_null_envelope_sender_is_a_robot(sender: str) -> None:
    assert robot_reason(human_mail(), sender) == "null envelope sender"


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@corp.example",
        "mailer-daemon",
        "postmaster@corp.example",
        "<no-reply@corp.example>",
        "NoReply@corp.example",
        "do-not-reply@corp.example",
        "noreply+bounces@corp.example",
    ],
)
def test_machine_envelope_sender_is_a_robot(sender: str) -> None:
    assert (robot_reason(human_mail(), sender) or "").startswith("robot envelope sender ")


def test_no_reply_from_address_is_a_robot_even_with_a_human_envelope() -> None:
    msg = human_mail()
    msg.replace_header("From", "Jira <no-reply@jira.corp.example>")
    assert robot_reason(msg, HUMAN) == "robot From address no-reply"


def test_a_local_part_merely_containing_noreply_is_not_a_robot() -> None:
    assert robot_reason(human_mail(), "noreplyfan@corp.example") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("auto-replied", "Auto-Submitted: auto-replied"),
        ("auto-generated", "Auto-Submitted: auto-generated"),
        ("Auto-Replied (vacation)", "Auto-Submitted: auto-replied"),
        ("auto-notified; owner-email=x@corp.example", "Auto-Submitted: auto-notified"),
        ("(comment) auto-generated", "Auto-Submitted: auto-generated"),
    ],
)
def test_auto_submitted_other_than_no_is_a_robot(value: str, reason: str) -> None:
    assert robot_reason(human_mail(Auto_Submitted=value), HUMAN) == reason


@pytest.mark.parametrize("value", ["no", "No", "no (sent by a person)", " no "])
def test_auto_submitted_no_is_not_a_robot(value: str) -> None:
    assert robot_reason(human_mail(Auto_Submitted=value), HUMAN) is None


@pytest.mark.parametrize("value", ["bulk", "junk", "list", "auto_reply", "BULK", "bulk (newsletter)"])
def test_bulk_precedence_is_a_robot(value: str) -> None:
    assert robot_reason(human_mail(Precedence=value), HUMAN) == f"Precedence: {value.split()[0].lower()}"


def test_first_class_precedence_is_not_a_robot() -> None:
    assert robot_reason(human_mail(Precedence="first-class"), HUMAN) is None


@pytest.mark.parametrize(
    "header",
    [
        "X-Autoreply",
        "X-Autorespond",
        "X-MS-Exchange-Inbox-Rules-Loop",
        "X-MS-Exchange-Generated-Message-Source",
        "X-Failed-Recipients",
    ],
)
def test_auto_responder_marker_headers_are_robots(header: str) -> None:
    msg = human_mail()
    msg[header] = "yes"
    assert robot_reason(msg, HUMAN) == f"{header} header"


def test_x_auto_response_suppress_is_not_a_robot_marker() -> None:
    assert robot_reason(human_mail(X_Auto_Response_Suppress="All"), HUMAN) is None


@pytest.mark.parametrize("header", ["List-Id", "List-Unsubscribe", "List-Post", "list-help"])
def test_any_list_header_is_a_robot(header: str) -> None:
    msg = human_mail()
    msg[header] = "<eng.lists.corp.example>"
    assert robot_reason(msg, HUMAN) == f"{header} header"


def test_top_level_multipart_report_is_a_robot() -> None:
    raw = (
        b"From: Alice <alice@corp.example>\r\n"
        b"Subject: Read: hello\r\n"
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n"
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nread\r\n--b--\r\n"
    )
    assert robot_reason(parse(raw), HUMAN) == "multipart/report"


def test_a_report_attached_inside_a_human_mail_is_not_a_robot() -> None:
    msg = human_mail()
    msg.add_attachment(b"x", maintype="application", subtype="octet-stream")
    assert robot_reason(msg, HUMAN) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Shipped the billing export",
        "OUT OF OFFICE AutoReply",
        "Out of office - back Monday",
        "Automatic reply: status",
        "Auto: status",
        "AutoReply: status",
        "Autosvar: status",
        "Abwesenheitsnotiz: status",
        "Automatische Antwort: status",
        "Réponse automatique : status",
        "Respuesta automática: status",
        "Risposta automatica: status",
        "Automatisch antwoord: status",
        "Frånvaro: status",
        "Resposta automática: status",
        "Automatiskt svar: status",
        "  Automatic Reply: leading space",
    ],
)
def test_auto_reply_subject_is_a_robot(subject: str) -> None:
    msg = human_mail()
    msg.replace_header("Subject", subject)
    assert robot_reason(msg, HUMAN) == "auto-reply subject"


def test_rfc2047_encoded_auto_reply_subject_is_a_robot() -> None:
    raw = (
        b"From: alice@corp.example\r\n"
        b"Subject: =?utf-8?q?R=C3=A9ponse_automatique=C2=A0:_status?=\r\n"
        b"\r\nbody\r\n"
    )
    assert robot_reason(parse(raw), HUMAN) == "auto-reply subject"


@pytest.mark.parametrize(
    "subject",
    ["Re: Out of Office: planning", "Automating the release", "Autumn offsite", "Office move done"],
)
def test_subjects_that_only_mention_auto_replies_are_not_robots(subject: str) -> None:
    msg = human_mail()
    msg.replace_header("Subject", subject)
    assert robot_reason(msg, HUMAN) is None


def test_malformed_headers_do_not_raise() -> None:
    raw = (
        b"From: <<<@@@>>>, \"unterminated\r\n"
        b"To: ;;;:\r\n"
        b"Subject: =?bogus?x?zzz?=\r\n"
        b"Auto-Submitted: ((((\r\n"
        b"Message-ID: <<<\r\n"
        b"Content-Type: multipart/; boundary=\r\n"
        b"\r\nbody\r\n"
    )
    assert robot_reason(parse(raw), HUMAN) == "Auto-Submitted: (empty)"


def test_corpus_bounces_are_robots_even_with_a_non_null_envelope() -> None:
    folder = CORPORA / "mime-torture" / "bounce"
    if not folder.is_dir():
        pytest.skip(f"corpus folder {folder} is absent")
    for path in sorted(folder.glob("*.eml")):
        if path.name == "delayed-broken.eml":
            continue  # a bare delivery-status part without sender headers
        msg = parse(path.read_bytes())
        assert robot_reason(msg, HUMAN) is not None, path.name


header_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                ["From", "Subject", "Auto-Submitted", "Precedence", "Content-Type", "To", "List-Id", "X-Foo"]
            ),
            header_text,
        ),
        max_size=8,
    ),
    sender=header_text,
)
def test_robot_reason_never_raises_on_arbitrary_headers(headers: list[tuple[str, str]], sender: str) -> None:
    lines = b"".join(
        name.encode() + b": " + value.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogateescape") + b"\r\n"
        for name, value in headers
    )
    result = robot_reason(parse(lines + b"\r\nbody\r\n"), sender)
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=600))
def test_robot_reason_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = robot_reason(parse(raw), HUMAN)
    assert result is None or isinstance(result, str)
