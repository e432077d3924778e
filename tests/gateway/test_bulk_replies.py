"""Replies that are not posts (SPEC §3, §4): digests, command answers and notices carry
``Reply-To: request_address``, and a reply to any of them runs as commands, also when a
client sends it to the status address. Text that is no command gets the help answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, func, select

from statusmail.inbound import outcome as replies
from statusmail.outbound.digest import send_digests
from statusmail.store.models import InboundLog, Post
from tests.conftest import make_mail, outbox_messages
from tests.gateway.clients import corpus_reply

LEA = "Lea Leader <lea@corp.example>"


def post_count(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Post)).one()


def digest_for_lea(gateway, cli, settings, engine):
    """Carol posts, Lea follows her and gets a digest: returned as it arrived."""
    cli("users", "add", "lea@corp.example", "--name", "Lea Leader")
    cli("users", "add", "carol@corp.example", "--name", "Carol Coder")
    gateway.send(make_mail(body="follow carol@corp.example", subject="commands", sender=LEA,
                           to="status-request@corp.example"), mail_from="lea@corp.example",
                 to="status-request@corp.example")
    gateway.send(make_mail(body="Launch checklist is done", subject="Launch", sender="carol@corp.example"),
                 mail_from="carol@corp.example")
    with Session(engine) as session:
        lea = session.exec(select(Post.id)).all()
    assert lea
    now = datetime.now(UTC) + timedelta(minutes=1)
    assert send_digests(settings, engine, now=now, force=True).queued >= 1
    gateway.flush_outbox()
    [digest] = [m for m in outbox_messages(settings) if m["Subject"].startswith("Your Status digest")
                and m["To"].addresses[0].addr_spec == "lea@corp.example"]
    return digest


def answers_to(settings, message_id: str):
    return [m for m in outbox_messages(settings) if m["In-Reply-To"] == message_id]


def test_digests_answers_and_notices_carry_reply_to_the_command_address(gateway, cli, settings, engine):
    digest = digest_for_lea(gateway, cli, settings, engine)
    assert digest["Reply-To"] == "status-request@corp.example"
    [answer] = [m for m in outbox_messages(settings) if m["Subject"] == "Re: commands"]
    assert answer["Reply-To"] == "status-request@corp.example"
    gateway.send(make_mail(body="x" * 400, subject="status", sender=LEA), mail_from="lea@corp.example")
    gateway.flush_outbox()
    [notice] = [m for m in outbox_messages(settings) if m["Subject"].startswith("Not posted")]
    assert notice["Reply-To"] == "status-request@corp.example"


def test_a_reply_to_a_digest_is_never_a_post_and_text_that_is_no_command_gets_help(gateway, cli, settings, engine):
    digest = digest_for_lea(gateway, cli, settings, engine)
    before = post_count(engine)
    reply = corpus_reply("gmail", digest, LEA, "Please take me off this list")
    assert reply["To"] == "status-request@corp.example"  # the Reply-To, as every client does
    code, text = gateway.send(reply, mail_from="lea@corp.example", to=str(reply["To"]))
    assert (code, text) == (250, replies.OK_COMMANDS.removeprefix("250 "))
    assert post_count(engine) == before
    gateway.flush_outbox()
    [answer] = answers_to(settings, reply["Message-ID"])
    body = answer.get_body(("plain",)).get_content()
    assert "> Please take me off this list\nnot understood" in body.replace("\r\n", "\n")
    assert "unsubscribe              no more digests" in body  # the help text
    assert answer["Subject"] == "Re: Your Status digest: 1 update"  # one Re:, never stacked


def test_a_digest_reply_sent_to_the_status_address_runs_as_commands(gateway, cli, settings, engine):
    """A client that ignores Reply-To (or a user who typed the status address) answers by
    In-Reply-To: still commands, never a company-wide post."""
    digest = digest_for_lea(gateway, cli, settings, engine)
    before = post_count(engine)
    for client in ("outlook", "apple"):
        reply = corpus_reply(client, digest, LEA, "unsubscribe", to="status@corp.example")
        assert gateway.send(reply, mail_from="lea@corp.example")[0] == 250
    assert post_count(engine) == before
    assert json.loads(cli("users", "show", "lea@corp.example", "--json").stdout)["digest"] == "off"
    with Session(engine) as session:
        reasons = session.exec(select(InboundLog.reason).order_by(InboundLog.id)).all()
    assert reasons[-2:] == ["commands", "commands"]


def test_a_reply_to_a_command_answer_is_answered_not_posted_and_re_does_not_stack(gateway, cli, settings, engine):
    command = make_mail(body="following", subject="Re: Re: my follows", sender=LEA, to="status-request@corp.example")
    gateway.send(command, mail_from="lea@corp.example", to="status-request@corp.example")
    gateway.flush_outbox()
    [answer] = answers_to(settings, command["Message-ID"])
    assert answer["Subject"] == "Re: my follows"
    reply = corpus_reply("outlook", answer, LEA, "Thanks a lot!", to="status@corp.example")
    assert gateway.send(reply, mail_from="lea@corp.example")[0] == 250
    assert post_count(engine) == 0
    gateway.flush_outbox()
    [second] = answers_to(settings, reply["Message-ID"])
    assert second["Subject"] == "Re: my follows"
    assert "not understood" in second.get_body(("plain",)).get_content()


def test_a_reply_to_a_post_mail_is_still_a_reply(gateway, cli, settings, engine):
    """The nearest Message-ID decides: a post's mail quoted under a digest is a reply."""
    cli("users", "add", "bob@corp.example", "--name", "Bob")
    gateway.send(make_mail(body="Root @bob", subject="status"))
    gateway.flush_outbox()
    [notification] = outbox_messages(settings)
    reply = corpus_reply("gmail", notification, "Bob <bob@corp.example>", "Answer", to="status@corp.example")
    assert gateway.send(reply, mail_from="bob@corp.example") == (250, replies.OK_REPLIED.removeprefix("250 "))
