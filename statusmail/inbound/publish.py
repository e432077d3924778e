"""Limiting, holding and deciding a post.

These stages run last, once the message is known to become a post: a reply keyword, a
check-in ``skip``, mail with no new text and an over-long update have ended the pipeline
before them, having posted nothing. Hold reasons are collected from every rule first and
decided once (Mailman's way), so a moderator sees all of them. A held post is stored
with status ``held`` and announced only when approved; a visible one asks for its
notifications.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from statusmail.inbound.fold import fold
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Deferred, Held, Reason
from statusmail.outbound.compose import new_message_id
from statusmail.outbound.notify import NotifyPost, anyone_to_tell
from statusmail.outbound.threadindex import new_thread_index
from statusmail.store.models import Post
from statusmail.store.record import NewPost, recent_posts, recent_replies


def limit_posts(mail: Incoming) -> None:
    """At most ``policy.posts_per_hour`` posts per sender; beyond it, 451 4.7.1 (SPEC §2).

    The limit counts posts, so it defers only mail that would be one: a one-word ``+1``
    or ``mute`` reply from someone at the limit posts nothing and acts at once (SPEC §3).
    Whatever ends before this stage without a post and is answered by mail (a keyword's
    confirmation, a too-long notice) stays within ``policy.auto_answers_per_hour``
    (``outbound/notices.py``)."""
    assert mail.user is not None
    since = mail.now - timedelta(hours=1)
    count = recent_posts(mail.session, mail.user, since=since)
    limit = mail.settings.policy.posts_per_hour
    if count >= limit:
        lifts = limit_lifts_at(mail, since, count - limit)
        raise Deferred(Reason.RATE_LIMITED, f"{count} posts in the last hour (limit {limit}); "
                       f"the limit lifts at {lifts:%Y-%m-%d %H:%M:%S} UTC", retry_at=lifts)


def limit_lifts_at(mail: Incoming, since: datetime, over: int) -> datetime:
    """When the sender's hour holds one post fewer than the limit: an hour after the post
    that has to age out (the ``over``-th oldest of the window, counting from 0), so a
    deferred message waits for that and is not run again and again before it."""
    assert mail.user is not None
    if mail.user.id is not None:
        oldest = mail.session.exec(select(Post.created_at).where(Post.author_id == mail.user.id, Post.created_at >= since)
                                   .order_by(col(Post.created_at)).offset(over).limit(1)).first()
        if oldest is not None:
            return (oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)) + timedelta(hours=1)
    return mail.now + timedelta(hours=1)  # the posts to age out are this batch's


def collect_holds(mail: Incoming) -> None:
    """Every reason this post should wait for a moderator."""
    assert mail.user is not None
    policy = mail.settings.policy
    if policy.hold_new_users:
        if recent_posts(mail.session, mail.user, since=datetime.min.replace(tzinfo=UTC)) == 0:
            mail.holds.append("first post of a new user")
    if policy.hold_patterns:
        # SPEC §5: after NFKC, without format characters, look-alikes folded (fold.py);
        # the text as sent is matched too, for patterns written in other scripts.
        texts = dict.fromkeys((mail.text, fold(mail.text)))
        for pattern in policy.hold_patterns:
            if any(re.search(pattern, text, re.IGNORECASE) for text in texts):
                mail.holds.append(f"matches hold pattern {pattern!r}")
    parent = mail.parent
    if parent is not None:
        # Two auto-responders nobody recognised answer each other's notifications: at
        # most this many posts an hour, and nobody is mailed beyond it (SPEC §2).
        replies = recent_replies(mail.session, mail.user, parent, since=mail.now - timedelta(hours=1))
        if replies >= policy.thread_replies_per_hour:
            mail.holds.append(f"{replies} replies to this thread in the last hour "
                              f"(policy.thread_replies_per_hour is {policy.thread_replies_per_hour})")
    if len(mail.mentioned) > policy.max_mentions:
        mail.holds.append(f"{len(mail.mentioned)} mentions, more than policy.max_mentions ({policy.max_mentions})")


def decide_post(mail: Incoming) -> None:
    """The post to store, with its tags and mentions; a held one stops the pipeline here.

    Its notifications (replies and mentions) are a change the recorder applies once the
    post is written: who is told depends on rows of the thread, read then.
    """
    assert mail.user is not None
    parent = mail.parent
    mail.post = NewPost(author=mail.user, body=mail.text, trimmed=mail.removed[:20000], created_at=mail.now,
                        parent=parent, message_id=mail.message_id or new_message_id(mail.settings),
                        thread_index="" if parent else new_thread_index(mail.now),
                        status="held" if mail.holds else "visible", status_reason="; ".join(mail.holds),
                        tags=list(mail.tags), mentioned=list(mail.mentioned),
                        checkin_id=mail.question.id if mail.question is not None else None)
    if mail.holds:
        raise Held(mail.holds)
    if anyone_to_tell(is_reply=parent is not None, mentions=bool(mail.mentioned)):
        mail.changes.append(NotifyPost(mail.settings, mail.post))
