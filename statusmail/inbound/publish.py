"""Holding and deciding a post.

Hold reasons are collected from every rule first and decided once (Mailman's way), so a
moderator sees all of them. A held post is stored with status ``held`` and announced
only when approved; a visible one asks for its notifications.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from statusmail.inbound.fold import fold
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Held
from statusmail.outbound.compose import new_message_id
from statusmail.outbound.notify import NotifyPost, anyone_to_tell
from statusmail.outbound.threadindex import new_thread_index
from statusmail.store.record import NewPost, recent_posts, recent_replies


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
