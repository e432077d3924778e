"""One IMAP session with aioimaplib, every step bounded in time.

aioimaplib leaves much to its caller: several commands have no timeout, IDLE never
completes when the server says BYE, and nothing closes the socket when a command fails.
Each step here therefore races the server against a deadline and against the
connection-lost callback, raises :class:`MailboxError` on anything but ``OK``, and
:func:`close_connection` always releases the socket and aioimaplib's helper tasks.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aioimaplib

from statusmail.config import ImapSettings, read_secret_file
from statusmail.errors import StatusmailError
from statusmail.gateway.imapwire import (
    listed,
    mailbox_name,
    parse_delimiter,
    parse_fetch,
    parse_search,
    parse_sizes,
    parse_uidvalidity,
    response_text,
    uid_set,
)
from statusmail.logs import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_SECONDS = 60.0      # any one command; a FETCH only times out after this long without data
IDLE_RENEW_SECONDS = 300.0  # RFC 2177 §3: re-issue IDLE well within the 29 minutes servers allow
CLOSE_SECONDS = 5.0


class MailboxError(StatusmailError):
    """The IMAP server refused a command, or the connection went away."""


class CommandRefused(MailboxError):
    """The server answered NO or BAD: the connection is fine, this command is not
    (a read-only folder refusing MOVE, say). Reconnecting would not help."""


@dataclass
class Connection:
    """One logged-in IMAP session."""

    client: aioimaplib.IMAP4
    lost: asyncio.Event
    delimiter: str | None = None
    uidvalidity: int = 0
    ready_folders: set[str] = field(default_factory=set)

    def has(self, capability: str) -> bool:
        return self.client.has_capability(capability)


async def first(awaitable: Awaitable[T], events: Iterable[asyncio.Event], timeout: float) -> asyncio.Future[T]:
    """Run ``awaitable`` until it is done, one of ``events`` is set, or ``timeout`` passes.

    Returns its future: done, or cancelled when it lost the race. Nothing is left pending.
    """
    task = asyncio.ensure_future(awaitable)
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait({task, *waiters}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (task, *waiters):
            if not future.done():
                future.cancel()
        await asyncio.gather(task, *waiters, return_exceptions=True)
    return task


async def bounded(connection: Connection, awaitable: Awaitable[T], what: str, timeout: float = COMMAND_SECONDS) -> T:
    """``awaitable``'s result; MailboxError when the server hangs up or takes too long."""
    task = await first(awaitable, (connection.lost,), timeout)
    if task.cancelled():
        raise MailboxError(f"{what}: " + ("connection closed by the server" if connection.lost.is_set() else "timed out"))
    return task.result()


async def command(connection: Connection, awaitable: Awaitable[aioimaplib.Response], what: str) -> list[Any]:
    """Run one command with a deadline; its lines when the server says OK."""
    response = await bounded(connection, awaitable, what)
    if response.result != "OK":
        error = CommandRefused if response.result in ("NO", "BAD") and not connection.lost.is_set() else MailboxError
        raise error(f"{what}: {response.result} {response_text(response.lines)}")
    return list(response.lines)


async def idle(connection: Connection, events: Iterable[asyncio.Event], timeout: float | None = None) -> None:
    """One IDLE (RFC 2177): until the server reports a change, renewal time (or
    ``timeout``, if sooner), one of ``events`` or hang-up."""
    client = connection.client
    seconds = IDLE_RENEW_SECONDS if timeout is None else min(timeout, IDLE_RENEW_SECONDS)
    # aioimaplib's own renewal timer is set beyond ours, so ours always ends the IDLE.
    idle_task = await bounded(connection, client.idle_start(timeout=IDLE_RENEW_SECONDS + COMMAND_SECONDS), "IDLE")
    try:
        push = await first(client.protocol.idle_queue.get(), (*events, connection.lost), seconds)
        if not push.cancelled():
            log.debug("IDLE: server says %s", push.result())
    finally:
        if not connection.lost.is_set() and client.has_pending_idle():
            client.idle_done()
            await bounded(connection, idle_task, "IDLE DONE")
        else:
            idle_task.cancel()
            await asyncio.gather(idle_task, return_exceptions=True)
        drain(client.protocol.idle_queue)


def drain(queue: asyncio.Queue[Any]) -> None:
    """Forget pushes already read: the round that follows looks at the whole folder."""
    while not queue.empty():
        queue.get_nowait()


async def open_connection(settings: ImapSettings) -> Connection:
    """Connect (TLS unless ``ssl = false``), log in with the password file, learn the delimiter."""
    secret = read_secret_file("imap.password_file", settings.password_file)
    lost = asyncio.Event()
    context = ssl.create_default_context() if settings.ssl else None
    client = aioimaplib.IMAP4(settings.host, settings.port, timeout=COMMAND_SECONDS,
                              conn_lost_cb=lambda _exc: lost.set(), ssl_context=context)
    connection = Connection(client, lost)
    try:
        await bounded(connection, client.wait_hello_from_server(), "greeting")
        await command(connection, client.login(settings.username, secret), f"login as {settings.username}")
        # Capabilities change after login (RFC 3501 §6.2.3); ask again rather than trust the greeting.
        await bounded(connection, client.protocol.capability(), "CAPABILITY")
        listing = await command(connection, client.list('""', '""'), "LIST")
        connection.delimiter = parse_delimiter(listing)
    except BaseException:
        await close_connection(connection)
        raise
    return connection


async def close_connection(connection: Connection) -> None:
    """Log out politely when possible; always close the socket and forget pending tasks.

    aioimaplib has no close of its own, so this reaches into its connect task, its IDLE
    renewal timer and its helper tasks (2.0.3): left alone, they outlive the connection
    and surface later as unclosed sockets or never-retrieved task exceptions.
    """
    client = connection.client
    if not connection.lost.is_set() and client.protocol.transport is not None:
        try:
            await asyncio.wait_for(client.logout(), CLOSE_SECONDS)
        except Exception:
            pass
    transport = client.protocol.transport
    if transport is not None and not connection.lost.is_set():
        transport.abort()
    elif transport is None and not client._client_task.done():
        client._client_task.cancel()
    for task in (*client.tasks, *client.protocol.tasks):
        task.cancel()
    if client._idle_waiter is not None:
        client._idle_waiter.cancel()
    if transport is not None:
        try:
            await asyncio.wait_for(connection.lost.wait(), CLOSE_SECONDS)
        except TimeoutError:
            pass
    await asyncio.gather(client._client_task, *client.tasks, *client.protocol.tasks, return_exceptions=True)


async def select_folder(connection: Connection, folder: str) -> None:
    """SELECT the folder and remember its UIDVALIDITY."""
    lines = await command(connection, connection.client.select(mailbox_name(folder, connection.delimiter)),
                          f"SELECT {folder}")
    uidvalidity = parse_uidvalidity(lines)
    if uidvalidity is None:
        raise MailboxError(f"SELECT {folder}: the server sent no UIDVALIDITY")
    connection.uidvalidity = uidvalidity


async def search_new(connection: Connection, last_uid: int) -> list[int]:
    """UIDs above ``last_uid``, ascending (RFC 3501 §6.4.4, ``UID SEARCH UID n:*``)."""
    lines = await command(connection, connection.client.protocol.search("UID", f"{last_uid + 1}:*", by_uid=True,
                                                                        charset=None), "UID SEARCH")
    # ``n:*`` also names the highest UID when it is below n.
    return sorted(uid for uid in set(parse_search(lines)) if uid > last_uid)


async def search_upto(connection: Connection, last_uid: int) -> list[int]:
    """UIDs from 1 to ``last_uid`` still in the folder, ascending."""
    if last_uid < 1:
        return []
    lines = await command(connection, connection.client.protocol.search("UID", f"1:{last_uid}", by_uid=True,
                                                                        charset=None), "UID SEARCH")
    return sorted(uid for uid in set(parse_search(lines)) if uid <= last_uid)


async def fetch_sizes(connection: Connection, uids: Iterable[int]) -> dict[int, int]:
    """UID -> RFC822.SIZE of the messages still there: what a FETCH of their bytes would cost."""
    lines = await command(connection, connection.client.uid("fetch", uid_set(uids), "(UID RFC822.SIZE)"),
                          "UID FETCH RFC822.SIZE")
    return parse_sizes(lines)


async def fetch_messages(connection: Connection, uids: Iterable[int]) -> dict[int, bytes]:
    """UID -> bytes, in one FETCH, without setting \\Seen (BODY.PEEK); gone ones are left out."""
    lines = await command(connection, connection.client.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])"),
                          "UID FETCH")
    return parse_fetch(lines)


async def fetch_message(connection: Connection, uid: int) -> bytes | None:
    """The message's bytes, without setting \\Seen (BODY.PEEK); None if it is gone."""
    return (await fetch_messages(connection, [uid])).get(uid)


async def move_messages(connection: Connection, uids: Iterable[int], folder: str) -> None:
    """Move a set of messages in one command: MOVE (RFC 6851), else COPY, \\Deleted and
    UID EXPUNGE (RFC 4315). UIDs already gone are skipped by the server."""
    await ensure_folder(connection, folder)
    client, target, numbers = connection.client, mailbox_name(folder, connection.delimiter), uid_set(uids)
    if connection.has("MOVE"):
        await command(connection, client.uid("move", numbers, target), f"UID MOVE {numbers} to {folder}")
        return
    await command(connection, client.uid("copy", numbers, target), f"UID COPY {numbers} to {folder}")
    await command(connection, client.uid("store", numbers, "+FLAGS.SILENT", r"(\Deleted)"), f"UID STORE {numbers}")
    if connection.has("UIDPLUS"):
        await command(connection, client.uid("expunge", numbers), f"UID EXPUNGE {numbers}")
    else:
        # Without UIDPLUS, EXPUNGE also removes other messages someone marked \Deleted.
        await command(connection, client.expunge(), "EXPUNGE")


async def move_message(connection: Connection, uid: int, folder: str) -> None:
    await move_messages(connection, [uid], folder)


async def ensure_folder(connection: Connection, folder: str) -> None:
    """Create (and subscribe to) a folder the first time this connection needs it."""
    if folder in connection.ready_folders:
        return
    client, name = connection.client, mailbox_name(folder, connection.delimiter)
    if not listed(await command(connection, client.list('""', name), f"LIST {folder}")):
        response = await bounded(connection, client.create(name), f"CREATE {folder}")
        # RFC 5530 ALREADYEXISTS: another poller created it first, which is fine.
        if response.result != "OK" and b"ALREADYEXISTS" not in bytes(response.lines[-1] if response.lines else b""):
            raise MailboxError(f"CREATE {folder}: {response.result} {response_text(response.lines)}")
        await bounded(connection, client.subscribe(name), f"SUBSCRIBE {folder}")
        log.info("created IMAP folder %s", folder)
    connection.ready_folders.add(folder)


def describe(exc: BaseException, secret: str = "") -> str:
    """One line for the log, never with the password in it."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(text.replace(secret, "***") if secret else text)
