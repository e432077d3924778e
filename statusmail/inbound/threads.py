"""Finding the post a message answers (DESIGN decision 5).

The reply token decides first: it names the post, and it belongs to one recipient, so a
mail to it from anyone else is refused (a forwarded notification must not let the
forwardee post as its owner). Without a token, In-Reply-To and then References (newest
first) are looked up among every Message-ID statusmail knows. Never by subject.
"""

from __future__ import annotations

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Reason, Refused
from statusmail.inbound.parse import header_text, message_ids
from statusmail.inbound.recipients import Kind
from statusmail.outbound.tokens import find_token
from statusmail.store.models import Post, utcnow
from statusmail.store.posts import find_post_by_message_id


def find_parent(mail: Incoming) -> None:
    """Set ``mail.parent`` from the token, or from the threading headers."""
    if mail.kind is Kind.REPLY:
        token = find_token(mail.session, mail.token)
        if token is None:
            raise Refused(Reason.UNKNOWN_TOKEN, "unknown reply token")
        if token.expires_at is not None and token.expires_at < utcnow():
            raise Refused(Reason.UNKNOWN_TOKEN, "reply token expired")
        assert mail.user is not None
        if token.user_id != mail.user.id:
            raise Refused(Reason.WRONG_REPLIER, f"reply token belongs to another user, not {mail.sender}")
        mail.parent = mail.session.get(Post, token.post_id)
        return
    wanted = message_ids(header_text(mail.message, "In-Reply-To"))
    wanted += list(reversed(message_ids(header_text(mail.message, "References"))))
    if wanted:
        mail.parent = find_post_by_message_id(mail.session, wanted)
