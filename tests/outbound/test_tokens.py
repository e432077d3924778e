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
