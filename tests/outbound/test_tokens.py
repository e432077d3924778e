"""Reply tokens are 160 random bits in lowercase base32, however many are minted at once."""

import re

from statusmail.outbound.tokens import new_token, new_tokens

TOKEN = re.compile(r"[a-z2-7]{32}")


def test_a_batch_of_tokens_is_whole_distinct_base32_tokens() -> None:
    tokens = new_tokens(40)
    assert len(tokens) == 40
    assert all(TOKEN.fullmatch(token) for token in tokens)
    assert len(set(tokens)) == 40


def test_a_single_token_has_the_same_shape() -> None:
    assert TOKEN.fullmatch(new_token())
    assert new_tokens(0) == []


def test_every_base32_letter_is_used() -> None:
    """A biased byte-to-letter map would leave letters out or favour some."""
    letters = "".join(new_tokens(500))
    counts = {letter: letters.count(letter) for letter in "abcdefghijklmnopqrstuvwxyz234567"}
    assert min(counts.values()) > 300  # 16,000 letters: 500 each on average


def test_known_tokens_finds_each_readers_own_tokens_across_several_queries(engine) -> None:
    """599 wanted pairs (two queries, the second padded): every existing token of a
    wanted pair comes back, a token of the same reader for a post not asked for does
    not, nor anyone else's for an asked post."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from statusmail.outbound.tokens import known_tokens
    from statusmail.store.models import Post, ReplyToken, User

    with Session(engine) as session:
        users = [User(email=f"u{n}@corp.example", handle=f"u{n}") for n in range(3)]
        session.add_all(users)
        session.flush()
        posts = [Post(author_id=users[0].id, body=f"Post {n}", created_at=datetime(2026, 12, 1, tzinfo=UTC),
                      message_id=f"<p{n}@corp.example>") for n in range(300)]
        session.add_all(posts)
        session.flush()
        a, b, c = (u.id for u in users)
        ids = [p.id for p in posts]
        stored = {(a, ids[0]): "tok-a0", (a, ids[299]): "tok-a299", (b, ids[150]): "tok-b150",
                  (a, ids[5]): "tok-a5-not-asked", (c, ids[0]): "tok-c0-not-asked"}
        session.add_all([ReplyToken(user_id=u, post_id=p, token=t) for (u, p), t in stored.items()])
        session.commit()
        wanted = {a: [i for i in ids if i != ids[5]], b: ids[:150] + ids[151:] + [ids[150]]}
        assert sum(len(v) for v in wanted.values()) == 599
        found = known_tokens(session, wanted)
    assert found == {(a, ids[0]): "tok-a0", (a, ids[299]): "tok-a299", (b, ids[150]): "tok-b150"}
