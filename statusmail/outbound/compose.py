"""Building the messages statusmail sends (SPEC §4).

Every message is an ``EmailMessage`` serialized with ``email.policy.SMTP``: a fresh
Message-ID on the gateway's domain, ``List-Id`` and ``List-Unsubscribe`` (RFC 2919,
RFC 2369), ``Auto-Submitted`` (RFC 3834 §5), and for mail about a post the reply
address, the threading headers and Outlook's Thread-Topic/Thread-Index. User text goes
into a header only through :func:`one_line`, so no header can carry a user's line break.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from statusmail.config import Settings
from statusmail.outbound.templates import render_html, render_text
from statusmail.outbound.threadindex import new_thread_index, thread_topic
from statusmail.signing import unsubscribe_url

CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
SUBJECT_MAX = 180


def one_line(text: str, limit: int = SUBJECT_MAX) -> str:
    """User text made safe for a header: one line, no control characters, bounded."""
    flat = " ".join(CONTROL.sub(" ", text).split())
    # An encoded-word in user text would be decoded by the reader's client into
    # whatever it hides (RFC 2047 §5); break the "=?" so it stays literal text.
    flat = flat.replace("=?", "= ?")
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def new_message_id(settings: Settings) -> str:
    """A unique Message-ID on the gateway's domain (RFC 5322 §3.6.4)."""
    return f"<{secrets.token_hex(16)}@{settings.domain}>"


def mailbox(name: str, address: str) -> str:
    return formataddr((one_line(name, 100), address))


@dataclass
class Draft:
    """Everything needed to build one outgoing message."""

    to: str
    to_name: str
    subject: str
    template: str
    context: dict[str, Any]
    html: bool = True
    reply_to: str = ""  # "": gateway.request_address (mail not about one post, SPEC §4)
    from_name: str = ""  # "": outbound.from_name; mail about a post names its author
    auto_submitted: str = "auto-generated"  # or auto-replied (RFC 3834 §5)
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    thread_topic: str = ""
    thread_index: str = ""
    # The recipient's user id: with web.base_url, List-Unsubscribe also carries their
    # one-click URL (RFC 8058).
    user_id: int | None = None


def build_message(draft: Draft, settings: Settings, *, message_id: str | None = None,
                  now: datetime | None = None) -> EmailMessage:
    """The complete message for ``draft``: headers set in code, bodies from templates."""
    now = now or datetime.now(UTC)
    msg = EmailMessage()
    msg["From"] = mailbox(draft.from_name or settings.outbound.from_name, settings.gateway.address)
    msg["To"] = mailbox(draft.to_name, draft.to)
    msg["Subject"] = one_line(draft.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id or new_message_id(settings)
    # A reply to mail that is about no one post (a digest, an answer, a round-up) goes
    # to the command address: it is read as commands, never posted (SPEC §3, §4).
    msg["Reply-To"] = draft.reply_to or settings.gateway.request_address
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        msg["References"] = " ".join(draft.references)
    # Outlook groups by these (MS-OXOMSG 2.2.1.3); mail that starts no thread of ours
    # (a notice, a command answer) is a conversation of its own.
    msg["Thread-Topic"] = one_line(draft.thread_topic or thread_topic(draft.subject))
    msg["Thread-Index"] = draft.thread_index or new_thread_index(now)
    msg["List-Id"] = f"{one_line(settings.gateway.site_name, 60)} <{list_label(settings)}>"
    mailto = f"<mailto:{settings.gateway.request_address}?subject=unsubscribe>"
    one_click = unsubscribe_url(settings, draft.user_id) if draft.user_id is not None else ""
    if one_click:  # RFC 8058 §3.1: the https URI first, and the POST body it takes
        msg["List-Unsubscribe"] = f"<{one_click}>, {mailto}"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        msg["List-Unsubscribe"] = mailto
    msg["Auto-Submitted"] = draft.auto_submitted
    # Ask Exchange not to answer our mail with out-of-office notes (MS-OXCMAIL 2.2.3.2.14).
    msg["X-Auto-Response-Suppress"] = "All"
    context = {"site_name": settings.gateway.site_name, "status_address": settings.gateway.address,
               "request_address": settings.gateway.request_address, **draft.context}
    msg.set_content(render_text(draft.template, context), cte="quoted-printable")
    if draft.html:
        msg.add_alternative(render_html(draft.template, context), subtype="html", cte="quoted-printable")
    return msg


def list_label(settings: Settings) -> str:
    """RFC 2919 list identifier: ``status.corp.example``."""
    return f"{settings.status_local_part}.{settings.domain}"

