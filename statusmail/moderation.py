"""Moderation actions: each changes one thing and leaves an audit entry (who, what, why).

Used by the command line; every function takes an open session and the caller commits,
so the change and its audit entry are one transaction. An action already in effect
(banning a banned user, unhiding a visible post) changes nothing, writes no audit entry
and returns False, so repeating a command is harmless and the trail has no duplicates.
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


def ban(session: Session, user: User, reason: str, actor: str) -> bool:
    if user.banned:
        return False
    user.banned, user.ban_reason = True, reason
    session.add(user)
    audit(session, actor, "ban", user.email, reason)
    return True


def unban(session: Session, user: User, actor: str) -> bool:
    if not user.banned:
        return False
    user.banned, user.ban_reason = False, ""
    session.add(user)
    audit(session, actor, "unban", user.email)
    return True


def reset_bounces(session: Session, user: User, actor: str) -> None:
    user.hard_bounces, user.mail_suspended = 0, False
    session.add(user)
    audit(session, actor, "reset-bounces", user.email)


def set_status(session: Session, post: Post, status: str, reason: str, actor: str, action: str) -> None:
    post.status, post.status_reason = status, reason
    session.add(post)
    audit(session, actor, action, f"post {post.id}", reason)


def hide(session: Session, post: Post, reason: str, actor: str) -> bool:
    if post.status == "deleted":
        raise ModerationError(f"post {post.id} is deleted")
    if post.status == "hidden":
        return False
    set_status(session, post, "hidden", reason, actor, "hide")
    return True


def unhide(session: Session, post: Post, actor: str) -> bool:
    if post.status == "visible":
        return False
    if post.status != "hidden":
        hint = "; `statusmail queue approve` publishes it" if post.status == "held" else ""
        raise ModerationError(f"post {post.id} is not hidden (it is {post.status}){hint}")
    set_status(session, post, "visible", "", actor, "unhide")
    return True


def delete(session: Session, post: Post, reason: str, actor: str) -> bool:
    if post.status == "deleted":
        return False
    set_status(session, post, "deleted", reason, actor, "delete")
    return True


def approve(session: Session, settings: Settings, post: Post, actor: str) -> int | None:
    """Publish a held post and send the notifications it would have caused; None when it
    is visible already (approved before): SPEC §6, a repeated action changes nothing."""
    if post.status == "visible":
        return None
    if post.status != "held":
        raise ModerationError(f"post {post.id} is not held (it is {post.status})")
    set_status(session, post, "visible", "", actor, "approve")
    return notify_post(session, settings, post)


def reject(session: Session, settings: Settings, post: Post, reason: str, actor: str) -> bool:
    """Refuse a held post and tell its author why, once; False when it is deleted already
    (rejected before): the author is not told a second time."""
    if post.status == "deleted":
        return False
    if post.status != "held":
        raise ModerationError(f"post {post.id} is not held (it is {post.status})")
    set_status(session, post, "deleted", reason, actor, "reject")
    author = session.get(User, post.author_id)
    assert author is not None
    queue_notice(session, settings, author, "rejected", kind="rejection",
                 subject=f"Not posted: {first_line(post.body, 60)}", context={"reason": reason, "text": post.body},
                 in_reply_to=post.message_id)
    return True
