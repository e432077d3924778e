"""Commands by mail to the request address, each answered by one mail (SPEC §3)."""

from __future__ import annotations

import json

from statusmail.inbound import outcome as replies
from tests.conftest import make_mail, outbox_messages


def command(gateway, settings, text: str, subject: str = "commands", **headers: str) -> str:
    """Send commands; return the text of the one answer (found by its In-Reply-To)."""
    mail = make_mail(body=text, subject=subject, to="status-request@corp.example", **headers)
    code, reply = gateway.send(mail, to="status-request@corp.example")
    assert (code, reply) == (250, replies.OK_COMMANDS.removeprefix("250 "))
    gateway.flush_outbox()
    [answer] = [m for m in outbox_messages(settings) if m["In-Reply-To"] == mail["Message-ID"]]
    assert answer["To"].addresses[0].addr_spec == "alice@corp.example"
    assert answer["Auto-Submitted"] == "auto-replied"
    return answer.get_body(("plain",)).get_content().replace("\r\n", "\n")


def test_follow_and_following_and_unfollow_by_mail(gateway, settings, cli):
    cli("users", "add", "bob@corp.example")
    answer = command(gateway, settings, "follow @bob\nfollow #Billing\nfollowing")
    assert "now following bob@corp.example (@bob)" in answer and "now following #billing" in answer
    assert "you follow:" in answer
    follows = json.loads(cli("follows", "list", "alice@corp.example", "--json").stdout)
    assert [f["target"] for f in follows] == ["bob@corp.example", "#billing"]
    answer = command(gateway, settings, "unfollow bob@corp.example")
    assert "no longer following bob@corp.example" in answer
    assert [f["target"] for f in json.loads(cli("follows", "list", "alice@corp.example", "--json").stdout)] == ["#billing"]


def test_digest_timezone_and_unsubscribe_change_the_users_settings(gateway, settings, cli):
    answer = command(gateway, settings, "digest weekly\ntimezone Europe/Berlin")
    assert "digest set to weekly" in answer and "timezone set to Europe/Berlin" in answer
    user = json.loads(cli("users", "show", "alice@corp.example", "--json").stdout)
    assert (user["digest"], user["timezone"]) == ("weekly", "Europe/Berlin")
    command(gateway, settings, "", subject="unsubscribe")  # the List-Unsubscribe mailto: subject only
    assert json.loads(cli("users", "show", "alice@corp.example", "--json").stdout)["digest"] == "off"


def test_an_unknown_command_is_answered_with_help_and_the_failing_line(gateway, settings):
    answer = command(gateway, settings, "follow #ops\nplease add me to everything")
    assert "now following #ops" in answer
    assert "> please add me to everything\nnot understood" in answer
    assert "digest daily|weekly|off" in answer  # the help text


def test_an_unknown_timezone_is_refused_politely(gateway, settings, cli):
    answer = command(gateway, settings, "timezone Mars/Olympus")
    assert "unknown timezone 'Mars/Olympus'" in answer
    assert json.loads(cli("users", "show", "alice@corp.example", "--json").stdout)["timezone"] == "UTC"


def test_mute_in_a_reply_to_a_thread_mail_stops_notifications(gateway, settings, cli, engine):
    cli("users", "add", "bob@corp.example")
    gateway.send(make_mail(body="Root by alice", subject="status"))
    [root] = json.loads(cli("posts", "list", "--json").stdout)
    answer = command(gateway, settings, "mute", subject="Re: Root by alice", In_Reply_To=root["message_id"])
    assert 'thread "Root by alice" muted' in answer and str(root['id']) not in answer
    gateway.send(make_mail(body="bob answers", subject="Re: x", sender="bob@corp.example",
                           In_Reply_To=root["message_id"]), mail_from="bob@corp.example")
    gateway.flush_outbox()
    assert [m["To"].addresses[0].addr_spec for m in outbox_messages(settings)] == ["alice@corp.example"]  # the answer only


def test_a_command_from_a_foreign_domain_is_refused_and_not_answered(gateway, settings):
    code, _ = gateway.send(make_mail(body="help", sender="x@elsewhere.example", to="status-request@corp.example"),
                           mail_from="x@elsewhere.example", to="status-request@corp.example")
    assert code == 550
    gateway.flush_outbox()
    assert outbox_messages(settings) == []
