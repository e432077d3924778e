"""Moderation from the command line, checked end to end over SMTP (SPEC §6)."""

from __future__ import annotations

import json

from sqlmodel import Session, col, select

from statusmail.store.models import InboundLog, Outbox, Post
from tests.conftest import RunningGateway, make_mail, outbox_messages, write_config


def as_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_banned_sender_is_refused_550_and_mailed_nothing(gateway, cli, settings, engine):
    cli("users", "add", "alice@corp.example")
    assert cli("users", "ban", "alice@corp.example", "--reason", "spam", "--as", "root-admin").exit_code == 0
    code, reply = gateway.send(make_mail())
    assert code == 550 and reply.startswith("5.7.1")
    gateway.flush_outbox()
    assert outbox_messages(settings) == []
    assert as_json(cli("users", "show", "alice@corp.example", "--json"))["banned"] is True
    assert cli("users", "unban", "alice@corp.example").exit_code == 0
    assert gateway.send(make_mail(body="back again"))[0] == 250


def test_a_ban_made_while_the_gateway_runs_is_refused_at_once(gateway, cli, engine):
    """RCPT answers from a set of banned senders reread every few seconds; a ban newer
    than that set is refused by the pipeline at DATA, with the same 550 5.7.1."""
    cli("users", "add", "alice@corp.example")
    assert gateway.send(make_mail(body="before the ban"))[0] == 250  # RCPT has read the (empty) banned set
    assert cli("users", "ban", "alice@corp.example", "--reason", "spam").exit_code == 0
    code, reply = gateway.send(make_mail(body="right after the ban"))
    assert (code, reply[:5]) == (550, "5.7.1")
    with Session(engine) as session:
        last = session.exec(select(InboundLog).order_by(col(InboundLog.id).desc())).first()
    assert (last.outcome, last.reason) == ("refused", "banned")


def test_a_hidden_post_vanishes_from_the_default_list_and_from_notifications(gateway, cli, settings, engine):
    cli("users", "add", "bob@corp.example")
    gateway.send(make_mail(body="Secret roadmap details", subject="status"))
    [root] = as_json(cli("posts", "list", "--json"))
    assert cli("posts", "hide", str(root["id"]), "--reason", "confidential").exit_code == 0
    assert [p["status"] for p in as_json(cli("posts", "list", "--status", "hidden", "--json"))] == ["hidden"]
    # SPEC §3 Closed threads: a reply into it is refused, and nobody hears of it.
    code, reply = gateway.send(make_mail(body="Where can I read more?", subject="Re: x", sender="bob@corp.example",
                                         In_Reply_To=root["message_id"]), mail_from="bob@corp.example")
    assert code == 550 and reply.startswith("5.7.1")
    gateway.flush_outbox()
    assert outbox_messages(settings) == []
    assert cli("posts", "unhide", str(root["id"])).exit_code == 0
    again = cli("posts", "unhide", str(root["id"]))  # SPEC §6: already in effect is exit 0, and says so
    assert (again.exit_code, again.stdout) == (0, f"post {root['id']} is already visible; nothing changed\n")


def test_posts_list_without_status_shows_every_status_and_with_status_filters(gateway, cli):
    gateway.send(make_mail(body="one", subject="status"))
    gateway.send(make_mail(body="two", subject="status"))
    first, second = sorted(as_json(cli("posts", "list", "--json")), key=lambda p: p["id"])
    cli("posts", "delete", str(first["id"]), "--reason", "wrong channel")
    statuses = {p["id"]: p["status"] for p in as_json(cli("posts", "list", "--json"))}
    assert statuses == {first["id"]: "deleted", second["id"]: "visible"}
    assert [p["id"] for p in as_json(cli("posts", "list", "--status", "visible", "--json"))] == [second["id"]]


def test_held_posts_wait_and_approve_publishes_with_notifications(tmp_path, sqlite_url, cli_for):
    config = write_config(tmp_path, sqlite_url, 'hold_patterns = ["(?i)confidential"]')
    cli, settings, engine = cli_for(config)
    cli("users", "add", "bob@corp.example")
    running = RunningGateway(settings, engine)
    try:
        assert running.send(make_mail(body="Confidential: merger talk with @bob", subject="status"))[0] == 250
        [held] = as_json(cli("queue", "list", "--json"))
        assert held["status"] == "held" and "confidential" in held["hold_reason"]
        running.flush_outbox()
        assert outbox_messages(settings) == []  # nothing announced while held
        result = cli("queue", "approve", str(held["id"]), "--as", "moderator")
        assert result.exit_code == 0 and "1 notification" in result.stdout
        running.flush_outbox()
        [mail] = outbox_messages(settings)
        assert mail["To"].addresses[0].addr_spec == "bob@corp.example"
        assert as_json(cli("queue", "list", "--json")) == []
        # SPEC §6: repeating an action already in effect exits 0, says so, mails no one.
        again = cli("queue", "approve", str(held["id"]))
        assert again.exit_code == 0 and "already visible; nothing changed" in again.stdout
        assert running.flush_outbox() == 0
        assert [e["action"] for e in as_json(cli("audit", "--json"))] == ["approve"]
    finally:
        running.stop()


def test_reject_tells_the_sender_why_once(tmp_path, sqlite_url, cli_for):
    config = write_config(tmp_path, sqlite_url, "hold_new_users = true")
    cli, settings, engine = cli_for(config)
    running = RunningGateway(settings, engine)
    try:
        running.send(make_mail(body="my very first post", subject="status"))
        [held] = as_json(cli("queue", "list", "--json"))
        assert held["hold_reason"] == "first post of a new user"
        assert cli("queue", "reject", str(held["id"]), "--reason", "please use #random for this").exit_code == 0
        again = cli("queue", "reject", str(held["id"]), "--reason", "again")  # SPEC §6: exit 0, says so
        assert again.exit_code == 0 and "already deleted; nothing changed" in again.stdout
        running.flush_outbox()
        [mail] = outbox_messages(settings)
        assert mail["To"].addresses[0].addr_spec == "alice@corp.example"
        assert "please use #random for this" in mail.get_body(("plain",)).get_content()
        assert mail["Auto-Submitted"] == "auto-replied"
        with Session(engine) as session:
            assert session.get(Post, held["id"]).status == "deleted"
            assert len(session.exec(select(Outbox)).all()) == 1
    finally:
        running.stop()


def test_the_audit_trail_records_who_what_and_why(gateway, cli):
    cli("users", "add", "bob@corp.example")
    gateway.send(make_mail(body="a post", subject="status"))
    [post] = as_json(cli("posts", "list", "--json"))
    cli("users", "ban", "bob@corp.example", "--reason", "impersonation", "--as", "carol")
    cli("posts", "hide", str(post["id"]), "--reason", "duplicate", "--as", "dave")
    entries = as_json(cli("audit", "--json"))
    assert [(e["actor"], e["action"], e["target"], e["reason"]) for e in entries] == [
        ("dave", "hide", f"post {post['id']}", "duplicate"),
        ("carol", "ban", "bob@corp.example", "impersonation")]
    assert all(e["at"].endswith("Z") for e in entries)
    table = cli("audit").stdout.splitlines()
    assert table[0].split() == ["ID", "AT", "ACTOR", "ACTION", "TARGET", "REASON"]


def test_the_audit_actor_defaults_to_the_os_user(gateway, cli):
    import getpass

    cli("users", "add", "bob@corp.example")
    cli("users", "ban", "bob@corp.example", "--reason", "test")
    [entry] = as_json(cli("audit", "--json"))
    assert entry["actor"] == getpass.getuser()


def test_stats_count_posts_posters_tags_and_held(gateway, cli):
    gateway.send(make_mail(body="one #ops", subject="status"))
    gateway.send(make_mail(body="two #ops #db", subject="status", sender="bob@corp.example"),
                 mail_from="bob@corp.example")
    stats = as_json(cli("stats", "--json"))
    assert sum(stats["posts_per_day"].values()) == 2
    assert stats["active_posters"] == 2 and stats["held_posts"] == 0
    assert stats["top_tags"][0] == {"tag": "ops", "posts": 2}
    assert "active posters:   2" in cli("stats").stdout


def test_moderation_commands_on_unknown_ids_exit_1_with_one_line(cli):
    cli("init")
    for args in (("posts", "hide", "77", "--reason", "x"), ("queue", "approve", "77"),
                 ("users", "ban", "ghost@corp.example", "--reason", "x")):
        result = cli(*args)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, args


def test_ban_without_a_reason_is_a_usage_error(cli):
    assert cli("users", "ban", "x@corp.example").exit_code == 2
