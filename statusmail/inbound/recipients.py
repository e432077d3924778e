"""Which of the gateway's addresses a recipient is, decided at RCPT time.

``status@domain`` takes new posts (and replies found by their headers),
``status+<token>@domain`` takes replies to one post for one recipient,
``status+bounce-<key>@domain`` is the VERP envelope sender of our own mail (bounces),
``status-request@domain`` takes commands. Anything else is not ours: ``550 5.1.1``.
Local parts are compared case-insensitively; RFC 5321 §2.4 allows it and users expect it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from statusmail.config import Settings

BOUNCE_PREFIX = "bounce-"


class Kind(enum.StrEnum):
    POST = "post"
    REPLY = "reply"
    COMMAND = "command"
    BOUNCE = "bounce"


@dataclass(frozen=True)
class Recipient:
    kind: Kind
    detail: str = ""  # the token, or the bounce key


def classify_recipient(address: str, settings: Settings) -> Recipient | None:
    """What a recipient address means here, or None when it is not one of ours."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if domain.lower() != settings.domain.lower():
        return None
    local = local.lower()
    if f"{local}@{domain.lower()}" == settings.gateway.request_address.lower():
        return Recipient(Kind.COMMAND)
    base, plus, extension = local.partition("+")
    if base != settings.status_local_part.lower():
        return None
    if not plus:
        return Recipient(Kind.POST)
    if extension.startswith(BOUNCE_PREFIX) and len(extension) > len(BOUNCE_PREFIX):
        return Recipient(Kind.BOUNCE, extension[len(BOUNCE_PREFIX):])
    if extension.isalnum():
        return Recipient(Kind.REPLY, extension)
    return None


def token_address(token: str, settings: Settings) -> str:
    return f"{settings.status_local_part}+{token}@{settings.domain}"


def bounce_address(key: str, settings: Settings) -> str:
    """The VERP envelope sender for one outbound message (RFC 5321 §4.5.5 bounces go here)."""
    return f"{settings.status_local_part}+{BOUNCE_PREFIX}{key}@{settings.domain}"
