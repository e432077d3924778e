"""Moderation actions: each changes one thing and leaves an audit entry (who, what, why).

Used by the command line; every function takes an open session and the caller commits,
so the change and its audit entry are one transaction.
"""

from __future__ import annotations

import getpass

from sqlmodel import Session

from statusmail.config import Settings
from statusmail.outbound.notices import queue_notice
from statusmail.outbound.notify import first_line, notify_post
from statusmail.store.models import AuditEntry, Post, User


class ModerationError(ValueError):
    """The action does not apply (a post that is not held, say)."""


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def audit(session: Session, actor: str, action: str, target: str, reason: str = "") -> None:
    session.add(AuditEntry(actor=actor, action=action, target=target, reason=reason))


def ban(session: Session, user: User, reason: str, actor: str) -> None:
    user.banned, user.ban_reason = True, reason
    session.add(user)
    audit(session, actor, "ban", user.email, reason)


def unban(session: Session, user: User, actor: str) -> None:
    if not user.banned:
        raise ModerationError(f"{user.email} is not banned")
    user.banned, user.ban_reason = False, ""
    session.add(user)
    audit(session, actor, "unban", user.email)


def reset_bounces(session: Session, user: User, actor: str) -> None:
    user.hard_bounces, user.mail_suspended = 0, False
    session.add(user)
    audit(session, actor, "reset-bounces", user.email)


def set_status(session: Session, post: Post, status: str, reason: str, actor: str, action: str) -> None:
    post.status, post.status_reason = status, reason
    session.add(post)
    audit(session, actor, action, f"post {post.id}", reason)


def hide(session: Session, post: Post, reason: str, actor: str) -> None:
    if post.status == "deleted":
        raise ModerationError(f"post {post.id} is deleted")
    set_status(session, post, "hidden", reason, actor, "hide")


def unhide(session: Session, post: Post, actor: str) -> None:
    if post.status != "hidden":
        raise ModerationError(f"post {post.id} is not hidden (it is {post.status})")
    set_status(session, post, "visible", "", actor, "unhide")


def delete(session: Session, post: Post, reason: str, actor: str) -> None:
    set_status(session, post, "deleted", reason, actor, "delete")


def approve(session: Session, settings: Settings, post: Post, actor: str) -> int:
    """Publish a held post and send the notifications it would have caused."""
    if post.status != "held":
        raise ModerationError(f"post {post.id} is not held (it is {post.status})")
    set_status(session, post, "visible", "", actor, "approve")
    return notify_post(session, settings, post)


def reject(session: Session, settings: Settings, post: Post, reason: str, actor: str) -> None:
    """Refuse a held post and tell its author why, once."""
    if post.status != "held":
        raise ModerationError(f"post {post.id} is not held (it is {post.status})")
    set_status(session, post, "deleted", reason, actor, "reject")
    author = session.get(User, post.author_id)
    assert author is not None
    queue_notice(session, settings, author, "rejected", kind="rejection",
                 subject=f"Not posted: {first_line(post.body, 60)}", context={"reason": reason, "text": post.body},
                 in_reply_to=post.message_id)
