"""What the pages show: visible posts, and each post as the templates see it.

Only visible posts in threads whose root is visible are ever selected here (SPEC §8,
DESIGN: nothing held, hidden or deleted is shown). Lists are keyset-paged on
(created_at, id), so page 500 costs what page 1 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.inbound.recipients import token_address
from statusmail.outbound.notify import first_line
from statusmail.outbound.tokens import new_tokens
from statusmail.store.likes import like_counts
from statusmail.store.models import Post, PostTag, ReplyToken, User, utcnow
from statusmail.store.posts import iso
from statusmail.store.search import search_posts, words

PAGE = 20


@dataclass(frozen=True)
class Page:
    posts: list[Post]
    next_before: int | None  # id of the last post shown, when there are more


def visible() -> tuple[Any, Any]:
    """(root alias, condition): the post and its thread's root are visible."""
    root = aliased(Post)
    return root, and_(col(Post.status) == "visible", col(root.status) == "visible")


def cursor(session: Session, before: int | None) -> tuple[datetime, int] | None:
    if before is None:
        return None
    post = session.get(Post, before)
    return (post.created_at, before) if post is not None else None


def paged(session: Session, statement: Any, before: int | None, limit: int = PAGE) -> Page:
    position = cursor(session, before)
    if position is not None:
        moment, post_id = position
        statement = statement.where(or_(col(Post.created_at) < moment,
                                        and_(col(Post.created_at) == moment, col(Post.id) < post_id)))
    rows = list(session.exec(statement.order_by(col(Post.created_at).desc(), col(Post.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def feed(session: Session, before: int | None = None, limit: int = PAGE) -> Page:
    """New posts (thread roots), newest first."""
    statement = select(Post).where(Post.status == "visible", col(Post.id) == col(Post.thread_id))
    return paged(session, statement, before, limit)


def tagged(session: Session, tag: str, before: int | None = None, limit: int = PAGE) -> Page:
    root, condition = visible()
    statement = (select(Post).join(root, col(root.id) == col(Post.thread_id))
                 .join(PostTag, col(PostTag.post_id) == col(Post.id)).where(condition, PostTag.tag == tag))
    return paged(session, statement, before, limit)


def by_author(session: Session, author: User, before: int | None = None, limit: int = PAGE) -> Page:
    root, condition = visible()
    statement = (select(Post).join(root, col(root.id) == col(Post.thread_id))
                 .where(condition, Post.author_id == author.id))
    return paged(session, statement, before, limit)


def search_words(query: str) -> list[str]:
    return words(query)


def search(session: Session, query: str, before: int | None = None, limit: int = PAGE) -> Page:
    rows = search_posts(session, query, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def thread(session: Session, post_id: int) -> list[Post] | None:
    """The visible posts of the thread ``post_id`` belongs to, oldest first; None when
    the post or its root is not visible."""
    post = session.get(Post, post_id)
    if post is None or post.status != "visible" or post.thread_id is None:
        return None
    root = session.get(Post, post.thread_id)
    if root is None or root.status != "visible":
        return None
    return list(session.exec(select(Post).where(Post.thread_id == root.id, Post.status == "visible")
                             .order_by(col(Post.created_at), col(Post.id))))


def reader_tokens(session: Session, reader: User, post_ids: Sequence[int]) -> dict[int, str]:
    """The reader's reply token for each post, minting the missing ones in one INSERT
    (a concurrent request minting the same pair loses quietly, and both read the winner)."""
    wanted = sorted(set(post_ids))
    if not wanted:
        return {}
    query = select(ReplyToken.post_id, ReplyToken.token).where(ReplyToken.user_id == reader.id,
                                                              col(ReplyToken.post_id).in_(wanted))
    known: dict[int, str] = dict(session.exec(query).all())
    missing = [p for p in wanted if p not in known]
    if missing:
        insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
        now = utcnow()
        session.execute(insert(ReplyToken).on_conflict_do_nothing(), [
            {"token": token, "user_id": reader.id, "post_id": post_id, "created_at": now}
            for post_id, token in zip(missing, new_tokens(len(missing)))])
        known = dict(session.exec(query).all())
    return known


def reply_counts(session: Session, posts: Sequence[Post]) -> dict[int, int]:
    """Visible replies: for a root, every reply in its thread; for a reply, its direct
    answers. Counted from the threads' rows (ix_posts_thread_created), not by parent_id,
    which has no index: ingest pays for every index on posts (revision 0003)."""
    threads = sorted({p.thread_id for p in posts if p.thread_id is not None})
    if not threads:
        return {}
    counts: dict[int, int] = {}
    rows = session.exec(select(Post.id, Post.thread_id, Post.parent_id).where(
        col(Post.thread_id).in_(threads), Post.status == "visible"))
    for post_id, thread_id, parent_id in rows:
        if post_id == thread_id or thread_id is None:
            continue
        counts[thread_id] = counts.get(thread_id, 0) + 1
        if parent_id is not None and parent_id != thread_id:
            counts[parent_id] = counts.get(parent_id, 0) + 1
    return counts


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def as_utc(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def post_views(session: Session, settings: Settings, reader: User, posts: Sequence[Post], *,
               reply_links: bool = True) -> list[dict[str, Any]]:
    """Each post as the templates show it: author, time, tags, reply count, likes, and the
    reader's own reply link (unless ``reply_links`` is off: Atom has none). A handful of
    queries for the whole page."""
    if not posts:
        return []
    ids = [p.id for p in posts if p.id is not None]
    authors = {u.id: u for u in session.exec(select(User).where(col(User.id).in_({p.author_id for p in posts})))}
    tags: dict[int, list[str]] = {}
    for post_id, tag in session.exec(select(PostTag.post_id, PostTag.tag).where(col(PostTag.post_id).in_(ids))
                                     .order_by(PostTag.tag)):
        tags.setdefault(post_id, []).append(tag)
    roots: dict[int | None, Post] = {p.id: p for p in posts if p.id == p.thread_id}
    missing_roots = {p.thread_id for p in posts if p.thread_id not in roots and p.thread_id is not None}
    if missing_roots:
        roots.update({p.id: p for p in session.exec(select(Post).where(col(Post.id).in_(missing_roots)))})
    counts = reply_counts(session, posts)  # a root: its thread's replies; a reply: its answers
    likes = like_counts(session, ids)
    tokens = reader_tokens(session, reader, ids) if reply_links else {}
    zone = ZoneInfo(reader.timezone or settings.digest.default_timezone)
    views = []
    for post in posts:
        author = authors[post.author_id]
        root = roots.get(post.thread_id)
        subject = "Re: " + first_line(root.body if root is not None else post.body)
        token = tokens.get(post.id)  # type: ignore[arg-type]
        reply_url = f"mailto:{token_address(token, settings)}?subject={quote(subject, safe='')}" if token else ""
        created = as_utc(post.created_at)
        views.append({
            "id": post.id, "thread_id": post.thread_id, "is_reply": post.id != post.thread_id,
            "body": post.body, "author_name": author.name or author.email, "author_email": author.email,
            "author_handle": author.handle, "created_iso": iso(created), "created": local_time(created, zone),
            "tags": tags.get(post.id, []),  # type: ignore[arg-type]
            "reply_count": counts.get(post.id, 0),  # type: ignore[arg-type]
            "reply_url": reply_url, "likes": likes.get(post.id, 0),  # type: ignore[arg-type]
            "thread_subject": first_line(root.body if root is not None else post.body),
        })
    return views

