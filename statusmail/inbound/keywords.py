"""Reply keywords: a reply whose whole new text is one word acts instead of posting (SPEC §3).

``mute`` and ``unmute`` stop or resume mail about the reply's thread, ``unsubscribe``
turns the digest off (each answered with a one-line confirmation), and ``+1``, ``like``
or 👍 record a like of the post answered: no post, no mail. The match is strict: the
whole new text (quotes and signatures already trimmed), any case, trailing punctuation
and emoji variation or skin-tone marks ignored. "+1, and also …" is a post. Discourse's
mail receiver treats ``+1`` and 👍 replies the same way.
"""

from __future__ import annotations

import unicodedata

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Discarded, Reason
from statusmail.outbound.notices import QueueNotice
from statusmail.outbound.notify import first_line
from statusmail.store.follows import MuteChange, is_muted
from statusmail.store.likes import LikeChange
from statusmail.store.models import Post
from statusmail.store.record import NewPost, nearest_stored_or_root
from statusmail.store.users import SetUserFields

LIKE_WORDS = frozenset({"+1", "like", "\N{THUMBS UP SIGN}"})
ACTIONS = frozenset({"mute", "unmute", "unsubscribe"})
# Emoji presentation selector and the five Fitzpatrick skin tones: 👍🏽 is 👍.
EMOJI_MARKS = frozenset({"\ufe0f", "\ufe0e", *(chr(c) for c in range(0x1F3FB, 0x1F400))})
MAX_KEYWORD_CHARS = 40


def keyword_of(text: str) -> str:
    """The keyword the whole text is (``like`` for every like form), or ""."""
    flat = text.strip()
    if not flat or len(flat) > MAX_KEYWORD_CHARS or any(c.isspace() for c in flat):
        return ""
    word = "".join(c for c in flat if c not in EMOJI_MARKS and unicodedata.category(c) != "Cf")
    while word and unicodedata.category(word[-1]).startswith("P"):
        word = word[:-1]
    word = word.lower()
    if word in LIKE_WORDS:
        return "like"
    return word if word in ACTIONS else ""


def act_on_keyword(mail: Incoming) -> None:
    """A reply that is one keyword: do it, and stop before anything is posted."""
    parent = mail.parent
    if parent is None or mail.unauthenticated:
        return  # a forged sender must not mute or like for someone; its mail goes on to be held
    keyword = keyword_of(mail.text)
    if not keyword:
        return
    user = mail.user
    assert user is not None
    # The parent may be a post of this same batch (a second check-in answer): ids are
    # read when the changes apply, and a thread that begins in this batch is muted by no one.
    if keyword == "like":
        mail.changes.append(LikeChange(user, parent))
        raise Discarded(Reason.LIKED, f"{mail.sender} likes post {parent.id or 'of the same batch'}")
    thread = parent.thread_id
    topic = first_line(thread_root(mail, parent).body, 80)
    if keyword == "unsubscribe":
        mail.changes.append(SetUserFields(user, (("digest", "off"),)))
        line = "Unsubscribed: no more digests. Replies and mentions still arrive; send \"digest daily\" to resume."
    else:
        muted = keyword == "mute"
        if (thread is not None and is_muted(mail.session, user, thread)) != muted:
            mail.changes.append(MuteChange(user, thread if thread is not None else parent, muted))
        line = (f"Muted: no more mail about \"{topic}\". Send \"unmute\" in a reply to resume." if muted
                else f"Unmuted: mail about \"{topic}\" arrives again.")
    mail.changes.append(QueueNotice(mail.settings, user, "keyword", subject=f"Re: {topic}",
                                    context={"confirmation": line}, in_reply_to=mail.message_id))
    raise Discarded(Reason.KEYWORD, f"{keyword} (thread {thread or 'begun in the same batch'})")


def thread_root(mail: Incoming, parent: Post | NewPost) -> Post | NewPost:
    """The first post of ``parent``'s thread: stored, or decided earlier in this batch."""
    post = nearest_stored_or_root(parent)
    if isinstance(post, NewPost) or post.thread_id is None:
        return post
    return mail.session.get(Post, post.thread_id) or post
