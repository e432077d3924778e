"""SPEC §3: a message that cannot be parsed (broken encodings, absurd nesting) is refused
554 5.6.0 and logged once, never answered 4xx; only real charsets decode; parsing is
bounded, and a message beyond a cap is refused before it is fully parsed."""

from __future__ import annotations

import pytest

from statusmail.inbound.incoming import MAX_REFUSED_RAW
from statusmail.inbound.outcome import REFUSED_UNPARSEABLE

HEAD = (b"From: Alice <alice@corp.example>\r\nTo: status@corp.example\r\nMessage-ID: <%s@corp.example>\r\n"
        b"Subject: Weekly numbers\r\n")


def nested_multiparts(depth: int) -> bytes:
    return b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth)) \
        + b"Content-Type: text/plain\r\n\r\nhello\r\n"


def folded(value: bytes) -> bytes:
    """A header value folded into lines of 500 octets (RFC 5322 §2.2.3), as an MTA would pass it."""
    return b"\r\n ".join(value[i:i + 500] for i in range(0, len(value), 500))


UNPARSEABLE = {
    # An encoded word in From that decodes to a line break (a header injection attempt).
    "from-crlf-q": b"From: =?utf-8?q?Alice=0D=0ABcc:_all@corp.example?= <alice@corp.example>\r\n"
                   b"Message-ID: <%s@corp.example>\r\nSubject: hi\r\n\r\nbody\r\n",
    "from-lf-b": b"From: =?utf-8?b?QWxpY2UKQmNjOiBhbGxAY29ycC5leGFtcGxl?= <alice@corp.example>\r\n"
                 b"Message-ID: <%s@corp.example>\r\nSubject: hi\r\n\r\nbody\r\n",
    # UTF-7 is a real charset, but this decodes to a lone surrogate no database takes.
    "subject-utf7-surrogate": b"From: alice@corp.example\r\nMessage-ID: <%s@corp.example>\r\n"
                              b"Subject: =?utf-7?q?+2AA-?=\r\n\r\nbody\r\n",
    "from-utf7-surrogate": b"From: =?utf-7?b?KzJBQS0=?= <alice@corp.example>\r\nMessage-ID: <%s@corp.example>\r\n"
                           b"Subject: hi\r\n\r\nbody\r\n",
    "multipart-2000-deep": HEAD + nested_multiparts(2000),
    "rfc822-2000-deep": HEAD + b"Content-Type: message/rfc822\r\n\r\n" * 2000
                        + b"From: x@corp.example\r\n\r\nhi\r\n",
    "content-type-nested-comments": HEAD + b"Content-Type: text/plain " + folded(b"(" * 5000 + b")" * 5000)
                                    + b"\r\n\r\nhello\r\n",
    "content-type-many-comments": HEAD + b"Content-Type: multipart/mixed; boundary=x " + folded(b"(c)" * 3000)
                                  + b"\r\n\r\n--x\r\n\r\nhello\r\n--x--\r\n",
    "100k-empty-parts": HEAD + b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\n\r\n" * 100_000
                        + b"--a--\r\n",
    "600-header-fields": HEAD + b"".join(b"X-Filler-%d: x\r\n" % i for i in range(600)) + b"\r\nhello\r\n",
    "300-boundaries": HEAD + b"Content-Type: multipart/mixed; boundary=top\r\n\r\n"
                      + b"".join(b"--top\r\nContent-Type: multipart/alternative; boundary=in%d\r\n\r\n--in%d--\r\n"
                                 % (i, i) for i in range(300)) + b"--top--\r\n",
}


@pytest.mark.parametrize("name", list(UNPARSEABLE))
def test_unparseable_mail_is_refused_554_and_logged_once(hostile, name):
    gw = hostile.start()
    raw = UNPARSEABLE[name].replace(b"%s", name.encode())
    code, text = gw.send(raw)
    assert (code, text) == (554, REFUSED_UNPARSEABLE.removeprefix("554 "))
    [entry] = hostile.log()
    assert (entry.outcome, entry.reason) == ("refused", "unparseable")
    # Kept for `statusmail reprocess`, unless it is beyond what a refusal keeps.
    assert entry.detail and entry.raw == (raw if len(raw) <= MAX_REFUSED_RAW else None)
    assert hostile.posts() == [] and hostile.outbox() == []
    # The next, ordinary message of the same sender goes through.
    assert gw.send(HEAD.replace(b"%s", b"next") + b"\r\nAll good\r\n")[0] == 250


def test_the_866000_empty_parts_message_is_refused_before_it_is_parsed(hostile):
    gw = hostile.start()
    raw = HEAD.replace(b"%s", b"big") + b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n" \
        + b"--ab\r\n\r\n\r\n" * 866_000 + b"--ab--\r\n"
    assert len(raw) > 8_600_000
    code, text = gw.send(raw)
    assert (code, text) == (554, REFUSED_UNPARSEABLE.removeprefix("554 "))
    [entry] = hostile.log()
    assert entry.reason == "unparseable" and entry.detail == "more than 200 MIME parts (refused before parsing)"
    assert entry.raw is None  # 8.7 MB refused again and again must not fill the database


PYTHON_CODECS = {
    "body-unicode-escape": (b"Content-Type: text/plain; charset=unicode_escape\r\n\r\nline\\u000aBcc: x \\ud800\r\n",
                            "line\\u000aBcc: x \\ud800"),
    "body-raw-unicode-escape": (b"Content-Type: text/plain; charset=raw_unicode_escape\r\n\r\nx\\ud800y\r\n",
                                "x\\ud800y"),
    "body-utf7-surrogate": (b"Content-Type: text/plain; charset=utf-7\r\n\r\nsee +2AA- here\r\n", "see +2AA- here"),
    "body-idna": (b"Content-Type: text/plain; charset=idna\r\n\r\nxn--caf-dma\r\n", "xn--caf-dma"),
}


@pytest.mark.parametrize("name", list(PYTHON_CODECS))
def test_a_body_in_a_python_only_codec_is_read_as_utf8_not_run_through_the_codec(hostile, name):
    gw = hostile.start()
    headers, expected = PYTHON_CODECS[name]
    raw = HEAD.replace(b"%s", name.encode()).replace(b"Subject: Weekly numbers", b"Subject: status") + headers
    code, text = gw.send(raw)
    assert (code, text) == (250, "2.0.0 OK: posted")
    [post] = hostile.posts()
    assert post.body == expected  # the bytes as UTF-8 text: no escape was interpreted
    [entry] = hostile.log()
    assert entry.outcome == "accepted"


def test_an_encoded_word_in_a_python_only_codec_is_left_undecoded(hostile):
    gw = hostile.start()
    raw = (b"From: =?unicode_escape?q?Mallory\\u000aBcc:_all?= <alice@corp.example>\r\n"
           b"Message-ID: <ue@corp.example>\r\nSubject: =?raw_unicode_escape?q?Hi\\u2028there?=\r\n\r\nbody\r\n")
    code, _ = gw.send(raw)
    assert code == 250
    [post] = hostile.posts()
    assert "\n" not in post.body.split("\n\n")[0] and "\u2028" not in post.body
    assert post.body.startswith("Hi\\u2028there")
    user = hostile.cli("users", "show", "alice@corp.example", "--json").stdout
    assert "\\n" not in user.split('"name"', 1)[1].split(",", 1)[0]
