"""Answers to the daily question (SPEC §7): stages of the post pipeline.

The question's reply address is the token of its ``checkins`` row, bound to one user
and one day. An answer takes the path of any post (robots dropped, so an out-of-office
note never becomes an answer; trust, rate, trimming, brevity with its helpful refusal,
holds); these stages add only what makes it an answer:

- :func:`find_question` (before ``commands.answer_bulk_replies`` and
  ``threads.find_parent``): the token names the day's question; someone else's token is
  refused as for any reply address. A client that ignores Reply-To sends the answer to
  the question's From, the status address: it is the answer too when its threading
  headers name the question's mail and its sender is the question's user (anyone
  else's stays a reply to mail about no post, run as commands). A second answer the
  same day is a reply to the first (while that one is visible), also when the first is
  earlier in the same batch and not yet recorded (``record.answer_in_batch``).
- :func:`skip_or_answer` (after ``text.extract_text``): ``skip`` posts nothing and
  records the day as skipped.
- :func:`tag_answer` (after ``text.find_tags_and_mentions``): the post carries
  ``#<checkins.tag>``, and the day's row will name it as the answer.

Like every stage they only read; the writes are :class:`Change` objects the recorder
applies once the post has its id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Discarded, Reason, Refused
from statusmail.inbound.recipients import Kind
from statusmail.inbound.threads import answered_ids
from statusmail.store.models import Checkin, Outbox, Post, utcnow
from statusmail.store.posts import any_known_message_id
from statusmail.store.record import NewPost, answer_in_batch

SKIP = re.compile(r"skip[\s.!]*", re.IGNORECASE)


def find_question(mail: Incoming) -> None:
    """Recognise an answer, by its token or by its headers; set the day's first answer
    as the parent of a second."""
    question = question_by_token(mail) if mail.kind is Kind.REPLY else question_by_headers(mail)
    if question is None:
        return
    mail.question = question
    mail.parent = first_answer(mail, question)


def question_by_token(mail: Incoming) -> Checkin | None:
    """The question whose token the mail was sent to; refused when it is someone else's."""
    question = mail.session.exec(select(Checkin).where(Checkin.token == mail.token.lower())).first()
    if question is None:
        return None  # an ordinary reply token: threads.find_parent decides
    if expired(mail, question):
        raise Refused(Reason.UNKNOWN_TOKEN, "check-in reply token expired")
    assert mail.user is not None
    if question.user_id != mail.user.id:
        raise Refused(Reason.WRONG_REPLIER, f"check-in reply address belongs to another user, not {mail.sender}")
    return question


def question_by_headers(mail: Incoming) -> Checkin | None:
    """The question a mail to the status address answers, from a client that ignored
    the question's Reply-To (or a reply to a copy of it): the nearest Message-ID it
    answers that we know (In-Reply-To, then References newest first, as
    ``threads.find_parent`` reads them) is the question's, and the sender is the
    question's user. Otherwise None, and the mail is what it was without this: a reply
    from anyone else, or to an expired question, is a reply to mail about no post
    (``commands.answer_bulk_replies``)."""
    user = mail.user
    if mail.kind is not Kind.POST or user is None or user.id is None:
        return None
    wanted = [m for m in answered_ids(mail) if m][:100]
    if not wanted:
        return None
    # Only this user's questions: another user's reply never finds one.
    found = dict(mail.session.exec(
        select(Outbox.message_id, Checkin).join(Checkin, col(Checkin.outbox_id) == col(Outbox.id))
        .where(col(Outbox.message_id).in_(wanted), Checkin.user_id == user.id)).all())
    nearest = next((i for i, message_id in enumerate(wanted) if message_id in found), None)
    if nearest is None or any_known_message_id(mail.session, wanted[:nearest]):
        return None  # a nearer mail of ours (a post's, say) is what it answers
    question = found[wanted[nearest]]
    return None if expired(mail, question) else question


def expired(mail: Incoming, question: Checkin) -> bool:
    days = mail.settings.gateway.reply_token_days
    return days > 0 and question.created_at < utcnow() - timedelta(days=days)


def first_answer(mail: Incoming, question: Checkin) -> Post | NewPost | None:
    """The day's first answer while it is visible: stored, or decided earlier in this
    batch (concurrent sessions share one batch, and its answer is recorded only with it)."""
    if question.answer_post_id is not None:
        first = mail.session.get(Post, question.answer_post_id)
        if first is not None and first.status == "visible":
            return first
    return answer_in_batch(mail.session, question.id)


def skip_or_answer(mail: Incoming) -> None:
    """``skip`` (any case, trailing punctuation ignored) is no post: the day is skipped."""
    if mail.question is None or not SKIP.fullmatch(mail.text.strip()):
        return
    mail.changes.append(SkipDay(mail.question.id))
    raise Discarded(Reason.CHECKIN_SKIPPED, f"check-in for {mail.question.day} skipped")


def tag_answer(mail: Incoming) -> None:
    """The answer carries the check-in tag; the day's row is linked to it once stored."""
    if mail.question is None:
        return
    tag = mail.settings.checkins.tag.lower()
    if tag not in mail.tags:
        mail.tags.append(tag)
    mail.changes.append(LinkAnswer(mail.question.id, mail))


@dataclass(frozen=True)
class SkipDay:
    """A decision's change: the day's question was answered ``skip``."""

    checkin_id: int | None

    def apply(self, session: Session) -> bool:
        session.execute(update(Checkin).where(col(Checkin.id) == self.checkin_id).values(skipped=True))
        return False


@dataclass(frozen=True)
class LinkAnswer:
    """A decision's change: the day's row names its answer. Applied after the recorder
    wrote the post (whose id is then known); a day keeps its first answer unless that
    one is no longer visible (a second answer is then the answer)."""

    checkin_id: int | None
    mail: Incoming

    def apply(self, session: Session) -> bool:
        post = self.mail.post
        if post is None or post.id is None:
            return False
        invisible = core_select(col(Post.id)).where(col(Post.id) == Checkin.answer_post_id, col(Post.status) != "visible").exists()
        session.execute(update(Checkin).where(col(Checkin.id) == self.checkin_id,
                                              or_(col(Checkin.answer_post_id).is_(None), invisible))
                        .values(answer_post_id=post.id, skipped=False))
        return False
