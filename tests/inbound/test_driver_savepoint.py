"""Posts and replies run in a driver-level SAVEPOINT (store/direct.py DriverSavepoint).

That savepoint is cheap because the ORM does not know about it, which holds only while
no stage of a post or a reply writes through the ORM's flush: a failed flush would roll
back the whole batch's transaction. These tests hold the stages to that, and check that
a rollback leaves neither rows nor objects behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from statusmail.config import Settings
from statusmail.gateway.batcher import commit_batch
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.outcome import Reason
from statusmail.store.db import transaction
from statusmail.store.models import Outbox, Post, ReplyToken, User
from statusmail.store.users import register_user
from tests.conftest import make_mail


def message(sender: str, body: str, **headers: str) -> tuple[bytes, Envelope]:
    mail = make_mail(sender=sender, body=body, **headers)
    return (mail.as_bytes(policy=policy.SMTP),
            Envelope(mail_from=sender, rcpt_tos=("status@corp.example",), peer="127.0.0.1", source="smtp"))


@pytest.fixture
def orm_writes() -> Iterator[list[str]]:
    """Every ORM flush that had something to write, while the test runs."""
    seen: list[str] = []

    def record(session: Session, _context: Any, _instances: Any) -> None:
        changed = [type(o).__name__ for o in (*session.new, *session.dirty, *session.deleted)]
        if changed:
            seen.append(", ".join(changed))

    event.listen(Session, "before_flush", record)
    yield seen
    event.remove(Session, "before_flush", record)


def test_posts_and_replies_never_write_through_the_orm(settings: Settings, engine: Any,
                                                       orm_writes: list[str]) -> None:
    with transaction(engine) as session:
        register_user(session, "bob@corp.example", name="Bob")
    orm_writes.clear()  # registering bob through the CLI's path is not the pipeline's business
    strict = dataclasses.replace(settings, policy=dataclasses.replace(settings.policy, max_chars=60))
    first = make_mail(sender="nina@corp.example", body="hello @bob, the export is done")
    jobs = [
        (first.as_bytes(policy=policy.SMTP),  # a new sender, registered; bob is told he was mentioned
         Envelope(mail_from="nina@corp.example", rcpt_tos=("status@corp.example",), peer="127.0.0.1")),
        message("bob@corp.example", "thanks, looks good", In_Reply_To=first["Message-ID"]),  # nina is told
        message("bob@corp.example", "far too long " * 10),  # bob gets a notice instead of a post
        message("mallory@evil.example", "spam"),  # refused: its savepoint rolls back
    ]
    outcomes = commit_batch(strict, engine, jobs)
    assert [o.reason for o in outcomes] == [Reason.POSTED, Reason.REPLIED, Reason.TOO_LONG,
                                            Reason.DOMAIN_NOT_ALLOWED]
    with Session(engine) as session:
        to = sorted(session.exec(select(Outbox.to_addr)).all())
        tokens = session.exec(select(ReplyToken)).all()
    assert to == ["bob@corp.example", "bob@corp.example", "nina@corp.example"]  # mention, notice, reply
    assert tokens  # the notifications carry reply addresses
    assert orm_writes == []


def test_a_rolled_back_registration_leaves_no_row_and_no_object_behind(settings: Settings, engine: Any) -> None:
    """The second message's post must get its own author, not a ghost of the refused one's."""
    jobs = [message("nina@corp.example", "", subject=""),  # registers nina, then 550: empty
            message("omar@corp.example", "first update from omar")]
    outcomes = commit_batch(settings, engine, jobs)
    assert [o.reason for o in outcomes] == [Reason.EMPTY, Reason.POSTED]
    with Session(engine) as session:
        authors = session.exec(select(User.email).join(Post, col(Post.author_id) == User.id)).all()
        users = session.exec(select(User.email)).all()
    assert authors == ["omar@corp.example"]
    assert users == ["omar@corp.example"]


class NeverSeen:
    """Stands in for the dedupe lookup, as if another instance stored the message just
    after this one looked (two gateways on one PostgreSQL)."""

    def scalar(self, session: Session, values: Any) -> None:
        return None


def test_a_duplicate_that_raced_in_rolls_back_its_own_post_and_the_batch_goes_on(
        settings: Settings, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from statusmail.inbound import parse

    first = message("omar@corp.example", "the export is done")
    assert commit_batch(settings, engine, [first])[0].reason is Reason.POSTED
    monkeypatch.setattr(parse, "SEEN", NeverSeen())
    # The redelivery gets as far as its log row, whose dedupe key is taken: IntegrityError,
    # which on PostgreSQL also aborts the transaction until ROLLBACK TO SAVEPOINT.
    outcomes = commit_batch(settings, engine, [first, message("omar@corp.example", "and the next one")])
    assert [o.reason for o in outcomes] == [Reason.DUPLICATE, Reason.POSTED]
    with Session(engine) as session:
        bodies = session.exec(select(Post.body).order_by(Post.id)).all()
    assert bodies == ["Billing export done\n\nthe export is done", "Billing export done\n\nand the next one"]
