"""Read an existing mailbox over IMAP and feed every message to the inbound pipeline.

Many companies would rather give statusmail a mailbox (Exchange, Microsoft 365, Gmail,
Dovecot) than a route in their MTA (SPEC §2 ``[imap]``). :class:`ImapPoller` logs in,
selects ``folder`` and, for each message it has not seen, runs the same pipeline as the
SMTP listener. Only after the pipeline's transaction has committed is the message moved
out of the way: to ``processed_folder`` when accepted or held, to ``failed_folder`` when
refused. A deferred outcome (rate limit, database down) leaves it where it is for the
next round, as a sending MTA would keep it after a 451.

Exactly once: the UIDVALIDITY and the last UID handled are kept in the ``imap_state``
table, messages are read with ``BODY.PEEK[]`` so nothing is marked seen before it is
handled, and the pipeline's Message-ID dedupe makes a crash between commit and move, or
a UIDVALIDITY change that forces a rescan, harmless.

Waiting uses IDLE (RFC 2177) where the server has it, re-issued every few minutes, well
inside the 29 minutes after which servers may drop an idle client; otherwise the folder
is polled every ``poll_seconds``. Every wait is bounded, because aioimaplib's IDLE never
completes when the server says BYE. Any error closes the connection, and the poller
reconnects with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from sqlalchemy import Engine

from statusmail.config import ImapSettings, Settings, read_secret_file
from statusmail.errors import StatusmailError
from statusmail.gateway.imapsession import (
    COMMAND_SECONDS,
    Connection,
    MailboxError,
    close_connection,
    command,
    describe,
    fetch_message,
    first,
    idle,
    move_message,
    open_connection,
    search_new,
    select_folder,
)
from statusmail.gateway.imapwire import mailbox_name, parse_exists
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Mailbox, Outcome, Reason
from statusmail.inbound.pipeline import run
from statusmail.inbound.senders import HOLD_UNAUTHENTICATED
from statusmail.store.db import transaction
from statusmail.store.locks import LeaderLock
from statusmail.store.models import ImapState

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
LEADER_RETRY_SECONDS = 30.0  # how often a waiting process asks for the mailbox's leader lock
MAX_INTERNAL_ERRORS = 5  # a message that crashes the pipeline this often goes to failed_folder

# Over IMAP nothing can be refused in a dialogue: ask the pipeline to hold for a
# moderator, rather than refuse, a message whose sender fails authentication.
IMAP_NOTES = (HOLD_UNAUTHENTICATED,)


class ImapPoller:
    """Moves mail from an IMAP folder through the pipeline until :meth:`stop`."""

    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.on_queued = on_queued or (lambda: None)  # a message wrote mail to the outbox
        self.imap: ImapSettings = settings.imap
        self.stopping = asyncio.Event()
        self.crashes: Counter[tuple[int, int]] = Counter()
        self.backoff = BACKOFF_FIRST_SECONDS

    @property
    def state_key(self) -> str:
        """The ``imap_state`` row of this account and folder."""
        return f"imap://{self.imap.username}@{self.imap.host}:{self.imap.port}/{self.imap.folder}"[:300]

    def stop(self) -> None:
        """Finish the message in hand, log out and return from :meth:`run`."""
        self.stopping.set()

    async def run(self) -> None:
        """Read the folder until :meth:`stop`; reconnect after any failure, backing off.

        With several processes on one PostgreSQL database, only the holder of the
        mailbox's leader lock reads it; the others wait and try again.
        """
        leader = LeaderLock(self.engine, f"imap:{self.state_key}")
        while not self.stopping.is_set():
            try:
                if not await asyncio.to_thread(leader.acquire):
                    log.debug("another process reads %s; waiting", self.imap.folder)
                    await first(self.stopping.wait(), (), LEADER_RETRY_SECONDS)
                    continue
                try:
                    await self.read_mailbox()
                finally:
                    await asyncio.to_thread(leader.release)
            except Exception as exc:
                log.warning("IMAP %s:%d: %s; reconnecting in %.0fs", self.imap.host, self.imap.port,
                            describe(exc, read_secret_quietly(self.imap)), self.backoff)
                await first(self.stopping.wait(), (), self.backoff)
                self.backoff = min(self.backoff * 2, BACKOFF_MAX_SECONDS)
        log.info("IMAP poller stopped")

    async def read_mailbox(self) -> None:
        """One connection: handle what is there, wait for more, until stop or failure."""
        connection = await open_connection(self.imap)
        try:
            await select_folder(connection, self.imap.folder)
            log.info("reading %s on %s:%d", self.imap.folder, self.imap.host, self.imap.port)
            self.backoff = BACKOFF_FIRST_SECONDS
            while not self.stopping.is_set():
                # Mail that arrives during a round is announced in the responses to our own
                # commands, which aioimaplib drops: look again until a round moves nothing,
                # so that IDLE starts with nothing unannounced (RFC 2177 §3).
                while await self.process_new_mail(connection) and not self.stopping.is_set():
                    pass
                await self.wait_for_mail(connection)
        finally:
            await close_connection(connection)

    async def process_new_mail(self, connection: Connection) -> int:
        """One round: every message above the last UID handled, in UID order; how many left the folder."""
        uidvalidity, last_uid = await asyncio.to_thread(load_state, self.engine, self.state_key)
        if uidvalidity != connection.uidvalidity:
            if uidvalidity:
                # RFC 3501 §2.3.1.1: old UIDs mean nothing now. Rescan; the pipeline's
                # Message-ID dedupe keeps every message posted once.
                log.warning("UIDVALIDITY of %s changed from %d to %d: rescanning the folder",
                            self.imap.folder, uidvalidity, connection.uidvalidity)
            last_uid = 0
            await asyncio.to_thread(save_state, self.engine, self.state_key, connection.uidvalidity, 0)
        contiguous = True  # last_uid only advances past messages that have left the folder
        moved = 0
        for uid in await search_new(connection, last_uid):
            if self.stopping.is_set():
                break
            handled = await self.process_one(connection, uid)
            if handled is None:
                break  # the database is down: the rest would be deferred as well
            moved += handled
            contiguous = contiguous and handled
            if contiguous:
                last_uid = uid
                await asyncio.to_thread(save_state, self.engine, self.state_key, connection.uidvalidity, uid)
        return moved

    async def process_one(self, connection: Connection, uid: int) -> bool | None:
        """Run one message through the pipeline and move it; False when it stays, None to stop."""
        raw = await fetch_message(connection, uid)
        if raw is None:
            return True  # expunged by someone else meanwhile
        envelope = envelope_for(raw, self.imap.host)
        outcome: Outcome = await asyncio.to_thread(run, raw, envelope, self.settings, self.engine)
        if outcome.disposition.mailbox is Mailbox.RETRY:
            if outcome.reason is Reason.STORE_UNAVAILABLE:
                return None
            if outcome.reason is not Reason.INTERNAL_ERROR or not self.gave_up(connection, uid):
                log.info("UID %d deferred (%s): left in %s", uid, outcome.reason.value, self.imap.folder)
                return False
        processed = outcome.disposition.mailbox is Mailbox.PROCESSED
        target = self.imap.processed_folder if processed else self.imap.failed_folder
        await move_message(connection, uid, target)
        if outcome.queued:
            self.on_queued()
        return True

    def gave_up(self, connection: Connection, uid: int) -> bool:
        """A message that crashes the pipeline again and again is not retried forever."""
        self.crashes[(connection.uidvalidity, uid)] += 1
        if self.crashes[(connection.uidvalidity, uid)] < MAX_INTERNAL_ERRORS:
            return False
        log.error("UID %d failed %d times with an internal error: moving it to %s",
                  uid, MAX_INTERNAL_ERRORS, self.imap.failed_folder)
        del self.crashes[(connection.uidvalidity, uid)]
        return True

    async def wait_for_mail(self, connection: Connection) -> None:
        """Return when new mail may be there, the renewal time passed, or on stop."""
        if self.imap.idle and connection.has("IDLE"):
            await idle(connection, self.stopping)
        else:
            await first(asyncio.sleep(self.imap.poll_seconds), (self.stopping, connection.lost), self.imap.poll_seconds)
        if connection.lost.is_set():
            raise MailboxError("connection closed by the server")


def envelope_for(raw: bytes, host: str) -> Envelope:
    """What SMTP would have said: Return-Path (RFC 5321 §4.4) else the From address.

    There are no RCPT addresses, so the pipeline classifies by To, Cc and Delivered-To,
    and treats a message addressed to no statusmail address as a post.
    """
    try:
        headers = BytesHeaderParser().parsebytes(raw)
        return_path = str(headers.get("Return-Path", "") or "").strip()
        from_header = str(headers.get("From", "") or "")
    except Exception:
        return_path, from_header = "", ""
    if return_path:
        mail_from = return_path.strip("<>").strip() or "<>"
    else:
        addresses = [address for _, address in getaddresses([from_header]) if address]
        mail_from = addresses[0] if addresses else ""
    return Envelope(mail_from=mail_from, rcpt_tos=(), peer=host, source="imap", notes=IMAP_NOTES)


def check_mailbox(settings: Settings) -> tuple[str, bool, str]:
    """``statusmail check``: log in and EXAMINE the folder, read-only."""
    imap = settings.imap
    where = f"{imap.host}:{imap.port}"

    async def probe() -> str:
        connection = await open_connection(imap)
        try:
            lines = await command(connection, connection.client.examine(mailbox_name(imap.folder, connection.delimiter)),
                                  f"EXAMINE {imap.folder}")
        finally:
            await close_connection(connection)
        return f"{where} {imap.folder}: {parse_exists(lines) or 0} message(s) waiting"

    try:
        return ("mailbox", True, asyncio.run(asyncio.wait_for(probe(), COMMAND_SECONDS)))
    except Exception as exc:
        return ("mailbox", False, f"{where}: {describe(exc, read_secret_quietly(imap))}")


def read_secret_quietly(imap: ImapSettings) -> str:
    try:
        return read_secret_file("imap.password_file", imap.password_file)
    except StatusmailError:
        return ""


def load_state(engine: Engine, mailbox: str) -> tuple[int, int]:
    """(UIDVALIDITY, last UID handled) of a folder; (0, 0) before its first round."""
    with transaction(engine) as session:
        row = session.get(ImapState, mailbox)
        return (row.uidvalidity, row.last_uid) if row else (0, 0)


def save_state(engine: Engine, mailbox: str, uidvalidity: int, last_uid: int) -> None:
    with transaction(engine) as session:
        row = session.get(ImapState, mailbox) or ImapState(mailbox=mailbox)
        row.uidvalidity, row.last_uid = uidvalidity, last_uid
        session.add(row)
