"""Likes: a reader's ``+1`` / ``like`` / 👍 reply to a post (SPEC §3 reply keywords).

A like is a row, never a post and never a mail; the post object, notifications and
digests show the count. One like per reader and post: liking twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import Session, col, select

from statusmail.store.models import Like, Post, User

if TYPE_CHECKING:
    from statusmail.store.record import NewPost


def like_counts(session: Session, post_ids: Iterable[int | None]) -> dict[int, int]:
    """Likes per post, for the posts that have any."""
    ids = sorted({i for i in post_ids if i is not None})
    if not ids:
        return {}
    rows = session.exec(select(Like.post_id, func.count()).where(col(Like.post_id).in_(ids)).group_by(col(Like.post_id)))
    return dict(rows.all())


def has_liked(session: Session, user: User, post_id: int) -> bool:
    return user.id is not None and session.get(Like, (user.id, post_id)) is not None


@dataclass(frozen=True)
class LikeChange:
    """A decision's like (a :class:`~statusmail.store.changes.Change`), applied once the
    liker has an id; a second like of the same post by the same reader is a no-op."""

    user: User
    post: Post | NewPost  # its id is read when applied: a post of the same batch has none before

    def apply(self, session: Session) -> bool:
        post_id = self.post.id
        if post_id is None:  # a post of this batch whose message another process stored first
            return False
        if session.get(Like, (self.user.id, post_id)) is None:
            session.add(Like(user_id=self.user.id, post_id=post_id))  # type: ignore[arg-type]
            session.flush()
        return False
