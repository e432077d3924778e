"""Who is reading: sign-in links, sessions, the SSO header, CSRF (SPEC §8).

``auth = "link"``: ``POST /login`` records the request (:class:`SignInRequest`, counted for
the per-address and per-client limits) and, when the address is a user's, queues a mail
with a one-time link through the outbox in the same transaction. The link's token is
stored as its SHA-256, valid :data:`LINK_MINUTES`, used once (a conditional UPDATE
decides, so two clicks racing in two processes cannot both win). Using it creates a
:class:`WebSession` row; the cookie carries the session's random secret.

``auth = "header"``: the reader is the user named by ``web.header_name``, believed only
when the TCP peer is in ``web.trusted_proxies``; from anyone else the header is ignored.

CSRF: every POST that acts on a session carries ``csrf``, an HMAC of the session secret
under a key derived for that purpose; ``SameSite=Lax`` is the second line.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, update
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.logs import redact
from statusmail.outbound.compose import Draft, build_message
from statusmail.outbound.outbox import enqueue
from statusmail.outbound.tokens import new_token
from statusmail.signing import derive
from statusmail.store.db import insert_values
from statusmail.store.models import SignInRequest, SignInToken, User, WebSession, utcnow
from statusmail.store.users import find_user, normalize_email

log = logging.getLogger(__name__)

COOKIE = "statusmail_session"
LINK_MINUTES = 15
SESSION_DAYS = 14
PER_ADDRESS_PER_HOUR = 5
PER_CLIENT_PER_HOUR = 20


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(settings: Settings, session_secret: str) -> str:
    return hmac.new(derive(settings, "csrf"), session_secret.encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, session_secret: str, offered: str) -> bool:
    return bool(offered) and hmac.compare_digest(offered.encode(), csrf_token(settings, session_secret).encode())


def is_trusted_proxy(settings: Settings, peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.web.trusted_proxies)


def may_read(user: User | None) -> User | None:
    """Banned users read nothing; a suspended mailbox does not stop reading."""
    return user if user is not None and not user.banned else None


def session_user(session: Session, secret: str) -> User | None:
    if not secret or len(secret) > 128:
        return None
    row = session.get(WebSession, digest(secret))
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    return may_read(session.get(User, row.user_id))


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they are UTC."""
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def header_user(session: Session, settings: Settings, peer: str, value: str | None) -> User | None:
    if not value or not is_trusted_proxy(settings, peer):
        return None
    return may_read(find_user(session, value))


@dataclass(frozen=True)
class SignInAnswer:
    limited: bool  # over a limit: 429, for known and unknown addresses alike
    queued: bool  # a mail went to the outbox (never shown to the client)


def request_link(session: Session, settings: Settings, email: str, client: str, now: datetime | None = None
                 ) -> SignInAnswer:
    """Record a sign-in request and, for a user under the limits, queue the link mail."""
    now = now or utcnow()
    email = normalize_email(email)[:320]
    client = client[:64]
    hour_ago = now - timedelta(hours=1)
    by_address = session.exec(select(func.count()).select_from(SignInRequest).where(
        SignInRequest.email == email, col(SignInRequest.at) > hour_ago)).one()
    by_client = session.exec(select(func.count()).select_from(SignInRequest).where(
        SignInRequest.client == client, col(SignInRequest.at) > hour_ago)).one()
    if by_address >= PER_ADDRESS_PER_HOUR or by_client >= PER_CLIENT_PER_HOUR:
        log.warning("sign-in request for %s from %s refused: over the hourly limit", redact(email), client)
        return SignInAnswer(limited=True, queued=False)
    insert_values(session, SignInRequest, at=now, email=email, client=client)
    session.execute(delete(SignInRequest).where(col(SignInRequest.at) < now - timedelta(days=1)))
    user = may_read(find_user(session, email)) if "@" in email else None
    if user is None or user.mail_suspended:
        return SignInAnswer(limited=False, queued=False)
    token = new_token()
    session.execute(insert(SignInToken).values(token_hash=digest(token), user_id=user.id, created_at=now,
                                               expires_at=now + timedelta(minutes=LINK_MINUTES)))
    link = f"{settings.web_url}/login/{token}"
    draft = Draft(to=user.email, to_name=user.name, subject=f"Sign in to {settings.gateway.site_name}",
                  template="notice/sign_in", context={"name": user.name or user.email, "link": link,
                                                      "minutes": LINK_MINUTES},
                  reply_to=settings.gateway.request_address, user_id=user.id)
    enqueue(session, build_message(draft, settings, now=now), settings, kind="sign-in", to=user.email,
            user_id=user.id)
    return SignInAnswer(limited=False, queued=True)


def use_link(session: Session, token: str, now: datetime | None = None) -> tuple[User, str] | None:
    """Spend a sign-in token: the user and a new session secret, or None when the token
    is unknown, used or expired."""
    now = now or utcnow()
    if not token or len(token) > 128:
        return None
    hashed = digest(token)
    spent = session.execute(update(SignInToken).where(
        col(SignInToken.token_hash) == hashed, col(SignInToken.used_at).is_(None),
        col(SignInToken.expires_at) > now).values(used_at=now))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.get(SignInToken, hashed)
    user = may_read(session.get(User, row.user_id)) if row is not None else None
    if user is None:
        return None
    secret = new_token() + new_token()
    session.execute(insert(WebSession).values(secret_hash=digest(secret), user_id=user.id, created_at=now,
                                              expires_at=now + timedelta(days=SESSION_DAYS)))
    session.execute(delete(SignInToken).where(col(SignInToken.expires_at) < now - timedelta(days=1)))
    session.execute(delete(WebSession).where(col(WebSession.expires_at) < now))
    return user, secret


def end_session(session: Session, secret: str) -> None:
    session.execute(delete(WebSession).where(col(WebSession.secret_hash) == digest(secret)))
