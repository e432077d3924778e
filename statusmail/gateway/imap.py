"""Read an existing mailbox over IMAP and feed every message to the inbound pipeline.

Many companies would rather give statusmail a mailbox (Exchange, Microsoft 365, Gmail,
Dovecot) than a route in their MTA (SPEC §2 ``[imap]``). :class:`ImapPoller` logs in,
selects ``folder`` and hands what it has not seen to the same
:class:`~statusmail.gateway.batcher.Batcher` as the SMTP listener: the same writer
process, the same batches, the same checks (the envelope sender is the Return-Path, read
by the pipeline, not here on the event loop). Each round fetches the sizes of up to
:data:`FETCH_BATCH` messages (``RFC822.SIZE``), then the bytes of those within
``smtp.max_message_bytes``, a few MiB at a time; a larger message is never fetched and
is refused on its size. The batch is recorded in one transaction together with the last
UID (:class:`~statusmail.store.mailboxes.SaveProgress`), and once that has committed the
messages are moved as one UID set per folder: ``processed_folder`` when accepted or
held, ``failed_folder`` when refused (``DISPOSITIONS``' Mailbox action).

Exactly once: messages are read with ``BODY.PEEK[]``, so nothing is marked seen before
it is handled. A crash between the commit and the move leaves messages at or below the
last UID in the folder; each new connection looks for those first and runs them again,
and the pipeline's Message-ID dedupe answers the posted ones "already received". A
UIDVALIDITY change rescans the folder the same way (RFC 3501 §2.3.1.1).

Nothing loops: a deferred message (rate limit, database down, a crash of the pipeline)
stays in the folder but is not run again before it can succeed (the time the limit
lifts, a short backoff); a move the server refuses (a read-only folder) is retried with
a growing delay while the rest of the mail goes on; only a round that completes resets
the reconnect backoff. With several processes on one PostgreSQL database, one holds the
mailbox's leader lock, and checks that it still does before every round and every few
seconds while it waits.

Waiting uses IDLE (RFC 2177) where the server has it, re-issued every few minutes, well
inside the 29 minutes after which servers may drop an idle client; otherwise the folder
is polled every ``poll_seconds``. Every wait is bounded, because aioimaplib's IDLE never
completes when the server says BYE. Any other error closes the connection, and the
poller reconnects with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from statusmail.config import ImapSettings, Settings, folder_key, read_secret_file
from statusmail.errors import StatusmailError
from statusmail.gateway.batcher import MAX_BATCH, MAX_BATCH_BYTES, Batcher
from statusmail.gateway.imapsession import (
    COMMAND_SECONDS,
    CommandRefused,
    Connection,
    MailboxError,
    close_connection,
    command,
    describe,
    fetch_messages,
    fetch_sizes,
    first,
    idle,
    move_messages,
    open_connection,
    search_new,
    search_upto,
    select_folder,
)
from statusmail.gateway.imapwire import mailbox_name, parse_exists
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Mailbox, Outcome, Reason
from statusmail.inbound.senders import HOLD_UNAUTHENTICATED
from statusmail.store.locks import LeaderLock
from statusmail.store.mailboxes import SaveProgress, load_state, save_state

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
LEADER_RETRY_SECONDS = 10.0  # how often a waiting process asks for the mailbox's leader lock
LEADER_CHECK_SECONDS = 5.0  # how often the reader checks, while it waits, that it still holds it
MAX_INTERNAL_ERRORS = 5  # a message that crashes the pipeline this often goes to failed_folder
FETCH_BATCH = 4 * MAX_BATCH  # messages per round trip: the batcher splits them into batches back to back
STORE_RETRY_FIRST_SECONDS = 1.0  # after a database failure, the folder is looked at again this soon
STORE_RETRY_MAX_SECONDS = 60.0

# Over IMAP nothing can be refused in a dialogue: ask the pipeline to hold for a
# moderator, rather than refuse, a message whose sender fails authentication.
IMAP_NOTES = (HOLD_UNAUTHENTICATED,)


class LeaderLost(StatusmailError):
    """Another process may read the mailbox now: stop reading it."""


class ImapPoller:
    """Moves mail from an IMAP folder through the pipeline until :meth:`stop`."""

    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None] | None = None,
                 batcher: Batcher | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.on_queued = on_queued or (lambda: None)  # a message wrote mail to the outbox
        self.imap: ImapSettings = settings.imap
        self.batcher = batcher  # serve's, shared with SMTP; without one, a private one (a worker thread)
        self.stopping = asyncio.Event()
        self.backoff = BACKOFF_FIRST_SECONDS
        self.reading = False  # a connection has the folder selected (for tests and the curious)
        # What this process knows about messages still in the folder, by UID under
        # ``uidvalidity``: when a deferred one may run again (loop time), where one whose
        # move failed belongs, how often one crashed the pipeline.
        self.uidvalidity = 0
        self.waiting: dict[int, float] = {}
        self.unmoved: dict[int, str] = {}
        self.crashes: Counter[int] = Counter()
        self.move_at = 0.0
        self.move_backoff = BACKOFF_FIRST_SECONDS
        self.store_backoff = STORE_RETRY_FIRST_SECONDS

    @property
    def state_key(self) -> str:
        """The ``imap_state`` row of this account and folder."""
        return f"imap://{self.imap.username}@{self.imap.host}:{self.imap.port}/{self.imap.folder}"[:300]

    @property
    def lock_name(self) -> str:
        """The leader lock: the account and folder, not the host's spelling, so that
        ``localhost`` and ``127.0.0.1`` in two configurations still make one reader."""
        return f"imap:{self.imap.username.lower()}/{folder_key(self.imap.folder)}"

    def stop(self) -> None:
        """Finish the batch in hand, log out and return from :meth:`run`."""
        self.stopping.set()

    async def run(self) -> None:
        """Read the folder until :meth:`stop`; reconnect after any failure, backing off.

        With several processes on one PostgreSQL database, only the holder of the
        mailbox's leader lock reads it; the others wait and try again.
        """
        own_batcher = self.batcher is None
        if self.batcher is None:
            self.batcher = Batcher(self.settings, self.engine)
            self.batcher.start()
        leader = LeaderLock(self.engine, self.lock_name)
        try:
            while not self.stopping.is_set():
                try:
                    if not await asyncio.to_thread(leader.acquire):
                        log.debug("another process reads %s; waiting", self.imap.folder)
                        await first(self.stopping.wait(), (), LEADER_RETRY_SECONDS)
                        continue
                    try:
                        await self.read_mailbox(leader)
                    finally:
                        await asyncio.to_thread(leader.release)
                except LeaderLost:
                    log.warning("lost the leader lock for %s: another process may read it now", self.imap.folder)
                except Exception as exc:
                    log.warning("IMAP %s:%d: %s; reconnecting in %.0fs", self.imap.host, self.imap.port,
                                describe(exc, read_secret_quietly(self.imap)), self.backoff)
                    await first(self.stopping.wait(), (), self.backoff)
                    self.backoff = min(self.backoff * 2, BACKOFF_MAX_SECONDS)
        finally:
            if own_batcher:
                await self.batcher.close()
        log.info("IMAP poller stopped")

    async def read_mailbox(self, leader: LeaderLock) -> None:
        """One connection: handle what is there, wait for more, until stop or failure."""
        connection = await open_connection(self.imap)
        lead_lost = asyncio.Event()
        watcher = asyncio.create_task(self.watch_leader(leader, lead_lost))
        try:
            await select_folder(connection, self.imap.folder)
            log.info("reading %s on %s:%d", self.imap.folder, self.imap.host, self.imap.port)
            self.reading = True
            first_round = True
            while not self.stopping.is_set():
                # Mail that arrives during a round is announced in the responses to our own
                # commands, which aioimaplib drops: look again until a round finds nothing,
                # so that IDLE starts with nothing unannounced (RFC 2177 §3).
                again = await self.process_new_mail(connection, first_round, lead_lost)
                first_round = False
                self.backoff = BACKOFF_FIRST_SECONDS  # a whole round worked: not after SELECT alone
                if lead_lost.is_set():
                    raise LeaderLost(self.lock_name)
                if again:
                    continue
                await self.wait_for_mail(connection, lead_lost)
                if lead_lost.is_set():
                    raise LeaderLost(self.lock_name)
        finally:
            self.reading = False
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await close_connection(connection)

    async def watch_leader(self, leader: LeaderLock, lost: asyncio.Event) -> None:
        """Set ``lost`` once the leader lock is gone (its connection terminated, say)."""
        while not lost.is_set():
            await asyncio.sleep(LEADER_CHECK_SECONDS)
            if not await asyncio.to_thread(leader.held):
                lost.set()

    def remember_folder(self, uidvalidity: int) -> None:
        """Forget what was known about UIDs of another UIDVALIDITY."""
        if uidvalidity != self.uidvalidity:
            self.uidvalidity = uidvalidity
            self.waiting.clear()
            self.unmoved.clear()
            self.crashes.clear()

    async def process_new_mail(self, connection: Connection, first_round: bool = False,
                               lead_lost: asyncio.Event | None = None) -> bool:
        """One round; True when it ran messages, so another round should look again."""
        uidvalidity, last_uid = await asyncio.to_thread(load_state, self.engine, self.state_key)
        if uidvalidity != connection.uidvalidity:
            if uidvalidity:
                # RFC 3501 §2.3.1.1: old UIDs mean nothing now. Rescan; the pipeline's
                # Message-ID dedupe keeps every message posted once.
                log.warning("UIDVALIDITY of %s changed from %d to %d: rescanning the folder",
                            self.imap.folder, uidvalidity, connection.uidvalidity)
            last_uid = 0
            await asyncio.to_thread(save_state, self.engine, self.state_key, connection.uidvalidity, 0)
        self.remember_folder(connection.uidvalidity)
        await self.retry_moves(connection)
        now = asyncio.get_running_loop().time()
        candidates = set(await search_new(connection, last_uid))
        if first_round:
            # Recorded but never moved (a crash after the commit): run again, and the
            # dedupe sends the posted ones on to the processed folder.
            candidates.update(await search_upto(connection, last_uid))
        candidates.update(uid for uid, at in self.waiting.items() if at <= now)
        candidates -= {uid for uid, at in self.waiting.items() if at > now}
        candidates -= set(self.unmoved)
        ordered = sorted(candidates)
        for start in range(0, len(ordered), FETCH_BATCH):
            if self.stopping.is_set() or (lead_lost is not None and lead_lost.is_set()):
                return False
            if not await self.process_chunk(connection, ordered[start:start + FETCH_BATCH]):
                return False  # the database is down: wait, then look again (wait_for_mail)
        return bool(ordered)

    async def process_chunk(self, connection: Connection, uids: list[int]) -> bool:
        """Size, fetch, record and move some messages; False if the database failed."""
        sizes = await fetch_sizes(connection, uids)
        for uid in set(uids) - set(sizes):  # expunged by someone else meanwhile
            self.forget(uid)
        limit = self.settings.smtp.max_message_bytes
        oversized = [uid for uid in sorted(sizes) if sizes[uid] > limit]
        groups: list[list[int]] = [[]]
        total = 0
        for uid in (uid for uid in sorted(sizes) if sizes[uid] <= limit):
            if groups[-1] and total + sizes[uid] > MAX_BATCH_BYTES:
                groups.append([])
                total = 0
            groups[-1].append(uid)
            total += sizes[uid]
        groups[0] = oversized + groups[0]  # refused on their size, never fetched
        for group in groups:
            if group and not await self.process_group(connection, group, sizes, limit):
                return False
        return True

    async def process_group(self, connection: Connection, uids: list[int], sizes: dict[int, int], limit: int) -> bool:
        wanted = [uid for uid in uids if sizes[uid] <= limit]
        bodies = await fetch_messages(connection, wanted) if wanted else {}
        jobs = []
        for uid in uids:
            raw = bodies.get(uid) if sizes[uid] <= limit else b""
            if raw is None:
                self.forget(uid)  # expunged between the FETCHes
                continue
            envelope = Envelope(peer=self.imap.host, source="imap", notes=IMAP_NOTES, size=sizes[uid])
            jobs.append((uid, raw, envelope, (SaveProgress(self.state_key, connection.uidvalidity, uid),)))
        del bodies
        assert self.batcher is not None
        outcomes: list[Outcome] = await asyncio.gather(*(self.batcher.submit(raw, envelope, changes)
                                                         for _, raw, envelope, changes in jobs))
        moves: dict[str, list[int]] = defaultdict(list)
        store_down = False
        for (uid, _, _, _), outcome in zip(jobs, outcomes):
            if outcome.queued:
                self.on_queued()
            mailbox = outcome.disposition.mailbox
            if mailbox is Mailbox.RETRY and not self.gave_up(uid, outcome):
                store_down = store_down or outcome.reason is Reason.STORE_UNAVAILABLE
                self.defer(uid, outcome)
                continue
            self.forget(uid)
            moves[self.imap.processed_folder if mailbox is Mailbox.PROCESSED else self.imap.failed_folder].append(uid)
        self.store_backoff = (min(self.store_backoff * 2, STORE_RETRY_MAX_SECONDS) if store_down
                              else STORE_RETRY_FIRST_SECONDS)
        for folder, moved in moves.items():
            for uid in moved:
                self.unmoved[uid] = folder
            await self.move(connection, moved, folder)
        return not store_down

    def forget(self, uid: int) -> None:
        self.waiting.pop(uid, None)
        self.crashes.pop(uid, None)

    def defer(self, uid: int, outcome: Outcome) -> None:
        """Leave a message in the folder until it can succeed: the time its rate limit
        lifts, a short backoff after a database failure, a growing one after a crash."""
        now = asyncio.get_running_loop().time()
        if outcome.reason is Reason.STORE_UNAVAILABLE:
            delay = self.store_backoff
        elif outcome.retry_at is not None:
            delay = max(1.0, (outcome.retry_at - datetime.now(UTC)).total_seconds())
        else:
            delay = min(BACKOFF_FIRST_SECONDS * 2 ** self.crashes[uid], BACKOFF_MAX_SECONDS)
        if outcome.reason is not Reason.STORE_UNAVAILABLE:
            log.info("UID %d deferred (%s): left in %s for %.0fs", uid, outcome.reason.value, self.imap.folder, delay)
        self.waiting[uid] = now + delay

    def gave_up(self, uid: int, outcome: Outcome) -> bool:
        """A message that crashes the pipeline again and again is not retried forever."""
        if outcome.reason is not Reason.INTERNAL_ERROR:
            return False
        self.crashes[uid] += 1
        if self.crashes[uid] < MAX_INTERNAL_ERRORS:
            return False
        log.error("UID %d failed %d times with an internal error: moving it to %s",
                  uid, MAX_INTERNAL_ERRORS, self.imap.failed_folder)
        return True

    async def move(self, connection: Connection, uids: list[int], folder: str) -> bool:
        """One UID MOVE; a refusal keeps the messages for :meth:`retry_moves`, later."""
        try:
            await move_messages(connection, uids, folder)
        except CommandRefused as exc:
            now = asyncio.get_running_loop().time()
            if self.move_at <= now:  # one step of backoff per retry, however many folders failed
                self.move_at = now + self.move_backoff
                self.move_backoff = min(self.move_backoff * 2, BACKOFF_MAX_SECONDS)
            log.warning("could not move %d message(s) to %s (%s); trying again in %.0fs", len(uids), folder,
                        describe(exc), self.move_at - now)
            return False
        for uid in uids:
            self.unmoved.pop(uid, None)
        return True

    async def retry_moves(self, connection: Connection) -> None:
        """Move what an earlier refusal left behind, to where its outcome sent it."""
        if not self.unmoved or asyncio.get_running_loop().time() < self.move_at:
            return
        by_folder: dict[str, list[int]] = defaultdict(list)
        for uid, folder in self.unmoved.items():
            by_folder[folder].append(uid)
        if all([await self.move(connection, uids, folder) for folder, uids in by_folder.items()]):
            self.move_backoff = BACKOFF_FIRST_SECONDS

    def next_due(self) -> float | None:
        """Loop time of the next deferred message or move retry; None if there is none."""
        times = list(self.waiting.values()) + ([self.move_at] if self.unmoved else [])
        return min(times) if times else None

    async def wait_for_mail(self, connection: Connection, lead_lost: asyncio.Event | None = None) -> None:
        """Return when new mail may be there, something deferred is due, the renewal time
        passed, the leader lock was lost, or on stop."""
        due = self.next_due()
        loop = asyncio.get_running_loop()
        timeout = None if due is None else max(0.0, due - loop.time())
        events = (self.stopping,) + ((lead_lost,) if lead_lost is not None else ())
        if timeout is not None and timeout <= 0:
            return
        if self.imap.idle and connection.has("IDLE"):
            await idle(connection, events, timeout)
        else:
            seconds = self.imap.poll_seconds if timeout is None else min(timeout, self.imap.poll_seconds)
            await first(asyncio.sleep(seconds), (*events, connection.lost), seconds)
        if connection.lost.is_set():
            raise MailboxError("connection closed by the server")


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
