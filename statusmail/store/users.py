"""The user directory: finding, registering and describing users."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.signing import feed_url
from statusmail.store.db import insert_values
from statusmail.store.models import User

ROLES = ("staff", "leader", "admin")
HANDLE_CHARS = re.compile(r"[^\w.-]")


def normalize_email(address: str) -> str:
    """Addresses are compared lowercase (practice of every mail system a company runs)."""
    return address.strip().strip("<>").lower()


# RFC 5321 §4.1.2 in the form a company directory holds: one "@", a local part and a
# domain, neither empty, no spaces or address punctuation ("a@b@c" is no mailbox).
MAIL_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\\\"]+@[^\s@<>()\[\],;:\\\"]+")


def is_mail_address(address: str) -> bool:
    domain = address.rpartition("@")[2]
    return MAIL_ADDRESS.fullmatch(address) is not None and not domain.startswith(".") and ".." not in domain


def base_address(address: str, delimiter: str = "+") -> str:
    """``alice+again@corp.example`` is ``alice@corp.example`` for identity, bans and limits
    (SPEC §5, ``policy.recipient_delimiter``; "" keeps sub-addresses distinct)."""
    address = normalize_email(address)
    local, at, domain = address.rpartition("@")
    if not delimiter or not at or delimiter not in local:
        return address
    base = local.split(delimiter, 1)[0]
    return f"{base}@{domain}" if base else address


# session.info key: users already loaded in this session, by address (see preload_users).
USERS_BY_EMAIL = "statusmail.users_by_email"


def find_user(session: Session, email: str) -> User | None:
    email = normalize_email(email)
    user = session.info.get(USERS_BY_EMAIL, {}).get(email)
    if user is not None:
        return user
    return session.exec(select(User).where(User.email == email)).first()


def preload_users(session: Session, emails: Iterable[str]) -> None:
    """Load these users with one query, for :func:`find_user` to find for the rest of the session.

    The SMTP listener commits the messages of concurrent sessions together
    (``gateway/batcher.py``); one query for the batch's senders replaces one ORM query
    per message, which was the largest single cost of a post. Only users that exist are
    remembered, so a user registered (or rolled back) later in the batch is looked up
    as before.
    """
    known: dict[str, User] = session.info.setdefault(USERS_BY_EMAIL, {})
    wanted = {normalize_email(e) for e in emails if e} - known.keys()
    if wanted:
        known.update((u.email, u) for u in session.execute(USERS_BY_EMAILS, {"emails": sorted(wanted)}).scalars())


# Built once: coercing each address of an IN list into a bound parameter cost as much as the query.
USERS_BY_EMAILS = select(User).where(col(User.email).in_(bindparam("emails", expanding=True)))


def find_user_by_handle(session: Session, handle: str) -> User | None:
    return session.exec(select(User).where(User.handle == handle.lower().lstrip("@"))).first()


def free_handle(session: Session, email: str) -> str:
    """The local part of the address; a number is added when another user has it."""
    base = HANDLE_CHARS.sub("", email.partition("@")[0].lower())[:60] or "user"
    from statusmail.store.record import handle_taken_in_batch

    handle, n = base, 1
    while find_user_by_handle(session, handle) is not None or handle_taken_in_batch(session, handle):
        n += 1
        handle = f"{base}{n}"
    return handle


def register_user(session: Session, email: str, *, name: str = "", role: str = "staff", team: str = "",
                  manager_email: str = "", timezone: str = "") -> User:
    """Create a user now (the command line, the directory import); the caller commits.
    The pipeline registers senders through its recorder instead (``store/record.py``)."""
    email = normalize_email(email)
    user_id = insert_values(session, User, email=email, name=name, handle=free_handle(session, email), role=role,
                            team=team, manager_email=normalize_email(manager_email) if manager_email else "",
                            timezone=timezone)
    user = session.get(User, user_id)
    assert user is not None
    return user


def new_user(session: Session, email: str, name: str = "") -> User:
    """A user to register, not yet written: the pipeline's recorder inserts it."""
    email = normalize_email(email)
    return User(email=email, name=name, handle=free_handle(session, email))


def display_name(user: User) -> str:
    return user.name or user.email


def user_json(user: User, settings: Settings) -> dict[str, Any]:
    """The JSON user object of SPEC §6."""
    return {
        "email": user.email,
        "name": user.name,
        "handle": user.handle,
        "role": user.role,
        "team": user.team,
        "manager": user.manager_email or None,
        "timezone": user.timezone or settings.digest.default_timezone,
        "digest": user.digest or settings.digest.default_frequency,
        "checkin": "on" if user.checkin else "off",
        "banned": user.banned,
        "ban_reason": user.ban_reason,
        "mail_suspended": user.mail_suspended,
        "hard_bounces": user.hard_bounces,
        **({"feed_url": feed_url(settings, user.id)} if settings.web.enabled and user.id is not None else {}),
    }


@dataclass(frozen=True)
class SetUserFields:
    """A decision's change to a user's own settings (digest, timezone…), applied by the
    inbound recorder once the user has an id."""

    user: User
    values: tuple[tuple[str, object], ...]

    def apply(self, session: Session) -> bool:
        session.execute(update(User).where(col(User.id) == self.user.id).values(dict(self.values)))
        return False
