"""The SMTP/LMTP listener: a thin aiosmtpd handler, one method per verb.

Cheap refusals come first: an untrusted peer at MAIL, a recipient that is not ours or a
banned envelope sender at RCPT. DATA runs the inbound pipeline off the event loop and
answers from the one reply table; ``250`` only after the pipeline's transaction has
committed. Every refusal, at whatever step, is written to the inbound log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import logging
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import Engine
from sqlmodel import col, select

from statusmail.config import Settings
from statusmail.errors import StoreUnavailable
from statusmail.gateway.batcher import Batcher
from statusmail.gateway.smtpauth import Authenticator
from statusmail.gateway.smtpdata import ChunkedDataSMTP
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import DEFERRED_ERROR, DEFERRED_STORE, REFUSED_SESSION, Outcome, Reason, smtp_reply
from statusmail.inbound.pipeline import record_refusal, run
from statusmail.inbound.recipients import classify_recipient
from statusmail.logs import redact
from statusmail.store.db import transaction
from statusmail.store.models import User
from statusmail.store.users import base_address, find_user

log = logging.getLogger(__name__)

# aiosmtpd answers an oversized message or an overlong line itself, without an enhanced
# status code and without telling the handler; we recognise its fixed texts, log the
# refusal and answer in RFC 3463 terms.
AIOSMTPD_REFUSALS = {
    "552 Error: Too much mail data": Reason.TOO_LARGE,
    "552 Error: message size exceeds fixed maximum message size": Reason.TOO_LARGE,
    "500 Line too long (see RFC5321 4.5.3.1.6)": Reason.LINE_TOO_LONG,
    "530 Must issue a STARTTLS command first": Reason.TLS_REQUIRED,
    "530 5.7.0 Authentication required": Reason.AUTH_REQUIRED,
}
MAX_REFUSALS = 20  # per session, then 421 (Postfix's smtpd_hard_error_limit is the model)
REFUSALS = "statusmail_refusals"  # SmtpSession attributes: refusals so far, and whether it was closed
CLOSED = "statusmail_closed"
BANNED_TTL = 5.0  # seconds between rereads of the banned senders (BannedSenders)
REFUSAL_DETAILS = {
    Reason.LINE_TOO_LONG: "a line longer than 1000 octets",
    Reason.TLS_REQUIRED: "smtp.require_tls: command before STARTTLS",
    Reason.AUTH_REQUIRED: "smtp.require_auth: command before AUTH",
}


class BannedSenders:
    """Which envelope senders RCPT refuses: a cheap early answer, not the rule.

    Looking the sender up for every RCPT cost a database round trip per message. The
    set of banned addresses is reread at most every :data:`BANNED_TTL` seconds instead,
    and a hit is confirmed against the database before refusing, so an unban is never
    answered late. A ban made since the last reread passes RCPT and is refused at DATA
    by the pipeline's ``refuse_banned`` stage, which reads the user in the message's own
    transaction: the answer is the same ``550 5.7.1``, one command later.
    """

    def __init__(self, engine: Engine, ttl: float = BANNED_TTL, delimiter: str = "+") -> None:
        self.engine, self.ttl, self.delimiter = engine, ttl, delimiter
        self.addresses: frozenset[str] = frozenset()
        self.read_at = float("-inf")

    async def contains(self, mail_from: str) -> bool:
        address = base_address(mail_from, self.delimiter)
        if not address:
            return False
        now = time.monotonic()
        if now - self.read_at > self.ttl:
            self.read_at = now  # one reread at a time; concurrent sessions use the old set meanwhile
            try:
                self.addresses = await asyncio.to_thread(self.read)
            except StoreUnavailable:
                return False  # DATA will answer 451 if the database is still down
        if address not in self.addresses:
            return False
        return await asyncio.to_thread(self.confirm, address)

    def read(self) -> frozenset[str]:
        with transaction(self.engine) as db:
            return frozenset(db.exec(select(User.email).where(col(User.banned).is_(True))))

    def confirm(self, address: str) -> bool:
        try:
            with transaction(self.engine) as db:
                user = find_user(db, address)
                return bool(user and user.banned)
        except StoreUnavailable:
            return False


@functools.lru_cache(maxsize=1024)  # the MTAs in front are few; a scan cannot grow it
def host_in_networks(host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Whether the peer address ``host`` is in one of ``networks`` (IPv4-mapped IPv6 as IPv4)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class StatusHandler:
    """aiosmtpd handler for the status gateway."""

    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None] | None = None,
                 batcher: Batcher | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.on_queued = on_queued or (lambda: None)  # the message wrote mail to the outbox
        self.batcher = batcher  # group commit (gateway/batcher.py); without it, one transaction per message
        self.banned = BannedSenders(engine, delimiter=settings.policy.recipient_delimiter)

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.settings.policy.trusted_networks)

    def peer_trusted(self, peer: Any) -> bool:
        return host_in_networks(peer[0] if isinstance(peer, tuple) else str(peer), self.trusted_networks)

    def envelope_of(self, session: SmtpSession, envelope: SmtpEnvelope, source: str = "smtp") -> Envelope:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer or "")
        return Envelope(mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos), peer=peer, source=source)

    async def refuse(self, envelope: Envelope, reason: Reason, detail: str, session: SmtpSession | None = None) -> str:
        """Log a dialogue-time refusal and return its reply; beyond :data:`MAX_REFUSALS`
        in one session, the session is closed instead (SPEC §3)."""
        if session is not None:
            count = getattr(session, REFUSALS, 0) + 1
            setattr(session, REFUSALS, count)
            if count > MAX_REFUSALS:
                return await self.close_session(envelope, session, f"{reason.value}: {detail}")
        log.warning("refused from %s (%s): %s", redact(envelope.mail_from), envelope.peer, redact(detail))
        await asyncio.to_thread(record_refusal, self.engine, None, envelope, reason, detail)
        return smtp_reply(reason)

    async def close_session(self, envelope: Envelope, session: SmtpSession, last: str) -> str:
        """``421 4.7.0``, logged once per session however many commands follow."""
        if not getattr(session, CLOSED, False):
            setattr(session, CLOSED, True)
            detail = f"more than {MAX_REFUSALS} refusals in one session, closed; the next: {last}"
            log.warning("closing session of %s (%s): %s", redact(envelope.mail_from), envelope.peer, redact(detail))
            await asyncio.to_thread(record_refusal, self.engine, None, envelope, Reason.TOO_MANY_REFUSALS, detail)
        return smtp_reply(Reason.TOO_MANY_REFUSALS)

    def over_refusals(self, session: SmtpSession) -> bool:
        return getattr(session, REFUSALS, 0) >= MAX_REFUSALS

    async def handle_MAIL(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str,
                          mail_options: list[str]) -> str:
        if self.over_refusals(session):
            env = Envelope(mail_from=address, peer=self.envelope_of(session, envelope).peer)
            return await self.close_session(env, session, f"MAIL FROM:<{address[:100]}>")
        if not self.peer_trusted(session.peer):
            env = Envelope(mail_from=address, peer=self.envelope_of(session, envelope).peer)
            return await self.refuse(env, Reason.UNTRUSTED_PEER, f"peer {env.peer} is not in policy.trusted_networks",
                                     session)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        env = self.envelope_of(session, envelope)
        if classify_recipient(address, self.settings) is None:
            return await self.refuse(Envelope(env.mail_from, (address,), env.peer), Reason.UNKNOWN_RECIPIENT,
                                     f"{address} is not a statusmail address", session)
        if await self.banned.contains(envelope.mail_from or ""):
            return await self.refuse(Envelope(env.mail_from, (address,), env.peer), Reason.BANNED,
                                     f"envelope sender {envelope.mail_from} is banned", session)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        source = "lmtp" if isinstance(server, LMTP) else "smtp"
        env = self.envelope_of(session, envelope, source)
        raw = envelope.original_content or b""
        if self.batcher is not None:
            outcome: Outcome = await self.batcher.submit(raw, env)
        else:
            outcome = await asyncio.to_thread(run, raw, env, self.settings, self.engine)
        if outcome.queued:
            self.on_queued()
        reply = smtp_reply(outcome.reason)
        if reply.startswith("5"):  # logged by the pipeline; counts toward MAX_REFUSALS
            setattr(session, REFUSALS, getattr(session, REFUSALS, 0) + 1)
        if source == "lmtp":
            # RFC 2033 §4.2: one reply per accepted recipient after DATA. The message is
            # stored once, so every recipient shares its outcome.
            return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))
        return reply

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's default answer leaks the exception text; ours says only 451."""
        log.error("SMTP session error: %s", "".join(traceback.format_exception(error)).rstrip())
        if isinstance(error, StoreUnavailable):
            return DEFERRED_STORE
        return DEFERRED_ERROR


class GatewaySMTP(ChunkedDataSMTP):
    """The gateway's SMTP: aiosmtpd's own refusals spoken in RFC 3463 terms and logged."""

    # The reverse-path of the MAIL command being answered: aiosmtpd refuses a declared
    # SIZE= (RFC 1870 §6) before it sets the envelope's, and the log names the sender.
    mail_from_asked = ""

    async def smtp_MAIL(self, arg: str | None) -> None:
        words = (arg or "").split(":", 1)[-1].split()
        self.mail_from_asked = words[0].strip("<>")[:320] if words else ""
        try:
            await super().smtp_MAIL(arg)
        finally:
            self.mail_from_asked = ""

    def push(self, status: str) -> Awaitable[None]:  # type: ignore[override]
        # Not a coroutine itself: every reply line of every session passes here, and an
        # extra coroutine frame per line showed in the listener's profile (bench/ingest.py).
        reason = AIOSMTPD_REFUSALS.get(status)
        if reason is not None and self.session is not None:
            return self.push_refusal(reason)
        if status == REFUSED_SESSION:
            return self.push_and_close(status)
        return super().push(status)

    async def push_and_close(self, status: str) -> None:
        await super().push(status)
        if self.transport is not None:
            self.transport.close()

    async def push_refusal(self, reason: Reason) -> None:
        assert self.session is not None
        handler: StatusHandler = self.event_handler
        env = handler.envelope_of(self.session, self.envelope or SmtpEnvelope())
        if not env.mail_from and self.mail_from_asked:
            env = dataclasses.replace(env, mail_from=self.mail_from_asked)
        detail = REFUSAL_DETAILS.get(
            reason, f"larger than smtp.max_message_bytes ({handler.settings.smtp.max_message_bytes})")
        reply = await handler.refuse(env, reason, detail, self.session)
        if reply == REFUSED_SESSION:
            await self.push_and_close(reply)
        else:
            await super().push(reply)


class GatewayLMTP(LMTP, GatewaySMTP):
    """The same, speaking LMTP (RFC 2033) for a Postfix or Exchange in front."""


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.smtp.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.smtp.tls_cert, settings.smtp.tls_key)
    return context


def protocol_factory(settings: Settings, handler: StatusHandler) -> Callable[[], SMTP]:
    """What ``loop.create_server`` needs to speak SMTP (or LMTP) with our handler."""
    cls = GatewayLMTP if settings.smtp.lmtp else GatewaySMTP
    context = tls_context(settings)

    authenticator = Authenticator(settings.smtp.auth_file) if settings.smtp.auth_file else None

    def build() -> SMTP:
        return cls(handler, data_size_limit=settings.smtp.max_message_bytes, enable_SMTPUTF8=True,
                   decode_data=False, hostname=settings.domain, ident="statusmail",
                   tls_context=context, require_starttls=settings.smtp.require_tls,
                   authenticator=authenticator, auth_required=settings.smtp.require_auth,
                   # RFC 4954 §4: no password over an unencrypted channel.
                   auth_require_tls=True)
    return build
