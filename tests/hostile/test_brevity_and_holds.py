"""SPEC §3 "What is stored is what was counted" and §5 hold patterns: the limits on a
post's length, its mentions and its words cannot be walked around with long links,
Unicode spaces, blank look-alikes, invisible characters or look-alike letters."""

from __future__ import annotations

import pytest

from statusmail.inbound.outcome import OK_HELD, OK_POSTED, OK_TOO_LONG
from tests.conftest import make_mail, outbox_messages


def ok(reply: str) -> tuple[int, str]:
    return 250, reply.removeprefix("250 ")


def test_a_150000_character_url_with_mentions_is_too_long_and_mails_no_one(hostile):
    gw = hostile.start()
    for name in ("bob", "carol"):
        hostile.cli("users", "add", f"{name}@corp.example")
    body = "See https://evil.example/" + "a" * 150_000 + " @bob @carol"
    assert gw.send(make_mail(body=body, subject="status")) == ok(OK_TOO_LONG)
    assert hostile.posts() == []
    gw.flush_outbox()
    [notice] = outbox_messages(hostile.settings)  # only the too-long notice, to the sender
    assert notice["To"].addresses[0].addr_spec == "alice@corp.example"
    assert "150" in notice["Subject"]
    [entry] = hostile.log()
    assert entry.reason == "too_long" and "characters, the limit is 280" in entry.detail


def test_a_url_of_at_most_2000_characters_counts_as_23(hostile):
    gw = hostile.start()
    url = "https://wiki.example/" + "p" * (2000 - len("https://wiki.example/"))
    assert gw.send(make_mail(body=f"Design notes {url} read them", subject="status")) == ok(OK_POSTED)
    [post] = hostile.posts()
    assert post.body == f"Design notes {url} read them"


@pytest.mark.parametrize("blank", ["\u3000", "\u2800", "\u00a0", "\u2003", "\u3164", " \t"])
def test_runs_of_unicode_spaces_and_blanks_collapse_in_what_is_stored_and_mailed(hostile, blank):
    gw = hostile.start()
    hostile.cli("users", "add", "bob@corp.example")
    body = "Shipped" + blank * 100_000 + "it @bob\n\n\n\n\n" + blank * 10 + "\n\nthanks" + blank * 50
    assert gw.send(make_mail(body=body, subject="status")) == ok(OK_POSTED)
    [post] = hostile.posts()
    assert post.body == "Shipped it @bob\n\nthanks"
    gw.flush_outbox()
    [mail] = outbox_messages(hostile.settings)
    assert len(mail.as_bytes()) < 20_000
    assert "Shipped it @bob" in mail.get_body(("plain",)).get_content()


def test_mentions_hidden_behind_blanks_in_a_url_hold_the_post_and_mail_nobody(hostile):
    gw = hostile.start("max_mentions = 20")
    for i in range(25):
        hostile.cli("users", "add", f"u{i}@corp.example")
    hidden = "\u2800".join(f"@u{i}" for i in range(25))  # one "URL" to the eye, 25 mentions
    assert gw.send(make_mail(body=f"https://x.example/{hidden}", subject="status")) == ok(OK_HELD)
    [post] = hostile.posts()
    assert post.status == "held" and "mentions" in post.status_reason
    gw.flush_outbox()
    assert outbox_messages(hostile.settings) == []


def test_exactly_max_mentions_posts_and_notifies_each(hostile):
    gw = hostile.start("max_mentions = 3")
    for name in ("bob", "carol", "dave", "erin"):
        hostile.cli("users", "add", f"{name}@corp.example")
    assert gw.send(make_mail(body="Thanks @bob @carol @dave", subject="status")) == ok(OK_POSTED)
    gw.flush_outbox()
    assert len(outbox_messages(hostile.settings)) == 3
    assert gw.send(make_mail(body="Thanks @bob @carol @dave @erin", subject="status")) == ok(OK_HELD)


DISGUISES = {
    "zero-width space": "Conf\u200bidential",
    "soft hyphen": "Confi\u00addential",
    "word joiner": "Confid\u2060ential",
    "cyrillic": "\u0421onfid\u0435nti\u0430l",
    "greek lunate sigma": "\u03f9onfidential",
    "full-width": "\uff23\uff4f\uff4e\uff46\uff49\uff44\uff45\uff4e\uff54\uff49\uff41\uff4c",
    "combining accent": "Confide\u0301ntial",
    "mathematical bold": "\U0001d402\U0001d428\U0001d427\U0001d41f\U0001d422\U0001d41d\U0001d41e\U0001d427"
                         "\U0001d42d\U0001d422\U0001d41a\U0001d425",
}


@pytest.mark.parametrize("name", list(DISGUISES))
def test_hold_patterns_match_through_invisible_characters_and_look_alikes(hostile, name):
    gw = hostile.start('hold_patterns = ["(?i)\\\\bconfidential\\\\b"]')
    hostile.cli("users", "add", "bob@corp.example")
    text = f"{DISGUISES[name]}: the merger closes Friday @bob"
    assert gw.send(make_mail(body=text, subject="status")) == ok(OK_HELD)
    [post] = hostile.posts()
    assert post.status == "held" and "hold pattern" in post.status_reason
    gw.flush_outbox()
    assert outbox_messages(hostile.settings) == []


def test_ordinary_non_latin_text_is_not_held_by_a_latin_pattern(hostile):
    gw = hostile.start('hold_patterns = ["(?i)confidential"]')
    assert gw.send(make_mail(body="Привет, команда: релиз готов. 你好", subject="status")) == ok(OK_POSTED)
    [post] = hostile.posts()
    assert post.body == "Привет, команда: релиз готов. 你好"  # stored as sent, never folded
