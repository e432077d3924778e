"""The command line behaves the same way everywhere (SPEC §6; issue #18): repeating an
action in effect is harmless, nothing-to-do is a usage error, --config goes anywhere,
tables do not cut words, and the numbers mean what they say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from statusmail.store.models import AuditEntry, InboundLog, Outbox
from tests.conftest import make_mail
from tests.outbound.test_digest import add_post, add_user


def audit_rows(engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(e.action, e.target) for e in session.exec(select(AuditEntry).order_by(AuditEntry.id))]


def test_repeating_ban_unban_hide_unhide_delete_exits_0_says_so_and_audits_once(cli, engine):
    alice = add_user(engine, "alice@corp.example", "Alice")
    post = add_post(engine, alice, "a post", datetime.now(UTC))
    steps = [
        (("users", "ban", "alice@corp.example", "--reason", "spam"), "banned alice@corp.example",
         "alice@corp.example is already banned (spam); nothing changed"),
        (("users", "unban", "alice@corp.example"), "unbanned alice@corp.example",
         "alice@corp.example is not banned; nothing changed"),
        (("posts", "hide", str(post), "--reason", "dup"), f"post {post} hidden",
         f"post {post} is already hidden; nothing changed"),
        (("posts", "unhide", str(post)), f"post {post} visible", f"post {post} is already visible; nothing changed"),
        (("posts", "delete", str(post), "--reason", "gone"), f"post {post} deleted",
         f"post {post} is already deleted; nothing changed"),
    ]
    for args, first, repeated in steps:
        once, twice = cli(*args), cli(*args)
        assert (once.exit_code, once.stdout, twice.exit_code, twice.stdout) == (0, first + "\n", 0, repeated + "\n")
    assert audit_rows(engine) == [("ban", "alice@corp.example"), ("unban", "alice@corp.example"),
                                  ("hide", f"post {post}"), ("unhide", f"post {post}"), ("delete", f"post {post}")]


def test_each_repeated_action_prints_what_a_person_reads(cli, engine):
    alice = add_user(engine, "alice@corp.example", "Alice")
    post = add_post(engine, alice, "a post", datetime.now(UTC))
    said = [cli(*args).stdout.strip() for args in (
        ("users", "unban", "alice@corp.example"),
        ("users", "ban", "alice@corp.example", "--reason", "spam"),
        ("users", "ban", "alice@corp.example", "--reason", "other"),
        ("posts", "unhide", str(post)),
        ("posts", "hide", str(post), "--reason", "dup"),
        ("posts", "hide", str(post), "--reason", "dup"))]
    assert said == ["alice@corp.example is not banned; nothing changed", "banned alice@corp.example",
                    "alice@corp.example is already banned (spam); nothing changed",
                    f"post {post} is already visible; nothing changed", f"post {post} hidden",
                    f"post {post} is already hidden; nothing changed"]
    assert audit_rows(engine) == [("ban", "alice@corp.example"), ("hide", f"post {post}")]


def test_unhide_of_a_held_post_is_refused_with_the_way_to_publish_it(cli, engine):
    alice = add_user(engine, "alice@corp.example", "Alice")
    post = add_post(engine, alice, "held one", datetime.now(UTC), status="held")
    result = cli("posts", "unhide", str(post))
    assert result.exit_code == 1
    assert result.stderr == f"Error: post {post} is not hidden (it is held); `statusmail queue approve` publishes it\n"


def test_users_set_with_nothing_to_set_is_a_usage_error(cli, engine):
    add_user(engine, "alice@corp.example", "Alice")
    result = cli("users", "set", "alice@corp.example")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == ("Error: nothing to set: give at least one option "
                                             "(see `statusmail users set --help`)")
    assert cli("users", "set", "alice@corp.example", "--reset-bounces").stdout == "updated alice@corp.example\n"


def test_following_yourself_is_refused(cli, engine):
    add_user(engine, "alice@corp.example", "Alice")
    for target in ("alice@corp.example", "@alice"):
        result = cli("follows", "add", "alice@corp.example", target)
        assert (result.exit_code, result.stderr) == (1, "Error: alice@corp.example cannot follow themselves\n")
    assert json.loads(cli("follows", "list", "alice@corp.example", "--json").stdout) == []


def test_config_is_accepted_before_the_group_after_it_and_after_the_command(config_file, engine):
    from click.testing import CliRunner

    from statusmail.cli import main

    runner = CliRunner()
    for args in (["--config", str(config_file), "posts", "list"], ["posts", "--config", str(config_file), "list"],
                 ["posts", "list", "--config", str(config_file)], ["digest", "--config", str(config_file), "send"]):
        result = runner.invoke(main, args, env={"STATUSMAIL_CONFIG": None})
        assert result.exit_code == 0, (args, result.output)


def test_the_log_table_cuts_a_long_reason_at_a_word_with_an_ellipsis(cli):
    result = cli("inject", input=make_mail(sender="eve@a-rather-long-subdomain.elsewhere.example").as_bytes())
    assert result.exit_code == 1
    [entry] = json.loads(cli("log", "--json").stdout)
    assert len(entry["reason"]) > 60
    header, row = cli("log").stdout.splitlines()
    start = header.index("REASON")
    cell = row[start:start + 60].split("  ")[0]
    assert cell.endswith("…") and len(cell) <= 60
    assert entry["reason"].startswith(cell[:-1]) and entry["reason"][len(cell) - 1] == " "


def test_outbox_list_shows_why_mail_failed(cli, engine):
    with Session(engine) as session:
        session.add(Outbox(to_addr="gone@corp.example", subject="Re: x", kind="notification", status="failed",
                           attempts=1, last_error="550 5.1.1 <gone@corp.example>: Recipient address rejected",
                           message_id="<x@corp.example>", envelope_from="status+bounce-x@corp.example"))
        session.commit()
    header, row = cli("outbox", "list").stdout.splitlines()
    assert header.split()[-1] == "LAST_ERROR"
    assert row.endswith("550 5.1.1 <gone@corp.example>: Recipient address rejected")


def test_stats_count_only_visible_activity_and_pluralise(cli, engine):
    alice = add_user(engine, "alice@corp.example", "Alice")
    bob = add_user(engine, "bob@corp.example", "Bob", mail_suspended=True)
    now = datetime.now(UTC) - timedelta(minutes=5)
    add_post(engine, alice, "seen #ops", now, tags=("ops",))
    add_post(engine, bob, "deleted #secret", now, status="deleted", tags=("secret",))
    add_post(engine, bob, "rejected", now, status="deleted")
    add_post(engine, bob, "held #secret", now, status="held", tags=("secret",))
    stats = json.loads(cli("stats", "--json").stdout)
    assert sum(stats["posts_per_day"].values()) == 1 and stats["active_posters"] == 1
    assert stats["top_tags"] == [{"tag": "ops", "posts": 1}] and stats["held_posts"] == 1
    text = cli("stats").stdout
    assert "  active posters:   1 of 2 users\n" in text
    assert "  bounces:          0 (1 address suspended)\n" in text


def test_the_log_row_of_a_mail_without_message_id_carries_the_one_its_post_got(gateway, cli, engine):
    """A mail that arrived without a Message-ID gets one for its post (threading needs
    it); its log row names the post by that id too, so the CLI and whatever reads the
    table agree. The row used to keep "" and only ``statusmail log`` looked the post up."""
    mail = make_mail(body="no id here", subject="status")
    del mail["Message-ID"]
    assert gateway.send(mail)[0] == 250
    [post] = json.loads(cli("posts", "list", "--json").stdout)
    assert post["message_id"].startswith("<") and post["message_id"].endswith("@corp.example>")
    [entry] = json.loads(cli("log", "--json").stdout)
    assert (entry["message_id"], entry["post_id"]) == (post["message_id"], post["id"])
    assert post["message_id"] in cli("log").stdout
    with Session(engine) as session:
        assert session.exec(select(InboundLog)).one().message_id == post["message_id"]


def test_a_mail_without_message_id_that_posts_nothing_logs_none(gateway, cli):
    mail = make_mail(body="w " * 200, subject="status")  # too long: answered, not posted
    del mail["Message-ID"]
    assert gateway.send(mail)[0] == 250
    [entry] = json.loads(cli("log", "--json").stdout)
    assert (entry["message_id"], entry["post_id"]) == (None, None)


def test_integers_out_of_range_are_usage_errors(cli):
    for args in (("posts", "show", "0"), ("posts", "show", "99999999999999999999"), ("posts", "hide", "--reason", "x", "--", "-1"),
                 ("log", "--limit", "0"), ("stats", "--days", "0"), ("audit", "--limit", "1000001"),
                 ("reprocess", "0"), ("outbox", "retry", "0")):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert "is not in the range" in result.stderr, args


def test_every_integer_parameter_has_a_range(cli):
    import click

    from statusmail.cli import main
    from tests.cli.test_setup import leaf_commands

    for path, command in leaf_commands(main):
        for param in command.params:
            if isinstance(param.type, click.types._NumberParamTypeBase):
                assert isinstance(param.type, click.IntRange) and param.type.min is not None, (path, param.name)
