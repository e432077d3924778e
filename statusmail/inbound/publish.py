"""Holding, storing and announcing a post.

Hold reasons are collected from every rule first and decided once (Mailman's way), so a
moderator sees all of them. A held post is stored with status ``held`` and announced
only when approved.
"""

from __future__ import annotations

import re

from sqlalchemy import bindparam, func
from sqlmodel import select

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Held
from statusmail.outbound.compose import new_message_id
from statusmail.outbound.notify import anyone_to_tell, notify_post
from statusmail.outbound.threadindex import new_thread_index
from statusmail.store.db import insert_values
from statusmail.store.direct import Direct
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
    """Write the post with its tags and mentions; a held one stops the pipeline here.

    Plain INSERTs on the driver (``insert_values``, ``store/direct.py``), not the ORM's
    flush: this runs for every message.
    """
    assert mail.user is not None and mail.user.id is not None
    parent = mail.parent
    post_id = insert_values(mail.session, Post, author_id=mail.user.id, body=mail.text, trimmed=mail.removed[:20000],
                            created_at=mail.now, parent_id=parent.id if parent else None,
                            thread_id=parent.thread_id if parent else None,
                            status="held" if mail.holds else "visible", status_reason="; ".join(mail.holds),
                            message_id=mail.message_id or new_message_id(mail.settings),
                            thread_index="" if parent else new_thread_index(mail.now))
    if parent is None:  # a root is its own thread
        SET_THREAD.execute(mail.session, {"post_id": post_id})
    if mail.tags:
        ADD_TAG.execute_many(mail.session, [{"post_id": post_id, "tag": tag} for tag in mail.tags])
    mentioned = sorted({u.id for u in mail.mentioned})  # type: ignore[type-var]
    if mentioned:
        ADD_MENTION.execute_many(mail.session, [{"post_id": post_id, "user_id": uid} for uid in mentioned])
    mail.post_id = post_id
    if mail.holds:
        raise Held(mail.holds)


POSTS = Post.__table__  # type: ignore[attr-defined]
SET_THREAD = Direct(POSTS.update().where(POSTS.c.id == bindparam("post_id")).values(thread_id=POSTS.c.id))
ADD_TAG = Direct(PostTag.__table__.insert(), ["post_id", "tag"])  # type: ignore[attr-defined]
ADD_MENTION = Direct(Mention.__table__.insert(), ["post_id", "user_id"])  # type: ignore[attr-defined]


def notify(mail: Incoming) -> None:
    """Queue the notifications a visible post causes (replies and mentions)."""
    assert mail.post_id is not None
    if not anyone_to_tell(is_reply=mail.parent is not None, mentions=bool(mail.mentioned)):
        return
    post = mail.session.get(Post, mail.post_id)
    assert post is not None
    mail.queued = notify_post(mail.session, mail.settings, post) > 0
