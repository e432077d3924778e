"""Reply tokens: ``status+<token>@domain`` addresses bound to one recipient and one post.

A token is 160 random bits in lowercase base32, so it survives MTAs that fold the case
of local parts. It is reused for the same recipient and post (a digest and a
notification about one post carry the same address), never single-use, and does not
expire unless ``expires_at`` is set.
"""

from __future__ import annotations

import base64
import secrets

from sqlmodel import Session, select

from statusmail.store.models import ReplyToken

TOKEN_BYTES = 20


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").rstrip("=").lower()


def token_for(session: Session, user_id: int, post_id: int) -> str:
    """The recipient's token for a post, created on first use."""
    existing = session.exec(select(ReplyToken.token).where(ReplyToken.user_id == user_id,
                                                           ReplyToken.post_id == post_id)).first()
    if existing:
        return existing
    token = new_token()
    session.add(ReplyToken(token=token, user_id=user_id, post_id=post_id))
    session.flush()
    return token


def find_token(session: Session, token: str) -> ReplyToken | None:
    return session.exec(select(ReplyToken).where(ReplyToken.token == token.lower())).first()
