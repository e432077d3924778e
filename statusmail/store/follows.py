"""Follows of people and tags, and thread mutes.

The functions change the store now (the command line); the ``*Change`` classes are the
same changes as a decision asks for them, applied by the inbound recorder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from statusmail.store.models import Follow, Mute, Post, User
from statusmail.store.users import find_user, find_user_by_handle

if TYPE_CHECKING:
    from statusmail.store.record import NewPost


class UnknownTarget(ValueError):
    """A follow target that names no user, or is not an address, @handle or #tag."""


@dataclass(frozen=True)
class Target:
    user: User | None = None
    tag: str = ""

    def __str__(self) -> str:
        return f"#{self.tag}" if self.tag else f"{self.user.email} (@{self.user.handle})"  # type: ignore[union-attr]


def resolve_target(session: Session, text: str) -> Target:
    """``alice@corp.example``, ``@alice`` or ``#billing``."""
    text = text.strip()
    if text.startswith("#") and len(text) > 1:
        return Target(tag=text[1:].lower())
    user = find_user_by_handle(session, text[1:]) if text.startswith("@") else find_user(session, text) if "@" in text else None
    if user is None:
        raise UnknownTarget(f"no such user or tag: {text}")
    return Target(user=user)


def _row(session: Session, user: User, target: Target) -> Follow | None:
    query = select(Follow).where(Follow.user_id == user.id)
    if target.tag:
        query = query.where(Follow.tag == target.tag)
    else:
        query = query.where(Follow.target_user_id == target.user.id)  # type: ignore[union-attr]
    return session.exec(query).first()


def follow(session: Session, user: User, target: Target, origin: str = "explicit") -> bool:
    """Follow; True when something changed. An org-chart default never revives an unfollow."""
    row = _row(session, user, target)
    if row is None:
        session.add(Follow(user_id=user.id, target_user_id=target.user.id if target.user else None,  # type: ignore[arg-type]
                           tag=target.tag, origin=origin))
        return True
    if row.active or origin != "explicit":
        return False
    row.active = True
    session.add(row)
    return True


def unfollow(session: Session, user: User, target: Target) -> bool:
    row = _row(session, user, target)
    if row is None or not row.active:
        if row is None and target.user is not None:
            # Remember the choice, so an org-chart default does not follow them again.
            session.add(Follow(user_id=user.id, target_user_id=target.user.id, active=False))  # type: ignore[arg-type]
        return False
    row.active = False
    session.add(row)
    return True


def following(session: Session, user: User) -> list[Target]:
    rows = session.exec(select(Follow).where(Follow.user_id == user.id, col(Follow.active).is_(True))
                        .order_by(col(Follow.tag), col(Follow.id))).all()
    users = {u.id: u for u in session.exec(select(User).where(
        col(User.id).in_([r.target_user_id for r in rows if r.target_user_id])))}
    return [Target(tag=r.tag) if r.tag else Target(user=users[r.target_user_id]) for r in rows]


def set_mute(session: Session, user: User, thread_id: int, muted: bool) -> bool:
    row = session.get(Mute, (user.id, thread_id))
    if muted and row is None:
        session.add(Mute(user_id=user.id, thread_id=thread_id))  # type: ignore[arg-type]
        return True
    if not muted and row is not None:
        session.delete(row)
        return True
    return False


def is_following(session: Session, user: User, target: Target) -> bool:
    row = _row(session, user, target) if user.id is not None else None
    return row is not None and row.active


def is_muted(session: Session, user: User, thread_id: int) -> bool:
    return user.id is not None and session.get(Mute, (user.id, thread_id)) is not None


@dataclass(frozen=True)
class FollowChange:
    user: User
    target: Target
    follow: bool  # False: unfollow

    def apply(self, session: Session) -> bool:
        (follow if self.follow else unfollow)(session, self.user, self.target)
        return False


@dataclass(frozen=True)
class MuteChange:
    user: User
    # The thread's id, or a post whose thread it is, read when this applies: a thread
    # that begins in the same batch has an id only once recorded.
    thread: int | Post | NewPost
    muted: bool

    def apply(self, session: Session) -> bool:
        thread_id = self.thread if isinstance(self.thread, int) else self.thread.thread_id
        if thread_id is not None:
            set_mute(session, self.user, thread_id, self.muted)
        return False
