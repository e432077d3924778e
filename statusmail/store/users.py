"""The user directory: finding, registering and describing users."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, select

from statusmail.gateway.config import Settings
from statusmail.store.models import User

ROLES = ("staff", "leader", "admin")
HANDLE_CHARS = re.compile(r"[^\w.-]")


def normalize_email(address: str) -> str:
    """Addresses are compared lowercase (practice of every mail system a company runs)."""
    return address.strip().strip("<>").lower()


def find_user(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normalize_email(email))).first()


def find_user_by_handle(session: Session, handle: str) -> User | None:
    return session.exec(select(User).where(User.handle == handle.lower().lstrip("@"))).first()


def free_handle(session: Session, email: str) -> str:
    """The local part of the address; a number is added when another user has it."""
    base = HANDLE_CHARS.sub("", email.partition("@")[0].lower())[:60] or "user"
    handle, n = base, 1
    while find_user_by_handle(session, handle) is not None:
        n += 1
        handle = f"{base}{n}"
    return handle


def register_user(session: Session, email: str, *, name: str = "", role: str = "staff", team: str = "",
                  manager_email: str = "", timezone: str = "") -> User:
    """Create a user; the caller commits."""
    email = normalize_email(email)
    user = User(email=email, name=name, handle=free_handle(session, email), role=role, team=team,
                manager_email=normalize_email(manager_email) if manager_email else "", timezone=timezone)
    session.add(user)
    session.flush()
    return user


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
        "banned": user.banned,
        "ban_reason": user.ban_reason,
        "mail_suspended": user.mail_suspended,
        "hard_bounces": user.hard_bounces,
    }
