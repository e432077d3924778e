"""Where composed mail goes: a Maildir, an SMTP relay, or memory (tests).

A transport takes bytes that are already a complete RFC 5322 message. Failures that a
retry may cure raise :class:`TransportError`; a relay's 5xx raises
:class:`PermanentTransportError`, which says whether it refused the recipient (at RCPT or
DATA: the outbox scores it as a hard bounce) and with which enhanced status code. The SMTP transport keeps its connections open and
reuses them across messages, one per concurrent sender, and drops a connection on any
error so the next message starts on a fresh one.
"""

from __future__ import annotations

import asyncio
import mailbox
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib

from statusmail.config import Settings, read_secret_file
from statusmail.errors import ConfigError, PermanentTransportError, TransportError


class Transport(Protocol):
    async def send(self, envelope_from: str, recipient: str, raw: bytes) -> None: ...

    async def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a Maildir (``new/``); a local MUA or test reads it there."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _deliver(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        # Made here, not by Maildir(create=True): two first deliveries at once (the
        # worker's lanes) raced in its mkdir calls, and one failed with EEXIST or ENOENT.
        # Its folders are the owner's only (0700).
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(mode=0o700, exist_ok=True)
        box = mailbox.Maildir(self.path, create=False)
        # Return-Path and Delivered-To as a local delivery agent would add them (RFC 5321 §4.4).
        header = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {recipient}\r\n".encode()
        key = box.add(header + raw)
        # mailbox writes the file with the umask's permissions (0644, commonly): mail is
        # the owner's only (SPEC §2).
        os.chmod(self.path / "new" / key, 0o600)

    async def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        try:
            await asyncio.to_thread(self._deliver, envelope_from, recipient, raw)
        except OSError as exc:
            raise TransportError(f"maildir {self.path}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None


@dataclass
class MemoryTransport:
    """Keeps messages in a list; ``failures`` makes the next N sends fail (tests)."""

    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    failures: int = 0

    async def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise TransportError("memory transport told to fail")
        self.sent.append((envelope_from, recipient, raw))

    async def close(self) -> None:
        return None


class SmtpTransport:
    """Relays through an SMTP server with aiosmtplib, reusing open connections.

    Each concurrent ``send`` takes an idle connection (or opens one) and gives it back
    when the relay has answered, so the pool holds as many connections as there were
    sends at once (the outbox worker's lanes), and one message is on a connection at a
    time: aiosmtplib does not pipeline (RFC 2920), each message is four round trips.
    """

    def __init__(self, host: str, port: int, *, starttls: bool = False, implicit_tls: bool = False,
                 username: str = "", password: str = "", timeout: float = 30) -> None:
        self.host, self.port = host, port
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.username, self.password = username, password
        self.timeout = timeout
        self._idle: list[aiosmtplib.SMTP] = []

    async def _connected(self) -> aiosmtplib.SMTP:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=self.timeout,
                                 use_tls=self.implicit_tls, start_tls=self.starttls if self.starttls else False)
        await client.connect()
        if self.username:
            await client.login(self.username, self.password)
        return client

    async def send(self, envelope_from: str, recipient: str, raw: bytes) -> None:
        client = None
        try:
            client = await self._connected()
            await client.sendmail(envelope_from, [recipient], raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            drop(client)
            codes = [error.code for error in exc.recipients]
            if codes and all(500 <= code < 600 for code in codes):
                first = exc.recipients[0]
                raise PermanentTransportError(f"relay refused {recipient}: {first.code} {first.message}",
                                              status=enhanced_status(first.code, first.message),
                                              refused_recipient=True) from exc
            raise TransportError(f"relay deferred {recipient}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            drop(client)
            if 500 <= exc.code < 600:
                at_data = isinstance(exc, aiosmtplib.SMTPDataError)
                raise PermanentTransportError(f"relay answered {exc.code} {exc.message}"
                                              + (f" to the DATA of {recipient}" if at_data else ""),
                                              status=enhanced_status(exc.code, exc.message),
                                              refused_recipient=at_data) from exc
            raise TransportError(f"relay answered {exc.code} {exc.message}") from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            drop(client)
            raise TransportError(f"relay {self.host}:{self.port}: {exc}") from exc
        except BaseException:  # cancelled mid-conversation: the connection's state is unknown
            drop(client)
            raise
        self._idle.append(client)

    async def check(self) -> None:
        """Connect, log in where configured, NOOP, and leave (``statusmail check``)."""
        client = await self._connected()
        try:
            await client.noop()
        finally:
            self._idle.append(client)
            await self.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            if not client.is_connected:
                continue
            try:
                await client.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()


ENHANCED_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_status(code: int, message: str) -> str:
    """The RFC 3463 code a reply starts with (RFC 2034), else the basic code's class."""
    match = ENHANCED_STATUS.match(message)
    return match.group(1) if match else f"{code // 100}.0.0"


def drop(client: aiosmtplib.SMTP | None) -> None:
    """Close a connection an error left in an unknown state; it is not reused."""
    if client is None:
        return
    try:
        client.close()
    except Exception:
        pass


def make_transport(settings: Settings) -> Transport:
    """The transport named by ``outbound.transport``."""
    spec = settings.outbound.transport
    if spec.startswith("maildir:"):
        return MaildirTransport(os.path.expanduser(spec.removeprefix("maildir:")))
    if spec.startswith("memory:"):
        return MemoryTransport()
    parts = urlsplit(spec)
    if not parts.hostname:
        raise ConfigError(f"outbound.transport: no host in {spec!r}")
    password = read_secret_file("outbound.password_file", settings.outbound.password_file)
    default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
    return SmtpTransport(parts.hostname, parts.port or default_port, starttls=parts.scheme == "smtp+starttls",
                         implicit_tls=parts.scheme == "smtps", username=settings.outbound.username, password=password)
