"""The disposition table is the only place an outcome's meaning lives (inbound/outcome.py)."""

from __future__ import annotations

import re

from statusmail.inbound.outcome import DISPOSITIONS, Mailbox, Reason, Status

REPLY = re.compile(r"^([245])\d\d ([245])\.\d{1,3}\.\d{1,3}( |$)")


def test_every_reason_has_a_disposition() -> None:
    assert set(DISPOSITIONS) == set(Reason)


def test_basic_and_enhanced_codes_agree_in_class() -> None:
    """RFC 3463 §2: a 4xx reply carries 4.x.x, a 5xx 5.x.x."""
    for reason, disposition in DISPOSITIONS.items():
        match = REPLY.match(disposition.smtp)
        assert match, f"{reason.name}: {disposition.smtp!r} has no enhanced code"
        assert match.group(1) == match.group(2), f"{reason.name}: {disposition.smtp!r}"


def test_the_log_status_the_reply_and_the_mailbox_agree() -> None:
    for reason, disposition in DISPOSITIONS.items():
        code = disposition.smtp[0]
        if disposition.status is Status.REFUSED:
            assert code in "45", reason.name
            # a 4xx asks to come back later; over IMAP that is leaving it in the folder
            assert (disposition.mailbox is Mailbox.RETRY) == (code == "4"), reason.name
        else:
            assert code == "2" and disposition.mailbox is Mailbox.PROCESSED, reason.name


def test_only_the_gateways_own_trouble_and_rate_limits_are_temporary() -> None:
    temporary = {r for r, d in DISPOSITIONS.items() if d.smtp.startswith("4")}
    # TOO_MANY_REFUSALS is the 421 that closes a session after 20 refusals (#16): it
    # decides no message.
    assert temporary == {Reason.RATE_LIMITED, Reason.STORE_UNAVAILABLE, Reason.INTERNAL_ERROR,
                         Reason.TOO_MANY_REFUSALS}


def test_a_refused_sender_is_never_answered_by_mail() -> None:
    """No backscatter: only accepted mail from a sender the gateway trusts gets an answer."""
    for reason, disposition in DISPOSITIONS.items():
        if disposition.answered:
            assert disposition.status is not Status.REFUSED, reason.name


def test_an_answer_a_stage_asked_for_is_dropped_when_the_reason_says_no_answer(settings, engine) -> None:
    """A stage that queued an answer and then stopped for a reason that is not answered
    (here: held) mails nobody; the table decides, not the stage."""
    from sqlmodel import Session, select

    from statusmail.inbound.envelope import Envelope
    from statusmail.inbound.incoming import Incoming
    from statusmail.inbound.outcome import Outcome
    from statusmail.outbound.notices import QueueNotice
    from statusmail.store.models import User

    with Session(engine) as session:
        mail = Incoming(raw=b"", envelope=Envelope(mail_from="a@corp.example"), settings=settings, session=session)
        mail.changes.append(QueueNotice(settings, User(email="a@corp.example", handle="a"), "too_long", subject="x"))
        held = mail.decision(Outcome(Reason.HELD, "held"))
        answered = mail.decision(Outcome(Reason.TOO_LONG, "too long"))
        assert session.exec(select(User)).all() == []
    assert held.changes == [] and len(answered.changes) == 1
