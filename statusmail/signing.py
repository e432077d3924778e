"""Per-user secrets derived from the gateway's key: feed URLs and one-click unsubscribe.

A token is ``<user id>.<HMAC-SHA256(key, purpose, user id)>`` (the MAC truncated to 128
bits, base32): nothing to store, the same in every ``serve`` process that shares
``gateway.secret_key_file``, and a digest run of thousands of readers signs its
``List-Unsubscribe`` URLs without a query. Each purpose has its own MAC, so a feed token
cannot unsubscribe anyone, nor an unsubscribe URL read a feed. Changing the key file
revokes every such token at once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from statusmail.config import Settings

FEED = "feed"
UNSUBSCRIBE = "unsubscribe"


@functools.cache
def _read_key(path: str) -> bytes:
    file = Path(path)
    if not file.exists():  # `init` makes it; a test or a first `serve` may come first
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return file.read_bytes().strip()


def secret_key(settings: Settings) -> bytes:
    """The gateway's secret key (``gateway.secret_key_file``), created owner-only if missing."""
    try:
        return _read_key(str(Path(settings.gateway.secret_key_file).resolve()))
    except FileExistsError:  # another process created it a moment ago
        return _read_key(str(Path(settings.gateway.secret_key_file).resolve()))


def derive(settings: Settings, purpose: str) -> bytes:
    """A key of its own for one purpose (session cookies, CSRF…)."""
    return hmac.new(secret_key(settings), f"statusmail:{purpose}".encode(), hashlib.sha256).digest()


def _mac(settings: Settings, purpose: str, user_id: int) -> str:
    digest = hmac.new(derive(settings, purpose), str(user_id).encode(), hashlib.sha256).digest()[:16]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def user_token(settings: Settings, purpose: str, user_id: int) -> str:
    return f"{user_id}.{_mac(settings, purpose, user_id)}"


def token_user(settings: Settings, purpose: str, token: str) -> int | None:
    """The user id ``token`` was made for, or None if it is not one of ours."""
    number, _, mac = token.partition(".")
    if not number.isdigit() or len(number) > 18:
        return None
    user_id = int(number)
    return user_id if hmac.compare_digest(mac.encode(), _mac(settings, purpose, user_id).encode()) else None


def feed_url(settings: Settings, user_id: int, tag: str = "") -> str:
    """The reader's secret Atom URL (``feed_url`` in the user object, SPEC §6 and §8)."""
    from urllib.parse import quote

    path = f"/tags/{quote(tag, safe='')}.atom" if tag else "/feed.atom"
    return f"{settings.web_url}{path}?token={user_token(settings, FEED, user_id)}"


def unsubscribe_url(settings: Settings, user_id: int) -> str:
    """The RFC 8058 one-click URL for the reader's digest; empty without ``web.base_url``."""
    if not settings.web.base_url:
        return ""
    return f"{settings.web_url}/unsubscribe/{user_token(settings, UNSUBSCRIBE, user_id)}"
