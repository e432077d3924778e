"""extract_body: choose the body part, decode it whatever it claims, trim it."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.extract import Body, extract_body

from .corpora import CORPORA, corpora_present, corpus_params, new_text_of, normalise

needs_corpora = pytest.mark.skipif(
    not corpora_present(), reason="../shared/corpora is absent (reply corpora not checked out)")
TORTURE = sorted((CORPORA / "mime-torture").rglob("*.eml")) if corpora_present() else []


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def message(*parts: tuple[str, str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = "Re: deploy"
    first, *rest = parts
    msg.set_content(first[1], subtype=first[0])
    for subtype, content in rest:
        msg.add_alternative(content, subtype=subtype)
    return msg


@needs_corpora
@pytest.mark.parametrize("case", corpus_params("talon-standard"))
def test_talon_standard_reply_keeps_exactly_the_new_text(case):
    assert normalise(new_text_of(case)) == normalise(case.expected)


@needs_corpora
@pytest.mark.parametrize("path", TORTURE, ids=[p.name for p in TORTURE])
def test_broken_mime_never_raises(path):
    body = extract_body(parse(path.read_bytes()))
    assert isinstance(body, Body)
    assert "\x00" not in body.text


def test_text_plain_is_preferred_over_html():
    msg = message(("plain", "From plain.\n"), ("html", "<p>From html.</p>"))
    assert extract_body(msg) == Body(text="From plain.", removed="", from_html=False)


def test_html_only_mail_is_converted_and_trimmed():
    msg = message(("html", '<p>Ship it.</p><div class="gmail_quote">Old</div>'))
    body = extract_body(msg)
    assert (body.text, body.from_html) == ("Ship it.", True)
    assert "Old" in body.removed


def test_blank_plain_part_falls_back_to_html():
    msg = message(("plain", "   \n"), ("html", "<p>Ship it.</p>"))
    assert extract_body(msg).text == "Ship it."


def test_quote_and_signature_are_moved_to_removed():
    body = extract_body(message(("plain", "Ship it.\n\n-- \nAlex\n")))
    assert (body.text, body.removed) == ("Ship it.", "-- \nAlex")


def mixed(*parts: EmailMessage) -> EmailMessage:
    msg = EmailMessage()
    msg.make_mixed()
    for part in parts:
        msg.attach(part)
    return msg


def test_text_attachment_is_not_the_body():
    attachment = EmailMessage()
    attachment.set_content("secret log")
    attachment.add_header("Content-Disposition", "attachment", filename="log.txt")
    text = EmailMessage()
    text.set_content("Ship it.")
    assert extract_body(mixed(attachment, text)).text == "Ship it."


def test_attached_message_is_not_the_body():
    forwarded = EmailMessage()
    forwarded.set_content(message(("plain", "Forwarded words.")))
    text = EmailMessage()
    text.set_content("My words.")
    assert extract_body(mixed(forwarded, text)).text == "My words."


def test_unknown_charset_falls_back_without_raising():
    raw = (b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
           b"Caf\xc3\xa9 is open.\r\n")
    assert extract_body(parse(raw)).text == "Café is open."


def test_wrong_declared_charset_falls_back_to_windows_1252():
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\nCaf\xe9 \x80 5\r\n"
    assert extract_body(parse(raw)).text == "Café € 5"


def test_nul_bytes_are_removed():
    raw = b"Content-Type: text/plain\r\n\r\nShip\x00 it.\r\n"
    assert extract_body(parse(raw)).text == "Ship it."


def test_message_without_text_part_has_empty_body():
    msg = EmailMessage()
    msg.set_content(b"\x89PNG", maintype="image", subtype="png")
    assert extract_body(msg) == Body(text="", removed="", from_html=False)


@given(st.binary(max_size=3000))
@settings(max_examples=200, deadline=None)
def test_extract_body_never_raises_on_random_bytes(raw):
    assert isinstance(extract_body(parse(raw)), Body)


_HEADER_LINES = st.sampled_from([
    b"Content-Type: multipart/alternative; boundary=b\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"Content-Type: text/plain; charset=bogus\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%ZZ\r\n",
    b"\r\n", b"--b\r\n", b"--b--\r\n", b"Hello =C3=A9 \xff\r\n", b"SGVsbG8=\r\n",
    b"<p>hi</p><blockquote>old</blockquote>\r\n", b"> quoted\r\n", b"-- \r\n",
])


@given(st.lists(_HEADER_LINES, max_size=60).map(b"".join))
@settings(max_examples=300, deadline=None)
def test_extract_body_never_raises_on_broken_mime_structures(raw):
    assert isinstance(extract_body(parse(raw)), Body)
