"""Finding the post a message answers (DESIGN decision 5).

The reply token decides first: it names the post, and it belongs to one recipient, so a
mail to it from anyone else is refused (a forwarded notification must not let the
forwardee post as its owner). Without a token, In-Reply-To and then References (newest
first) are looked up among every Message-ID statusmail knows. Never by subject.
"""

from __future__ import annotations

from datetime import timedelta

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Reason, Refused
from statusmail.inbound.parse import message_ids, raw_header
from statusmail.inbound.recipients import Kind
from statusmail.outbound.tokens import find_token
from statusmail.store.models import Post, ReplyToken, utcnow
from statusmail.store.posts import answers_mail_about_no_post, find_post_by_message_id, thread_closed


def token_expired(token: ReplyToken, days: int) -> bool:
    """Tokens last forever unless ``gateway.reply_token_days`` (or the token itself) says otherwise."""
    now = utcnow()
    if token.expires_at is not None and token.expires_at < now:
        return True
    return days > 0 and token.created_at < now - timedelta(days=days)


def find_parent(mail: Incoming) -> None:
    """Set ``mail.parent`` from the token, or from the threading headers."""
    if mail.question is not None:  # an answer to the daily question: checkins.find_question decided
        return
    if mail.kind is Kind.REPLY:
        token = find_token(mail.session, mail.token)
        if token is None:
            raise Refused(Reason.UNKNOWN_TOKEN, "unknown reply token")
        if token_expired(token, mail.settings.gateway.reply_token_days):
            raise Refused(Reason.UNKNOWN_TOKEN, "reply token expired")
        assert mail.user is not None
        if token.user_id != mail.user.id:
            raise Refused(Reason.WRONG_REPLIER, f"reply token belongs to another user, not {mail.sender}")
        mail.parent = mail.session.get(Post, token.post_id)
    else:
        mail.parent = post_answered(mail)
    if mail.parent is not None and thread_closed(mail.session, mail.parent):
        # The detail names the post's id for moderators; the sender's reply names nothing.
        raise Refused(Reason.CLOSED_THREAD, f"reply to post {mail.parent.id}, whose thread is held, hidden or deleted")


def answered_ids(mail: Incoming) -> list[str]:
    """The Message-IDs this message answers, nearest first: In-Reply-To, then References
    newest first."""
    wanted = message_ids(raw_header(mail.message, "In-Reply-To"))
    return wanted + list(reversed(message_ids(raw_header(mail.message, "References"))))


def post_answered(mail: Incoming) -> Post | None:
    """The post whose mail this message answers, by In-Reply-To, then References newest first."""
    wanted = answered_ids(mail)
    return find_post_by_message_id(mail.session, wanted) if wanted else None


def answers_bulk_mail(mail: Incoming) -> bool:
    """Whether this mail to the status address answers one of our mails that is about no
    one post (a digest, a command answer, a notice, a round-up): the nearest Message-ID
    it answers that we know is such a mail. Its client ignored our Reply-To
    (request_address); it is run as commands all the same, never posted (SPEC §3)."""
    if mail.kind is not Kind.POST:
        return False
    wanted = answered_ids(mail)
    return bool(wanted) and answers_mail_about_no_post(mail.session, wanted)
