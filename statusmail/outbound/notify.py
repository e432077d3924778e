"""Who is told about a post, and the threaded mail they get (SPEC §3, §4).

A reply is announced to the thread's author, its earlier repliers and the users it
mentions; a new post to the users it mentions. Never to the post's own author, a user
who muted the thread, a banned user, or an address suspended after hard bounces.

Each notification threads in every client as the tree of the posts (DESIGN decision 6,
SPEC §4). A mail about post P carries P's own Message-ID (the author's original, as a
mailing list passes a message on), ``In-Reply-To`` the parent's and ``References`` the
thread's posts from the root down to the parent. So in any reader's folder the mail
about a reply sits under the mail about the post it answers, or under the reader's own
sent message when the reader wrote that post; it never points at an unrelated earlier
mail. Every reader gets at most one mail per post, so in one mailbox the Message-ID is
unique. Outlook gets Thread-Topic and a Thread-Index that is the root's extended by one
block per level, the same in every copy (``threadindex.descendant_thread_index``).
The subject is always ``Re: <first line of the root>``; the From shows the author
(``"Alice Anders via <site_name>"``) at the gateway's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.inbound.recipients import token_address
from statusmail.outbound.compose import Draft, build_message, one_line
from statusmail.outbound.outbox import enqueue
from statusmail.outbound.threadindex import descendant_thread_index
from statusmail.outbound.tokens import token_for
from statusmail.store.likes import like_counts
from statusmail.store.models import Mention, Mute, Post, User, utcnow
from statusmail.store.posts import thread_closed
from statusmail.store.users import display_name

if TYPE_CHECKING:
    from statusmail.store.record import NewPost

QUOTE_CHARS = 200


def first_line(text: str, limit: int = 100) -> str:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return one_line(line, limit)


def thread_subject(root: Post) -> str:
    return f"Re: {first_line(root.body)}"


def anyone_to_tell(is_reply: bool, mentions: bool) -> bool:
    """Whether :func:`recipients_for` can find anyone: only the people a post mentions
    and, for a reply, those already in its thread are told; a new post that mentions no
    one is news for the digests. Lets the pipeline skip loading the post for nothing."""
    return is_reply or mentions


def recipients_for(session: Session, post: Post) -> list[tuple[User, str]]:
    """(user, why) for everyone to tell about ``post``, each once (see :func:`anyone_to_tell`)."""
    wanted: dict[int, str] = {}
    mentioned = session.exec(select(Mention.user_id).where(Mention.post_id == post.id)).all()
    for user_id in mentioned:
        wanted.setdefault(user_id, "mention")
    if post.parent_id is not None:
        root = session.get(Post, post.thread_id)
        if root is not None:
            wanted.setdefault(root.author_id, "thread")
        earlier = session.exec(select(Post.author_id).where(Post.thread_id == post.thread_id, Post.status == "visible",
                                                            col(Post.id) < post.id)).all()
        for author_id in earlier:
            wanted.setdefault(author_id, "thread")
    wanted.pop(post.author_id, None)
    if not wanted:
        return []
    muted = set(session.exec(select(Mute.user_id).where(Mute.thread_id == post.thread_id)).all())
    users = session.exec(select(User).where(col(User.id).in_(list(wanted)))).all()
    return [(u, wanted[u.id]) for u in sorted(users, key=attrgetter("id"))  # type: ignore[index]
            if u.id not in muted and not u.banned and not u.mail_suspended]


def ancestors(session: Session, post: Post, limit: int = 100) -> list[Post]:
    """The posts above ``post``, root first, parent last (at most ``limit``)."""
    chain: list[Post] = []
    parent_id = post.parent_id
    while parent_id is not None and len(chain) < limit:
        parent = session.get(Post, parent_id)
        if parent is None:
            break
        chain.append(parent)
        parent_id = parent.parent_id
    return chain[::-1]


def post_thread_index(root: Post, chain: list[Post], post: Post) -> str:
    """The post's Thread-Index: the root's, one block per level down to ``post``."""
    if not root.thread_index:
        return ""
    if post.id == root.id:
        return root.thread_index
    path = [(p.created_at, p.id or 0) for p in [*chain[1:], post]]
    try:
        return descendant_thread_index(root.thread_index, path)
    except ValueError:
        return ""


def author_from(author: User, settings: Settings) -> str:
    """The display name of mail about a post: "Alice Anders via Status"."""
    return f"{author.name or author.handle} via {settings.gateway.site_name}"


def notify_post(session: Session, settings: Settings, post: Post) -> int:
    """Queue a notification per recipient of a visible post. Returns how many."""
    if thread_closed(session, post):
        return 0  # a post approved into a thread hidden meanwhile names nothing of it
    chain = ancestors(session, post)
    root = chain[0] if chain else post
    parent = chain[-1] if chain else None
    # A hidden or deleted post is never quoted to anyone.
    quoted = parent if parent is not None and parent.status == "visible" else None
    author = session.get(User, post.author_id)
    assert author is not None and post.id is not None and root.id is not None
    now = utcnow()
    # What every recipient's copy shares; only the token differs per reader.
    shared = {
        "author": display_name(author),
        "is_reply": parent is not None,
        "text": post.body,
        "quote": (quoted.body[:QUOTE_CHARS] + ("…" if len(quoted.body) > QUOTE_CHARS else "")) if quoted else "",
        "quote_author": display_name(session.get(User, quoted.author_id)) if quoted else "",  # type: ignore[arg-type]
        "quote_likes": like_counts(session, [quoted.id]).get(quoted.id, 0) if quoted and quoted.id else 0,
    }
    subject, topic = thread_subject(root), first_line(root.body)
    references = list(dict.fromkeys(p.message_id for p in chain if p.message_id))
    thread_index = post_thread_index(root, chain, post)
    count = 0
    for user, why in recipients_for(session, post):
        assert user.id is not None
        reply_address = token_address(token_for(session, user.id, post.id), settings)
        draft = Draft(to=user.email, to_name=user.name, subject=subject, template="notify/post",
                      context={**shared, "name": display_name(user), "why": why, "reply_address": reply_address},
                      reply_to=reply_address, from_name=author_from(author, settings),
                      in_reply_to=parent.message_id if parent is not None else "",
                      references=references, thread_topic=topic, thread_index=thread_index, user_id=user.id)
        message_id = post.message_id or None
        enqueue(session, build_message(draft, settings, message_id=message_id, now=now), settings,
                kind="notification", to=user.email, user_id=user.id, post_id=post.id)
        count += 1
    return count


@dataclass(frozen=True)
class NotifyPost:
    """A decision's notifications (a :class:`~statusmail.store.changes.Change`): applied
    once the recorder has written the post, whose id it then reads."""

    settings: Settings
    post: NewPost

    def apply(self, session: Session) -> bool:
        stored = session.get(Post, self.post.id)
        return stored is not None and notify_post(session, self.settings, stored) > 0
