"""Holding, storing and announcing a post.

Hold reasons are collected from every rule first and decided once (Mailman's way), so a
moderator sees all of them. A held post is stored with status ``held`` and announced
only when approved.
"""

from __future__ import annotations

import re

from sqlalchemy import func
from sqlmodel import select

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Held
from statusmail.outbound.compose import new_message_id
from statusmail.outbound.notify import notify_post
from statusmail.outbound.threadindex import new_thread_index
from statusmail.store.models import Mention, Post, PostTag


def collect_holds(mail: Incoming) -> None:
    """Every reason this post should wait for a moderator."""
    assert mail.user is not None
    policy = mail.settings.policy
    if policy.hold_new_users:
        earlier = mail.session.exec(select(func.count()).select_from(Post).where(Post.author_id == mail.user.id)).one()
        if earlier == 0:
            mail.holds.append("first post of a new user")
    for pattern in policy.hold_patterns:
        if re.search(pattern, mail.text, re.IGNORECASE):
            mail.holds.append(f"matches hold pattern {pattern!r}")


def store_post(mail: Incoming) -> None:
    """Write the post with its tags and mentions; a held one stops the pipeline here."""
    assert mail.user is not None and mail.user.id is not None
    parent = mail.parent
    post = Post(author_id=mail.user.id, body=mail.text, trimmed=mail.removed[:20000], created_at=mail.now,
                parent_id=parent.id if parent else None, thread_id=parent.thread_id if parent else None,
                status="held" if mail.holds else "visible", status_reason="; ".join(mail.holds),
                message_id=mail.message_id or new_message_id(mail.settings))
    if parent is None:
        post.thread_index = new_thread_index(mail.now)
    mail.session.add(post)
    mail.session.flush()
    if post.thread_id is None:
        post.thread_id = post.id
    for tag in mail.tags:
        mail.session.add(PostTag(post_id=post.id, tag=tag))  # type: ignore[arg-type]
    for user in {u.id: u for u in mail.mentioned}.values():
        mail.session.add(Mention(post_id=post.id, user_id=user.id))  # type: ignore[arg-type]
    mail.session.flush()
    mail.post = post
    if mail.holds:
        raise Held(mail.holds)


def notify(mail: Incoming) -> None:
    """Queue the notifications a visible post causes (replies and mentions)."""
    assert mail.post is not None
    notify_post(mail.session, mail.settings, mail.post)
