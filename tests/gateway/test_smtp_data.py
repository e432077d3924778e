"""DATA as the gateway reads it (gateway/smtpdata.py), over a raw socket on loopback.

The message is read in chunks of whatever the socket delivered, so these send it the
ways a chunk can fall: the end of data split over several writes, the end and the next
commands in one write (RFC 2920 pipelining), dot-stuffed lines (RFC 5321 §4.5.2), and
the limits that make the answer come only after the end of data.
"""

from __future__ import annotations

import socket
import time

import pytest
from sqlmodel import Session, select

from statusmail.inbound import outcome as replies
from statusmail.store.models import InboundLog, Post

HEAD = (b"From: Alice <alice@corp.example>\r\nTo: status@corp.example\r\nSubject: Rollout\r\n"
        b"Message-ID: <%s@corp.example>\r\n\r\n")


class Client:
    """An SMTP client that writes exactly the bytes it is given, in the writes it is given."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
        self.replies = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        while True:
            line = self.replies.readline()
            if line[3:4] != b"-":
                return line.rstrip(b"\r\n")

    def write(self, *pieces: bytes, pause: float = 0.02) -> None:
        for piece in pieces:
            self.sock.sendall(piece)
            time.sleep(pause)  # so the listener reads each piece on its own

    def start(self, sender: bytes = b"alice@corp.example") -> None:
        for command in (b"EHLO client.example", b"MAIL FROM:<" + sender + b">", b"RCPT TO:<status@corp.example>"):
            self.write(command + b"\r\n", pause=0)
            assert self.reply().startswith(b"250"), command
        self.write(b"DATA\r\n", pause=0)
        assert self.reply().startswith(b"354")

    def close(self) -> None:
        self.replies.close()
        self.sock.close()


@pytest.fixture
def client(gateway):
    opened = Client(gateway.port)
    yield opened
    opened.close()


def posts(engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Post.body).order_by(Post.id)))


def log_rows(engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(row.reason, row.detail) for row in session.exec(select(InboundLog).order_by(InboundLog.id))]


@pytest.mark.parametrize("split", [1, 2, 3, 4], ids=lambda n: f"end split after {n} octets")
def test_the_end_of_data_split_over_writes_is_seen_once_it_is_whole(client, engine, split):
    end = b"\r\n.\r\n"
    client.start()
    client.write(HEAD % b"split" + b"Shipped the rollout", end[:split], end[split:])
    assert client.reply() == replies.OK_POSTED.encode()
    assert posts(engine) == ["Rollout\n\nShipped the rollout"]


def test_the_end_alone_in_a_write_after_a_line_end(client, engine):
    client.start()
    client.write(HEAD % b"alone" + b"Shipped it\r\n", b".\r\n")
    assert client.reply() == replies.OK_POSTED.encode()
    assert posts(engine) == ["Rollout\n\nShipped it"]


def test_commands_pipelined_after_the_end_are_answered_in_order(client, engine):
    """RFC 2920: the next transaction may follow the end of data in the same write."""
    client.start()
    client.write(HEAD % b"first" + b"First update\r\n.\r\n"
                 b"MAIL FROM:<alice@corp.example>\r\nRCPT TO:<status@corp.example>\r\nDATA\r\n")
    assert client.reply() == replies.OK_POSTED.encode()
    assert client.reply().startswith(b"250")  # MAIL
    assert client.reply().startswith(b"250")  # RCPT
    assert client.reply().startswith(b"354")
    client.write(HEAD.replace(b"Rollout", b"Second") % b"second" + b"Second update\r\n.\r\nQUIT\r\n")
    assert client.reply() == replies.OK_POSTED.encode()
    assert client.reply().startswith(b"221")
    assert posts(engine) == ["Rollout\n\nFirst update", "Second\n\nSecond update"]


def test_dot_stuffed_lines_are_stored_with_one_dot_less(client, engine):
    client.start()
    client.write(HEAD % b"dots" + b"..env moved to the vault\r\n...and the keys rotated\r\n.\r\n")
    assert client.reply() == replies.OK_POSTED.encode()
    assert posts(engine) == ["Rollout\n\n.env moved to the vault\n..and the keys rotated"]


def test_an_empty_message_is_refused_and_the_session_goes_on(client, engine):
    client.start()
    client.write(b".\r\n")
    assert client.reply().startswith(b"554 5.6.0")
    assert [reason for reason, _ in log_rows(engine)] == ["unparseable"]
    client.write(b"NOOP\r\n")
    assert client.reply().startswith(b"250")


def test_a_message_over_the_size_limit_is_read_to_its_end_and_refused_552(gateway_with):
    running = gateway_with(smtp="max_message_bytes = 100000")
    client = Client(running.port)
    try:
        client.start()
        line = b"x" * 78 + b"\r\n"
        client.write(HEAD % b"big", line * 1000, line * 1000, b"\r\n.\r\n")
        assert client.reply() == replies.REFUSED_TOO_LARGE.encode()
        client.write(b"NOOP\r\n")
        assert client.reply().startswith(b"250")  # the rest of the data was not taken as commands
        assert [reason for reason, _ in log_rows(running.engine)] == ["too_large"]
    finally:
        client.close()


@pytest.mark.parametrize("line", [b"x" * 1200, b"short\n" + b"x" * 1200, b"x" * 1200 + b"\rshort"],
                         ids=["plain", "after a bare LF", "before a bare CR"])
def test_a_line_over_1000_octets_is_refused_500(client, engine, line):
    client.start()
    client.write(HEAD % b"long" + b"Shipped\r\n" + line + b"\r\n.\r\n")
    assert client.reply() == replies.REFUSED_LINE_TOO_LONG.encode()
    assert [reason for reason, _ in log_rows(engine)] == ["line_too_long"]
    assert posts(engine) == []


@pytest.mark.parametrize("line", [b"Shipped " + b"x" * 991, b"x" * 900 + b"\n" + b"y" * 900],
                         ids=["999 octets", "two lines of 900 split by a bare LF"])
def test_lines_within_the_limit_are_not_refused_for_it(client, engine, line):
    """Lines end at CR or LF for the limit, as Postfix counts them."""
    client.start()
    client.write(HEAD % b"999" + line + b"\r\n.\r\n")
    assert client.reply().startswith(b"250")
    assert "line_too_long" not in [reason for reason, _ in log_rows(engine)]


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"], ids=["LF.LF", "CRLF.LF", "LF.CRLF"])
def test_only_crlf_dot_crlf_ends_the_data_so_no_message_is_smuggled(client, engine, fake_end):
    """SMTP smuggling (CVE-2023-51766 and kin): a second transaction hidden behind a
    non-standard end of data must stay part of the first message."""
    client.start()
    smuggled = (b"MAIL FROM:<mallory@corp.example>\r\nRCPT TO:<status@corp.example>\r\nDATA\r\n"
                + HEAD.replace(b"Alice <alice", b"Bob <bob").replace(b"Rollout", b"Smuggled") % b"smuggled"
                + b"Smuggled post")
    client.write(HEAD % b"carrier" + b"Shipped it" + fake_end + smuggled + b"\r\n.\r\n")
    assert client.reply().startswith(b"250")
    client.write(b"NOOP\r\n")
    assert client.reply().startswith(b"250")
    assert len(log_rows(engine)) == 1  # one message: the carrier, whatever became of it
    assert not any(body.startswith("Smuggled") for body in posts(engine))
