"""Hostile and broken input: every message ends in a logged decision, nothing raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from statusmail.inbound.envelope import Envelope
from statusmail.inbound.pipeline import run
from statusmail.store.models import InboundLog
from tests.conftest import CORPORA

TORTURE = CORPORA / "mime-torture"
TORTURE_FILES = sorted(p for p in TORTURE.glob("*") if p.is_file() and p.suffix in (".eml", ".msg", "")) \
    if TORTURE.is_dir() else []


def log_entries(engine) -> list[InboundLog]:
    with Session(engine) as session:
        return list(session.exec(select(InboundLog)))


@pytest.mark.skipif(not TORTURE_FILES, reason="../shared/corpora/mime-torture is absent")
@pytest.mark.parametrize("path", TORTURE_FILES, ids=lambda p: p.name)
def test_every_torture_message_gets_a_logged_decision(path: Path, settings, engine):
    raw = path.read_bytes()
    outcome = run(raw, Envelope(mail_from="alice@corp.example", rcpt_tos=("status@corp.example",), source="inject"),
                  settings, engine)
    assert outcome.status in ("accepted", "held", "refused")
    assert outcome.reason.name != "INTERNAL_ERROR", outcome.detail
    [entry] = log_entries(engine)
    assert entry.outcome == outcome.status and entry.raw == raw


HEADER_NAMES = st.sampled_from(["From", "To", "Subject", "Content-Type", "Content-Transfer-Encoding", "Message-ID",
                                "In-Reply-To", "References", "Auto-Submitted", "Precedence", "List-Id",
                                "Authentication-Results", "X-Whatever", "MIME-Version"])
HEADER_BYTES = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b" "))


@st.composite
def mime_trees(draw, depth: int = 0) -> bytes:
    """Random, often invalid, MIME: nested multiparts, odd charsets and encodings, junk bytes."""
    headers = [b"From: " + draw(st.sampled_from([b"alice@corp.example", b"<>", b"=?utf-8?q?x?= <a@b>", b"", b"a@corp.example, b@corp.example"]))]
    for _ in range(draw(st.integers(0, 4))):
        headers.append(draw(HEADER_NAMES).encode() + b": " + draw(HEADER_BYTES))
    if depth < 3 and draw(st.booleans()):
        boundary = draw(st.sampled_from([b"b1", b"", b"==x==", b"b1"]))
        headers.append(b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"alternative", b"report", b"x"]))
                       + b'; boundary="' + boundary + b'"')
        parts = [draw(mime_trees(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
        body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
        if draw(st.booleans()):
            body += b"--" + boundary + b"--\r\n"
    else:
        headers.append(b"Content-Type: text/" + draw(st.sampled_from([b"plain", b"html"])) + b"; charset="
                       + draw(st.sampled_from([b"utf-8", b"x-unknown", b"iso-8859-1", b"utf-7", b'"', b"windows-1252"])))
        headers.append(b"Content-Transfer-Encoding: " + draw(st.sampled_from([b"base64", b"quoted-printable", b"8bit", b"x"])))
        body = draw(st.binary(max_size=300))
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
@given(raw=st.one_of(mime_trees(), st.binary(max_size=500)))
def test_the_pipeline_never_raises_and_always_logs_a_decision(raw, settings, engine):
    before = len(log_entries(engine))
    outcome = run(raw, Envelope(mail_from="alice@corp.example", rcpt_tos=("status@corp.example",), source="inject"),
                  settings, engine)
    assert outcome.reason.name != "INTERNAL_ERROR", outcome.detail
    after = len(log_entries(engine))
    assert after == before + 1 or outcome.reason.name == "DUPLICATE"


def test_nul_bytes_are_removed_before_posting(settings, engine):
    raw = b"From: alice@corp.example\r\nSubject: status\r\nMessage-ID: <nul@x>\r\n\r\nDeploy\x00ed the fix\r\n"
    outcome = run(raw, Envelope(mail_from="alice@corp.example", rcpt_tos=("status@corp.example",)), settings, engine)
    assert outcome.status == "accepted"
    from statusmail.store.models import Post
    with Session(engine) as session:
        assert session.get(Post, outcome.post_id).body == "Deployed the fix"


def test_a_message_without_any_header_is_refused_as_unparseable(settings, engine):
    outcome = run(b"\r\n\r\njust a body", Envelope(mail_from="alice@corp.example", rcpt_tos=("status@corp.example",)),
                  settings, engine)
    assert (outcome.status, outcome.reason.name) == ("refused", "UNPARSEABLE")


def test_two_from_mailboxes_are_refused(settings, engine):
    raw = b"From: alice@corp.example, bob@corp.example\r\nSubject: status\r\n\r\nhello\r\n"
    outcome = run(raw, Envelope(mail_from="alice@corp.example", rcpt_tos=("status@corp.example",)), settings, engine)
    assert (outcome.status, outcome.reason.name) == ("refused", "NOT_AUTHENTICATED")
