"""Reply tokens: ``status+<token>@domain`` addresses bound to one recipient and one post.

A token is 160 random bits in lowercase base32, so it survives MTAs that fold the case
of local parts. It is reused for the same recipient and post (a digest and a
notification about one post carry the same address), never single-use, and does not
expire unless ``expires_at`` is set.
"""

from __future__ import annotations

import secrets

from sqlmodel import Session, select

from statusmail.store.db import insert_values
from statusmail.store.models import ReplyToken

TOKEN_CHARS = 32  # 5 random bits each: 160 bits
ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lowercase
BASE32_BY_BYTE = bytes(ALPHABET[byte % 32] for byte in range(256))


def new_token() -> str:
    return new_tokens(1)[0]


def new_tokens(count: int) -> list[str]:
    """``count`` fresh tokens from one read of the system's random source.

    Each random byte becomes one base32 character through its low 5 bits: 256 is a
    multiple of 32, so every character is equally likely, and 32 characters carry 160
    bits. A digest mints dozens of tokens at once, and one syscall and one
    ``bytes.translate`` cost a tenth of base64.b32encode per token."""
    letters = secrets.token_bytes(TOKEN_CHARS * count).translate(BASE32_BY_BYTE).decode("ascii")
    return [letters[start:start + TOKEN_CHARS] for start in range(0, len(letters), TOKEN_CHARS)]


def token_for(session: Session, user_id: int, post_id: int) -> str:
    """The recipient's token for a post, created on first use."""
    existing = session.exec(select(ReplyToken.token).where(ReplyToken.user_id == user_id,
                                                           ReplyToken.post_id == post_id)).first()
    if existing:
        return existing
    token = new_token()
    insert_values(session, ReplyToken, token=token, user_id=user_id, post_id=post_id)  # no ORM flush: see register_user
    return token


def find_token(session: Session, token: str) -> ReplyToken | None:
    return session.exec(select(ReplyToken).where(ReplyToken.token == token.lower())).first()
