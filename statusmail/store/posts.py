"""Named queries about posts and their JSON form (SPEC §6)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from statusmail.store.likes import like_counts
from statusmail.store.models import Mention, Outbox, Post, PostTag, User

STATUSES = ("visible", "hidden", "held", "deleted")


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the JSON objects promise."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def posts_json(session: Session, posts: Sequence[Post]) -> list[dict[str, Any]]:
    """JSON post objects for many posts with four queries, not four per post."""
    ids = [p.id for p in posts]
    if not ids:
        return []
    authors = {u.id: u for u in session.exec(select(User).where(col(User.id).in_({p.author_id for p in posts})))}
    tags: dict[int, list[str]] = {}
    for tag in session.exec(select(PostTag).where(col(PostTag.post_id).in_(ids)).order_by(PostTag.tag)):
        tags.setdefault(tag.post_id, []).append(tag.tag)
    mentions: dict[int, list[str]] = {}
    rows = session.exec(select(Mention.post_id, User.email).join(User, col(User.id) == Mention.user_id)
                        .where(col(Mention.post_id).in_(ids)).order_by(User.email))
    for post_id, email in rows:
        mentions.setdefault(post_id, []).append(email)
    counts = reply_counts(session, posts)
    likes = like_counts(session, ids)
    result = []
    for post in posts:
        author = authors[post.author_id]
        result.append({
            "id": post.id,
            "author": author.email,
            "author_name": author.name,
            "body": post.body,
            "created_at": iso(post.created_at),
            "thread_id": post.thread_id,
            "parent_id": post.parent_id,
            "tags": tags.get(post.id, []),  # type: ignore[arg-type]
            "mentions": mentions.get(post.id, []),  # type: ignore[arg-type]
            "status": post.status,
            "reply_count": counts.get(post.id, 0),  # type: ignore[arg-type]
            "likes": likes.get(post.id, 0),  # type: ignore[arg-type]
            "message_id": post.message_id,
        })
    return result


def reply_counts(session: Session, posts: Sequence[Post]) -> dict[int, int]:
    """Visible replies: for a root, every reply in its thread; for a reply, its direct answers."""
    roots = [p.id for p in posts if p.id == p.thread_id]
    others = [p.id for p in posts if p.id != p.thread_id]
    counts: dict[int, int] = {}
    if roots:
        rows = session.exec(select(Post.thread_id, func.count()).where(col(Post.thread_id).in_(roots),
                            col(Post.id) != col(Post.thread_id), Post.status == "visible").group_by(col(Post.thread_id)))
        counts.update({k: v for k, v in rows if k is not None})
    if others:
        rows = session.exec(select(Post.parent_id, func.count()).where(col(Post.parent_id).in_(others),
                            Post.status == "visible").group_by(col(Post.parent_id)))
        counts.update({k: v for k, v in rows if k is not None})
    return counts


def list_posts(session: Session, *, author: User | None = None, tag: str | None = None,
               since: datetime | None = None, status: str | None = None, limit: int = 100) -> list[Post]:
    """Newest first, replies included; every status unless one is asked for."""
    query = select(Post)
    if author is not None:
        query = query.where(Post.author_id == author.id)
    if tag:
        query = query.join(PostTag, col(PostTag.post_id) == Post.id).where(PostTag.tag == tag.lower().lstrip("#"))
    if since is not None:
        query = query.where(Post.created_at >= since)
    if status:
        query = query.where(Post.status == status)
    query = query.order_by(col(Post.created_at).desc(), col(Post.id).desc()).limit(limit)
    return list(session.exec(query))


def thread_posts(session: Session, thread_id: int) -> list[Post]:
    """Every post of a thread, oldest first."""
    return list(session.exec(select(Post).where(Post.thread_id == thread_id).order_by(col(Post.created_at), col(Post.id))))


def thread_closed(session: Session, post: Post) -> bool:
    """Whether ``post``'s thread takes no replies and may not be named to anyone (SPEC §3
    Closed threads): the post itself or its thread's root is held, hidden or deleted.

    The one notion of a visible thread: replies (by token or by headers), notifications,
    quoting and ``mute`` all ask it, so nothing of a closed thread leaks through any of them.
    """
    if post.status != "visible":
        return True
    if post.thread_id is None or post.thread_id == post.id:
        return False
    root = session.get(Post, post.thread_id)
    return root is None or root.status != "visible"


def any_known_message_id(session: Session, message_ids: Sequence[str]) -> bool:
    """Whether any of ``message_ids`` is a post's own or that of a mail statusmail sent."""
    ids = [m for m in message_ids if m][:100]
    if not ids:
        return False
    return any(session.exec(select(column).where(col(message_id).in_(ids)).limit(1)).first() is not None
               for column, message_id in ((Post.id, Post.message_id), (Outbox.id, Outbox.message_id)))


def find_post_by_message_id(session: Session, message_ids: Sequence[str]) -> Post | None:
    """The post that the first known Message-ID of ``message_ids`` is about.

    ``message_ids`` is in order of preference (In-Reply-To, then References from the
    newest back). Both the authors' original Message-IDs and those of every mail
    statusmail sent are known.
    """
    ids = [m for m in message_ids if m][:100]
    if not ids:
        return None
    found: dict[str, int] = {}
    for message_id, post_id in session.exec(select(Post.message_id, Post.id).where(col(Post.message_id).in_(ids))):
        found.setdefault(message_id, post_id)  # type: ignore[arg-type]
    for message_id, post_id in session.exec(select(Outbox.message_id, Outbox.post_id)
                                            .where(col(Outbox.message_id).in_(ids), col(Outbox.post_id).is_not(None))):
        found.setdefault(message_id, post_id)  # type: ignore[arg-type]
    for message_id in ids:
        if message_id in found:
            return session.get(Post, found[message_id])
    return None


def answers_mail_about_no_post(session: Session, message_ids: Sequence[str]) -> bool:
    """Whether the first known Message-ID of ``message_ids`` (in order of preference) is
    one of our mails about no one post (a digest, an answer, a notice): an outbox row
    without a post, and not a post's own Message-ID."""
    ids = [m for m in message_ids if m][:100]
    if not ids:
        return False
    posts = set(session.exec(select(Post.message_id).where(col(Post.message_id).in_(ids))))
    outbox = {m: p for m, p in session.exec(select(Outbox.message_id, Outbox.post_id)
                                            .where(col(Outbox.message_id).in_(ids)))}
    for message_id in ids:
        if message_id in posts:
            return False
        if message_id in outbox:
            return outbox[message_id] is None
    return False
