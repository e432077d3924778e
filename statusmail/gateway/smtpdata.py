"""The message after DATA, read in chunks: its bytes at C speed, never one line per turn.

aiosmtpd's ``smtp_DATA`` awaits one ``readuntil(CRLF)`` per line and appends each line to
a list. The loop is shared by every session, so a message of many short lines holds all
of them: 8.7 MB of 866,000 empty MIME parts (2.6 million lines) cost the listener about
4 s and 700 MiB, and ordinary posts in other sessions waited behind it
(``bench/hostile.py``). Here each turn takes whatever the socket has delivered, looks for
the end of data with ``bytes.find`` and keeps it in one buffer; the line and size limits
are checked with scans in C once the end is seen (about 10 ms for a 10 MiB message).

RFC 5321 §4.5.2: the data ends with CRLF "." CRLF, and the client doubled the leading
"." of any line that had one (transparency), which is undone here. §4.5.3.1.6: the text
line limit; aiosmtpd's own ``line_length_limit`` (1001 octets with the CRLF) is kept, so
no message it accepted is refused now.
"""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP

END = b"\r\n.\r\n"
LINE_START = b"\r\n"  # the data begins at a line start, so an empty message is ".\r\n"
# read(n) returns at most what the reader holds; with n beyond any buffer it takes all of
# it, so the bytes after the end (a pipelined QUIT, RFC 2920) can be given back in order.
EVERYTHING = 1 << 30
# The replies aiosmtpd gives for these, which GatewaySMTP.push recognises and logs.
TOO_MUCH = "552 Error: Too much mail data"
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
# A bytes.translate table: CR and LF to LF, every other octet to "a".
LINE_BREAKS = bytes(ord("\n") if octet in b"\r\n" else ord("a") for octet in range(256))


class ChunkedDataSMTP(SMTP):
    """aiosmtpd's SMTP with DATA read by :func:`read_data`, its replies and checks unchanged."""

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's checks and replies before the data, in its order.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, problem = await read_data(self._reader, self.data_size_limit, self.line_length_limit)
        except asyncio.CancelledError:  # the connection went away during DATA
            self._writer.close()
            raise
        if problem:  # aiosmtpd's own text for it, which GatewaySMTP.push logs and rewords
            await self.push(problem)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


async def read_data(reader: asyncio.StreamReader, size_limit: int | None, line_limit: int) -> tuple[bytes, str]:
    """The message up to CRLF "." CRLF with its dots unstuffed and "", or b"" and the
    reply for the limit it crossed. Over ``size_limit`` octets, the rest is read and
    dropped (RFC 5321 §4.2.5: the answer comes after the end of data), keeping only enough
    to see the end. What follows the end stays in ``reader``. On a closed connection the
    reader's read returns nothing and this raises ``ConnectionResetError``; aiosmtpd
    cancels the session's task on EOF first."""
    data = bytearray(LINE_START)
    dropped = -len(LINE_START)  # octets of the message discarded from the front of data
    while True:
        searched = max(len(data) - len(END) + 1, 0)  # an END cannot start before this
        chunk = await reader.read(EVERYTHING)
        if not chunk:
            raise ConnectionResetError("connection closed during DATA")
        data += chunk
        end = data.find(END, searched)
        if end >= 0:
            break
        if size_limit and dropped + len(data) > size_limit:
            keep = len(END) - 1
            dropped += len(data) - keep
            del data[:-keep]
    leftover = bytes(data[end + len(END):])
    if leftover:
        reader.feed_data(leftover)
    size = dropped + end + len(LINE_START)
    if size_limit and size > size_limit:
        return b"", TOO_MUCH
    content = bytes(data[len(LINE_START):end + len(LINE_START)])
    if has_long_line(content, line_limit):
        return b"", LINE_TOO_LONG
    return unstuff(content), ""


def unstuff(content: bytes) -> bytes:
    """Remove the first "." of every line that starts with one (RFC 5321 §4.5.2)."""
    if content.startswith(b"."):
        content = content[1:]
    return content.replace(b"\r\n.", b"\r\n")


def has_long_line(content: bytes, limit: int) -> bool:
    """Whether a line of ``content``, with its line break, is longer than ``limit`` octets.

    Lines end at any CR or LF, as Postfix counts them: a bare LF is the end of a line to
    every parser after us. Mapping line breaks to one byte and everything else to another
    turns the question into one ``bytes.find`` of a run, a scan in C of about a
    nanosecond per octet, where a regular expression retried the run at every octet
    (1.5 s for 8 MB of 80-octet lines).
    """
    return len(content) > limit and content.translate(LINE_BREAKS).find(b"a" * (limit - 1)) >= 0

