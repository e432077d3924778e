"""Generated hostile mail over SMTP (hypothesis): nested MIME, mixed and fake charsets,
encoded words, whitespace-heavy bodies. Every message ends in a final answer (2xx or
5xx, never 4xx: posts_per_hour is out of reach here), leaves exactly one log row, and
the listener answers the next session at once."""

from __future__ import annotations

import base64
import quopri
import uuid

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

CHARSETS = ["utf-8", "utf-7", "iso-8859-1", "koi8-r", "shift_jis", "utf-16", "windows-1252",
            "unicode_escape", "raw_unicode_escape", "idna", "x-unknown", "punycode"]
PIECES = list("ab @#\n\t") + ["\u3000", "\u2800", "\u200b", "\u00ad", "\u00a0", "\u3164", "\\u000a", "+2AA-", "=?",
                              "\u0421", "é", "https://x.example/", "@bob", "\r\n.\r\n"]
BLANKY = st.lists(st.sampled_from(PIECES), max_size=200).map("".join)


def encode_text(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except (UnicodeError, LookupError):
        return text.encode("utf-8", "replace")


@st.composite
def leaf(draw) -> bytes:
    charset = draw(st.sampled_from(CHARSETS))
    body = encode_text(draw(BLANKY), charset) * draw(st.sampled_from([1, 1, 50]))
    cte = draw(st.sampled_from(["base64", "quoted-printable", "8bit"]))
    if cte == "base64":
        body = base64.encodebytes(body)
    elif cte == "quoted-printable":
        body = quopri.encodestring(body)
    else:
        body = b"\r\n".join(body[i:i + 200] for i in range(0, len(body), 200))
    subtype = draw(st.sampled_from(["plain", "plain", "html"]))
    return (f"Content-Type: text/{subtype}; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
            + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def tree(depth: int):
    if depth == 0:
        return leaf()
    return st.one_of(leaf(), multipart(depth))


@st.composite
def multipart(draw, depth: int) -> bytes:
    boundary = f"b{depth}x{draw(st.integers(0, 9))}"
    parts = draw(st.lists(tree(depth - 1), max_size=4))
    kind = draw(st.sampled_from(["mixed", "alternative", "related"]))
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    if draw(st.booleans()):
        body += b"--" + boundary.encode() + b"--\r\n"
    return f'Content-Type: multipart/{kind}; boundary="{boundary}"\r\n\r\n'.encode() + body


@st.composite
def messages(draw) -> bytes:
    charset = draw(st.sampled_from(CHARSETS))
    word = base64.b64encode(encode_text(draw(BLANKY)[:60], charset)).decode()
    subject = draw(st.sampled_from([f"=?{charset}?b?{word}?=", "status", "Weekly update", f"Re: =?{charset}?b?{word}?="]))
    name = draw(st.sampled_from(["Alice", f"=?{charset}?b?{word}?="]))
    head = (f"From: {name} <alice@corp.example>\r\nTo: status@corp.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@corp.example>\r\nMIME-Version: 1.0\r\n").encode()
    return head + draw(tree(draw(st.integers(0, 4))))


@hypothesis_settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large])
@given(raw=messages())
def test_generated_mail_gets_a_final_answer_and_the_listener_stays_responsive(hostile, raw):
    gw = hostile.running or hostile.start("posts_per_hour = 1000000\nauto_answers_per_hour = 1000000")
    before = len(hostile.log())
    code, text = gw.send(raw)
    assert code // 100 in (2, 5), (code, text)
    assert len(hostile.log()) == before + 1
    with gw.smtp() as client:
        assert client.noop()[0] == 250
