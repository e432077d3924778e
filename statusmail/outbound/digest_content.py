"""What a digest holds for one reader (SPEC §3 Digests).

What is new since the reader's last digest, in four sections, each post at most once
(the first section that claims it wins): posts that mention the reader, new replies in
threads the reader is part of (wrote the root or replied), posts by the people and tags
the reader follows, and the threads with the most distinct repliers across the company
that the digest does not already show.

Never shown: hidden, held and deleted posts (nor replies in a thread whose root is no
longer visible), the reader's own posts, and threads the reader muted.

A run loads the whole news window once (:func:`load_window`: posts, roots, tags,
mentions, reply counts, participants, in a handful of queries, as slim tuples) and then
builds each reader's digest in memory (:func:`collect`). There is no query per post or
per reader here: 10,000 readers cost the same few queries as one.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar, cast

from sqlalchemy import func
from sqlmodel import Session, col, select

from statusmail.outbound.notify import first_line
from statusmail.store.models import Follow, Like, Mention, Mute, Post, PostTag, User

# A digest is read, not searched: beyond this a section says "and N more".
SECTION_LIMIT = 30
DISCUSSED_LIMIT = 5
# A thread is "discussed" when at least this many different people answered in it.
MIN_REPLIERS = 2
CHUNK = 500  # ids per IN (...) list: well inside every database's parameter limit
RANK = attrgetter("rank")
NEWEST = attrgetter("created_at", "id")

T = TypeVar("T")


# The columns of a WindowPost, in its field order. Typed loosely: sqlmodel's select()
# declares overloads for at most four columns.
WINDOW_COLUMNS: tuple[Any, ...] = (Post.id, Post.author_id, Post.thread_id, Post.parent_id, Post.created_at, Post.body)

@dataclass(slots=True)
class WindowPost:
    id: int
    author_id: int
    thread_id: int
    parent_id: int | None
    created_at: datetime
    body: str
    rank: int = 0  # place in the window by (reply count, time): see Window.rank_posts

    @property
    def is_reply(self) -> bool:
        return self.id != self.thread_id


@dataclass(slots=True, frozen=True)
class Item:
    """One post in a digest, with what the reader needs to judge and answer it; one
    object per post, shared by every digest of a run that shows it."""

    post: WindowPost
    author: str
    thread_subject: str  # first line of the thread's root: the reply subject is "Re: " + this
    reply_count: int
    like_count: int = 0


@dataclass
class Section:
    key: str  # mentions | threads | following | discussed
    title: str
    items: list[Item]
    more: int = 0  # new items that did not fit


@dataclass
class DigestContent:
    since: datetime
    until: datetime
    sections: list[Section]

    @property
    def count(self) -> int:
        """Every new update, shown or not: the number in the subject."""
        return sum(len(s.items) + s.more for s in self.sections)

    def items(self) -> Iterator[Item]:
        for section in self.sections:
            yield from section.items


@dataclass
class Interests:
    """A reader's follows and mutes."""

    authors: set[int] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    muted: set[int] = field(default_factory=set)


@dataclass
class Window:
    """Every visible post in ``(start, until]`` and the indexes digests are built from."""

    start: datetime
    until: datetime
    posts: dict[int, WindowPost] = field(default_factory=dict)
    roots: dict[int, WindowPost] = field(default_factory=dict)  # visible roots of the window's threads
    names: dict[int, str] = field(default_factory=dict)
    by_author: dict[int, list[WindowPost]] = field(default_factory=lambda: defaultdict(list))
    by_tag: dict[str, list[WindowPost]] = field(default_factory=lambda: defaultdict(list))
    mentioning: dict[int, list[WindowPost]] = field(default_factory=lambda: defaultdict(list))
    replies_in: dict[int, list[WindowPost]] = field(default_factory=lambda: defaultdict(list))
    threads_of: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # user -> threads
    reply_counts: dict[int, int] = field(default_factory=dict)
    like_counts: dict[int, int] = field(default_factory=dict)
    _discussed: dict[datetime, list[int]] = field(default_factory=dict)
    _subjects: dict[int, str] = field(default_factory=dict)
    _items: dict[int, Item] = field(default_factory=dict)

    def reply_count(self, post: WindowPost) -> int:
        return self.reply_counts.get(post.id, 0)

    def rank_posts(self) -> None:
        """Order every post once by what a section shows first (most replies, then the
        newest), and every index list best first: a reader's section is then the head of
        a merge of already sorted lists, not a sort of all its candidates."""
        ordered = sorted(self.posts.values(), key=lambda p: (self.reply_count(p), p.created_at, p.id))
        for place, post in enumerate(ordered):
            post.rank = place
        for index in (self.by_author, self.by_tag, self.mentioning, self.replies_in):
            for posts in index.values():
                posts.sort(key=RANK, reverse=True)

    def item(self, post: WindowPost) -> Item:
        """The post as digests show it: the same for every reader, so made once."""
        item = self._items.get(post.id)
        if item is None:
            item = Item(post, self.names.get(post.author_id, ""), self.thread_subject(post), self.reply_count(post),
                        self.like_counts.get(post.id, 0))
            self._items[post.id] = item
        return item

    def thread_subject(self, post: WindowPost) -> str:
        """The first line of the post's thread root; memoized, since a hot thread's
        subject is in thousands of digests."""
        if post.thread_id not in self._subjects:
            self._subjects[post.thread_id] = first_line(self.roots.get(post.thread_id, post).body)
        return self._subjects[post.thread_id]

    def discussed(self, since: datetime) -> list[int]:
        """Thread ids by distinct repliers after ``since``, most first; memoized, since
        most readers of one run share the same ``since``."""
        if since not in self._discussed:
            ranked = []
            for thread_id, replies in self.replies_in.items():
                repliers = {r.author_id for r in replies if r.created_at > since}
                if len(repliers) >= MIN_REPLIERS:
                    ranked.append((-len(repliers), -self.reply_counts.get(thread_id, 0), thread_id))
            ranked.sort()
            self._discussed[since] = [thread_id for *_, thread_id in ranked]
        return self._discussed[since]


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def load_threads(session: Session, start: datetime, until: datetime) -> Window:
    """The visible posts of ``(start, until]``, their threads' roots and reply counts:
    what every view of the window shows (three queries). A leader's week needs no more."""
    window = Window(start, until)
    in_window = (col(Post.created_at) > start, col(Post.created_at) <= until)
    window_threads = select(Post.thread_id).where(*in_window)

    for row in session.exec(select(*WINDOW_COLUMNS)
                            .where(col(Post.id).in_(window_threads), Post.status == "visible",
                                   col(Post.id) == col(Post.thread_id))):
        window.roots[row[0]] = WindowPost(*row)
    for row in session.exec(select(*WINDOW_COLUMNS)
                            .where(*in_window, Post.status == "visible").order_by(col(Post.created_at), col(Post.id))):
        post = window.roots.get(row[0]) or WindowPost(*row)
        # A reply in a thread whose root was hidden or deleted is hidden with it.
        if post.thread_id not in window.roots:
            continue
        window.posts[post.id] = post
        window.by_author[post.author_id].append(post)
        if post.is_reply:
            window.replies_in[post.thread_id].append(post)

    # Reply counts as posts.reply_counts defines them: a root counts its whole thread
    # (earlier replies included), a reply its direct answers.
    for thread_id, count in session.exec(select(Post.thread_id, func.count()).where(
            col(Post.thread_id).in_(window_threads), col(Post.id) != col(Post.thread_id), Post.status == "visible")
            .group_by(col(Post.thread_id))):
        window.reply_counts[thread_id] = count  # type: ignore[index]
    for post in window.posts.values():
        if post.parent_id is not None and post.parent_id != post.thread_id and post.parent_id in window.posts:
            window.reply_counts[post.parent_id] = window.reply_counts.get(post.parent_id, 0) + 1
    return window


def load_window(session: Session, start: datetime, until: datetime) -> Window:
    """The news of ``(start, until]`` for every reader's digest at once: the threads
    (:func:`load_threads`), then tags, mentions, likes, who takes part in which thread
    and the authors' names; seven queries, and one more per 500 authors."""
    window = load_threads(session, start, until)
    in_window = (col(Post.created_at) > start, col(Post.created_at) <= until)
    reply_threads = select(Post.thread_id).where(*in_window, col(Post.id) != col(Post.thread_id))

    for post_id, tag in session.exec(select(PostTag.post_id, PostTag.tag).join(Post, col(Post.id) == PostTag.post_id)
                                     .where(*in_window)):
        if post_id in window.posts:
            window.by_tag[tag.lower()].append(window.posts[post_id])
    for post_id, user_id in session.exec(select(Mention.post_id, Mention.user_id)
                                         .join(Post, col(Post.id) == Mention.post_id).where(*in_window)):
        if post_id in window.posts:
            window.mentioning[user_id].append(window.posts[post_id])
    for post_id, count in session.exec(select(Like.post_id, func.count()).join(Post, col(Post.id) == Like.post_id)
                                       .where(*in_window).group_by(col(Like.post_id))):
        window.like_counts[post_id] = count
    window.rank_posts()

    # Who is part of a thread with news: its root's author and everyone who answered in it.
    for thread_id, author_id in session.exec(select(Post.thread_id, Post.author_id).distinct()
                                             .where(col(Post.thread_id).in_(reply_threads))):
        if thread_id in window.replies_in:
            window.threads_of[author_id].add(thread_id)

    authors = {p.author_id for p in window.posts.values()} | {p.author_id for p in window.roots.values()}
    for ids in chunks(sorted(authors)):
        for uid, name, email in session.exec(select(User.id, User.name, User.email).where(col(User.id).in_(ids))):
            window.names[cast(int, uid)] = name or email
    return window


def load_interests(session: Session, user_ids: Sequence[int]) -> dict[int, Interests]:
    """Active follows and mutes of many readers, a few queries per 500 readers."""
    interests: dict[int, Interests] = {user_id: Interests() for user_id in user_ids}
    for ids in chunks(sorted(user_ids)):
        for user_id, target, tag in session.exec(select(Follow.user_id, Follow.target_user_id, Follow.tag)
                                                 .where(col(Follow.user_id).in_(ids), col(Follow.active).is_(True))):
            if tag:
                interests[user_id].tags.add(tag.lower())
            elif target is not None:
                interests[user_id].authors.add(target)
        for user_id, thread_id in session.exec(select(Mute.user_id, Mute.thread_id).where(col(Mute.user_id).in_(ids))):
            interests[user_id].muted.add(thread_id)
    return interests


def collect(window: Window, reader_id: int, interests: Interests, since: datetime) -> DigestContent:
    """The reader's digest for ``(since, window.until]``, from memory only."""
    shown: set[int] = set()
    muted = interests.muted
    # Every post of the window is newer than its start, so for the usual reader (whose
    # last digest ended there or earlier, and who muted nothing) only their own posts
    # and those already shown are left out.
    only_own_left_out = since <= window.start and not muted
    own = {p.id for p in window.by_author.get(reader_id, ())}

    def news(lists: list[list[WindowPost]]) -> set[int]:
        """The ids of the posts in ``lists`` this section may show."""
        if only_own_left_out:
            return {p.id for posts in lists for p in posts} - own - shown
        return {p.id for posts in lists for p in posts if p.author_id != reader_id and p.id not in shown
                and p.created_at > since and p.thread_id not in muted}

    def section(key: str, title: str, lists: list[list[WindowPost]]) -> Section:
        """The best :data:`SECTION_LIMIT` new posts of ``lists`` (each sorted best first
        by :meth:`Window.rank_posts`), newest first, and how many more there were."""
        fresh = news(lists)
        total, kept = len(fresh), []
        for post in heapq.merge(*lists, key=RANK, reverse=True):
            if post.id in fresh:
                fresh.discard(post.id)  # a post in two lists (an author and a tag) is taken once
                kept.append(post)
                if len(kept) == SECTION_LIMIT:
                    break
        shown.update(p.id for p in kept)
        kept.sort(key=NEWEST, reverse=True)
        return Section(key, title, [window.item(p) for p in kept], more=total - len(kept))

    sections = [section("mentions", "Mentioning you", [window.mentioning.get(reader_id, [])])]
    threads = window.threads_of.get(reader_id, ())
    sections.append(section("threads", "New replies in your threads", [window.replies_in[t] for t in threads]))
    followed = [window.by_author[a] for a in interests.authors if a in window.by_author]
    followed += [window.by_tag[t] for t in interests.tags if t in window.by_tag]
    sections.append(section("following", "From people and tags you follow", followed))

    listed_threads = {window.posts[p].thread_id for p in shown}
    discussed = []
    for thread_id in window.discussed(since):
        root = window.roots[thread_id]
        if thread_id in listed_threads or thread_id in muted or root.author_id == reader_id:
            continue
        discussed.append(window.item(root))
        if len(discussed) == DISCUSSED_LIMIT:
            break
    sections.append(Section("discussed", "Most discussed across the company", discussed))
    return DigestContent(since, window.until, [s for s in sections if s.items])
