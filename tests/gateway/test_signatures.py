"""Signatures learned per sender (SPEC §3), over SMTP: closing lines that a sender's
earlier mails ended with are removed from later ones, with or without ``-- ``."""

from __future__ import annotations

from sqlmodel import Session, col, select

from statusmail.inbound.signatures import EARLIER_MAILS, closing_blocks
from statusmail.store.models import Post, User
from tests.conftest import make_mail

SIGNATURE = "Alice Anders\nPlatform Team, Berlin\nCorp Example"  # no "-- ", no phone: only learning finds it


def bodies(engine, sender: str = "alice@corp.example") -> list[str]:
    with Session(engine) as session:
        user = session.exec(select(User).where(User.email == sender)).one()
        return list(session.exec(select(Post.body).where(Post.author_id == user.id).order_by(col(Post.id))))


def post(gateway, text: str, sender: str = "Alice Anders <alice@corp.example>") -> None:
    address = sender.split("<")[1].rstrip(">")
    assert gateway.send(make_mail(body=text, subject="status", sender=sender), mail_from=address)[0] == 250


def test_a_signature_seen_in_three_earlier_mails_is_removed_and_a_one_off_closing_is_kept(gateway, engine):
    assert EARLIER_MAILS == 3
    updates = ["Shipped the export", "Fixed the flaky test", "Rolled out the cache"]
    for text in updates:
        post(gateway, f"{text}\n\n{SIGNATURE}")
    # Three mails could have been anything: they are published as written.
    assert bodies(engine) == [f"{text}\n\n{SIGNATURE}" for text in updates]
    post(gateway, f"Migrated the queue\n\n{SIGNATURE}")
    post(gateway, f"Wrote the runbook\nSee you all at the offsite.\n\n{SIGNATURE}")
    post(gateway, "Closed the incident\n\nSee you all at the offsite.\nBring snacks.")
    later = bodies(engine)[3:]
    assert later == ["Migrated the queue", "Wrote the runbook\nSee you all at the offsite.",
                     "Closed the incident\n\nSee you all at the offsite.\nBring snacks."]
    with Session(engine) as session:
        trimmed = session.exec(select(Post.trimmed).order_by(col(Post.id).desc())).all()
    assert SIGNATURE.splitlines()[0] in trimmed[1]  # kept with the post, for moderators


def test_a_learned_signature_belongs_to_its_sender_only(gateway, engine):
    for text in ("One", "Two", "Three"):
        post(gateway, f"{text} done\n\n{SIGNATURE}")
    post(gateway, f"Bob's update quoting Alice's card\n\n{SIGNATURE}", sender="Bob <bob@corp.example>")
    assert bodies(engine, "bob@corp.example") == [f"Bob's update quoting Alice's card\n\n{SIGNATURE}"]


def test_a_mail_that_is_only_the_signature_is_never_emptied(gateway, engine):
    for text in ("One", "Two", "Three"):
        post(gateway, f"{text} done\n\n{SIGNATURE}")
    post(gateway, SIGNATURE)
    assert bodies(engine)[-1] == SIGNATURE


def test_short_texts_have_no_closing_blocks_and_cost_no_query():
    assert closing_blocks("Shipped it") == []
    assert closing_blocks("Shipped it\nThanks") == []  # a single closing line is never learned
    assert [start for start, _ in closing_blocks("a\nb\nc")] == [0, 1]  # the whole text, the last two lines
    assert closing_blocks("a\n\nB  c\nd")[-1][1] == closing_blocks("x\nb c\n\nD")[-1][1]  # words, not spacing
