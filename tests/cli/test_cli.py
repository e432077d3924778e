"""The command line through CliRunner on the real command group (SPEC §6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli_invoker, make_mail, write_config


def inject(cli, mail) -> object:
    return cli("inject", input=mail.as_bytes())


def test_init_creates_the_database_and_secret_and_is_idempotent(uninitialised_cli, tmp_path):
    cli = uninitialised_cli
    first = cli("init")
    assert first.exit_code == 0 and "created" in first.stdout
    secret = Path(tmp_path / "secret.key")
    key = secret.read_text()
    assert len(key.strip()) == 64 and oct(secret.stat().st_mode & 0o777) == "0o600"
    second = cli("init")
    assert second.exit_code == 0 and "up to date" in second.stdout
    assert secret.read_text() == key


def test_init_on_a_database_server_that_does_not_answer_is_one_line_and_exit_1(tmp_path):
    # SPEC §6: a failed operation is one line on stderr, not a traceback. Port 1 refuses
    # at once: no PostgreSQL server is needed to see it.
    config = write_config(tmp_path, "postgresql+psycopg://statusmail@127.0.0.1:1/statusmail")
    result = cli_invoker(config)("init")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: database unavailable: ") and "127.0.0.1" in line


def test_inject_posts_and_exits_0_then_posts_list_shows_it_as_json(cli):
    result = inject(cli, make_mail(body="Launched the new onboarding flow #growth", subject="status"))
    assert result.exit_code == 0 and result.stdout.startswith("accepted")
    listed = cli("posts", "list", "--json")
    [post] = json.loads(listed.stdout)
    assert set(post) >= {"id", "author", "author_name", "body", "created_at", "thread_id", "parent_id", "tags",
                         "mentions", "status", "reply_count", "message_id"}
    assert post["author"] == "alice@corp.example" and post["author_name"] == "Alice Example"
    assert post["body"] == "Launched the new onboarding flow #growth"
    assert post["tags"] == ["growth"] and post["thread_id"] == post["id"] and post["parent_id"] is None
    assert post["created_at"].endswith("Z")


def test_inject_exits_1_when_refused(cli):
    result = inject(cli, make_mail(sender="eve@elsewhere.example"))
    assert result.exit_code == 1 and result.stdout.startswith("refused")


def test_inject_of_an_over_long_update_is_accepted_not_posted_and_answered(cli):
    # The disposition table: too long is accepted (250 over SMTP) and the sender is told,
    # so inject exits 0 and says what happened, as the log does.
    result = inject(cli, make_mail(body="w " * 200, subject="status"))
    assert result.exit_code == 0 and result.stdout.startswith("accepted: too long")
    [entry] = json.loads(cli("log", "--json").stdout)
    assert entry["outcome"] == "accepted" and entry["reason"].startswith("too_long")
    [mail] = json.loads(cli("outbox", "list", "--json").stdout)
    assert mail["kind"] == "notice" and mail["to"] == "alice@corp.example" and mail["status"] == "queued"
    assert json.loads(cli("posts", "list", "--json").stdout) == []


def test_users_add_show_and_list(cli):
    assert cli("users", "add", "carol@corp.example", "--name", "Carol", "--role", "leader", "--team", "ops",
               "--timezone", "Asia/Tokyo").exit_code == 0
    shown = json.loads(cli("users", "show", "carol@corp.example", "--json").stdout)
    assert shown == {"email": "carol@corp.example", "name": "Carol", "handle": "carol", "role": "leader",
                     "team": "ops", "manager": None, "timezone": "Asia/Tokyo", "digest": "daily", "checkin": "on", "banned": False,
                     "ban_reason": "", "mail_suspended": False, "hard_bounces": 0}
    listed = json.loads(cli("users", "list", "--json").stdout)
    assert [u["email"] for u in listed] == ["carol@corp.example"]
    table = cli("users", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["EMAIL", "NAME", "HANDLE"] and "carol@corp.example" in table[1]


def test_an_unknown_user_or_post_is_one_line_on_stderr_and_exit_1(cli):
    cli("init")
    result = cli("users", "show", "nobody@corp.example")
    assert result.exit_code == 1 and result.stderr.strip() == "Error: no such user: nobody@corp.example"
    result = cli("posts", "show", "999")
    assert result.exit_code == 1 and "no such post: 999" in result.stderr


def test_bad_usage_exits_2(cli):
    assert cli("posts", "list", "--status", "sideways").exit_code == 2
    assert cli("posts", "list", "--since", "yesterday-ish").exit_code == 2
    assert cli("outbox", "retry", "1", "--all").exit_code == 2
    assert cli("users", "add", "not-an-address").exit_code == 2


def test_posts_list_filters_by_author_tag_status_and_limit(cli):
    inject(cli, make_mail(body="one #alpha", subject="status"))
    inject(cli, make_mail(body="two #beta", subject="status", sender="bob@corp.example"))
    inject(cli, make_mail(body="three #alpha", subject="status"))
    bodies = lambda *args: [p["body"] for p in json.loads(cli("posts", "list", "--json", *args).stdout)]  # noqa: E731
    assert bodies() == ["three #alpha", "two #beta", "one #alpha"]
    assert bodies("--author", "bob@corp.example") == ["two #beta"]
    assert bodies("--tag", "alpha") == ["three #alpha", "one #alpha"]
    assert bodies("--limit", "1") == ["three #alpha"]
    assert bodies("--status", "hidden") == []


def test_log_lists_every_message_with_outcome_and_filters(cli):
    inject(cli, make_mail(body="fine", subject="status"))
    inject(cli, make_mail(sender="eve@elsewhere.example"))
    entries = json.loads(cli("log", "--json").stdout)
    assert [e["outcome"] for e in entries] == ["refused", "accepted"]
    assert set(entries[0]) >= {"id", "received_at", "message_id", "sender", "outcome", "reason", "post_id"}
    assert entries[0]["reason"].startswith("domain_not_allowed")
    assert entries[1]["post_id"] is not None
    refused = json.loads(cli("log", "--outcome", "refused", "--json").stdout)
    assert [e["sender"] for e in refused] == ["eve@elsewhere.example"]


def test_outbox_retry_makes_failed_mail_due_and_says_when_there_is_none(cli):
    cli("init")
    for args in (("--all",), ()):
        result = cli("outbox", "retry", *args)
        assert result.exit_code == 0 and result.stdout.strip() == "0 mail(s) due now"
    assert cli("outbox", "retry", "42").exit_code == 1


def test_outbox_retry_of_mail_already_sent_exits_0_and_sends_nothing_again(cli, settings, engine):
    import asyncio

    from statusmail.outbound.outbox import drain
    from statusmail.outbound.transport import make_transport
    from tests.conftest import outbox_messages

    inject(cli, make_mail(body="w " * 200, subject="status"))  # too long: the sender is told by mail
    [queued] = json.loads(cli("outbox", "list", "--json").stdout)
    assert asyncio.run(drain(engine, make_transport(settings))) == 1
    result = cli("outbox", "retry", str(queued["id"]))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"outbox entry {queued['id']} was already sent; nothing changed"
    assert asyncio.run(drain(engine, make_transport(settings))) == 0
    assert len(outbox_messages(settings)) == 1


def test_check_reports_database_and_relay(cli):
    cli("init")
    result = cli("check")
    assert result.exit_code == 0
    assert "ok    database: reachable" in result.stdout and "ok    relay: Maildir" in result.stdout


def test_check_fails_on_an_uninitialised_database(uninitialised_cli, database_url):
    result = uninitialised_cli("check")
    assert result.exit_code == 1 and "FAIL  database" in result.stdout


def private_sqlite_cli(tmp_path):
    """The CLI on a SQLite file that ``init`` made (0600 in a 0700 folder): the database
    file and its folder."""
    folder = tmp_path / "var"
    cli = cli_invoker(write_config(tmp_path, f"sqlite:///{folder}/statusmail.db"))
    assert cli("init").exit_code == 0
    return cli, folder / "statusmail.db", folder


def database_warnings(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("warn  database:")]


def test_check_warns_when_the_database_file_is_readable_by_group_and_others(tmp_path):
    """The database holds reply tokens and raw mail (SPEC §2: the owner's only)."""
    cli, database, folder = private_sqlite_cli(tmp_path)
    result = cli("check")
    assert result.exit_code == 0 and database_warnings(result) == []
    database.chmod(0o644)
    result = cli("check")
    assert result.exit_code == 0  # a warning, like the others: it works, but trusts too many
    assert database_warnings(result) == [
        f"warn  database: {database} is mode 0644: group and others can read it, and it holds reply tokens "
        f"and raw mail; chmod 600 {database}"]
    database.chmod(0o600)
    folder.chmod(0o775)
    assert database_warnings(cli("check")) == [
        f"warn  database: the folder {folder} is mode 0775: group can read and write it, others can read it, "
        f"and it holds the database; chmod 700 {folder}"]


def test_check_warns_about_wal_and_shm_files_that_kept_a_wider_mode(tmp_path):
    """SQLite gives the -wal and -shm files the database file's mode when it makes them:
    a chmod 600 of the database alone leaves them readable while a process keeps them."""
    import sqlite3

    cli, database, _ = private_sqlite_cli(tmp_path)
    database.chmod(0o640)
    connection = sqlite3.connect(database)  # as serve's connections do: WAL, files open
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE scratch (x)")
        connection.commit()
        database.chmod(0o600)
        warnings = database_warnings(cli("check"))
    finally:
        connection.close()
    assert warnings == [f"warn  database: {database}-{suffix} is mode 0640: group can read it, and it holds "
                        f"reply tokens and raw mail; chmod 600 {database}-{suffix}" for suffix in ("wal", "shm")]


def test_check_warns_about_a_secret_key_or_password_file_others_can_read(tmp_path):
    """Whoever reads the key signs any reader's feed and unsubscribe links; a relay
    password file belongs to the owner alone. Both are named with the fix."""
    password = tmp_path / "relay.password"
    password.write_text("hunter2\n")
    password.chmod(0o600)
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/var/statusmail.db")
    config.write_text(config.read_text().replace("[outbound]\n", f'[outbound]\npassword_file = "{password}"\n'))
    cli = cli_invoker(config)
    assert cli("init").exit_code == 0
    key = tmp_path / "secret.key"

    def secret_warnings() -> list[str]:
        result = cli("check")
        assert result.exit_code == 0 and "hunter2" not in result.output
        return [line for line in result.stdout.splitlines() if line.startswith("warn  ") and "database:" not in line]

    assert secret_warnings() == []  # init made the key 0600
    key.chmod(0o644)
    password.chmod(0o640)
    assert secret_warnings() == [
        f"warn  gateway.secret_key_file: {key} is mode 0644: group and others can read it, and it holds the key "
        f"that signs feed and unsubscribe links; chmod 600 {key}",
        f"warn  outbound.password_file: {password} is mode 0640: group can read it, and it holds the relay "
        f"password; chmod 600 {password}"]


def test_check_does_not_look_for_database_files_behind_a_postgresql_url(cli, database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL case")
    result = cli("check")
    assert result.exit_code == 0 and database_warnings(result) == []


def test_a_bad_configuration_is_exit_1_naming_the_key(tmp_path):
    from click.testing import CliRunner

    from statusmail.cli import main

    config = tmp_path / "bad.toml"
    config.write_text("[policy]\nmax_chars = -1\n")
    result = CliRunner().invoke(main, ["users", "list", "--config", str(config)])
    assert result.exit_code == 1 and "policy.max_chars" in result.stderr


def test_reprocess_runs_a_refused_message_again_after_the_policy_changed(tmp_path, sqlite_url, cli_for):
    from tests.conftest import write_config

    strict = write_config(tmp_path, sqlite_url)
    cli, _, _ = cli_for(strict)
    assert cli("inject", input=make_mail(sender="dana@partner.example").as_bytes()).exit_code == 1
    [entry] = json.loads(cli("log", "--json").stdout)
    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text(strict.read_text().replace('allowed_domains = ["corp.example"]',
                                                  'allowed_domains = ["corp.example", "partner.example"]'))
    cli_relaxed, _, _ = cli_for(relaxed)
    result = cli_relaxed("reprocess", str(entry["id"]))
    assert result.exit_code == 0 and result.stdout.startswith("accepted")
    [post] = json.loads(cli_relaxed("posts", "list", "--json").stdout)
    assert post["author"] == "dana@partner.example"
    assert cli_relaxed("reprocess", "999").exit_code == 1


def age_log_entry(settings, entry_id: int, days: int):
    """Make log entry ``entry_id`` ``days`` older than keep_raw_days; return the engine."""
    from datetime import timedelta

    from statusmail.store.db import make_engine, transaction
    from statusmail.store.models import InboundLog, utcnow

    engine = make_engine(settings.gateway.database_url)
    with transaction(engine) as session:
        entry = session.get(InboundLog, entry_id)
        entry.received_at = utcnow() - timedelta(days=settings.gateway.keep_raw_days + days)
        session.add(entry)
    return engine


def raw_of(engine, entry_id: int) -> bytes | None:
    from statusmail.store.db import transaction
    from statusmail.store.models import InboundLog

    with transaction(engine) as session:
        return session.get(InboundLog, entry_id).raw


def test_raw_messages_older_than_keep_raw_days_are_pruned(cli, settings):
    from statusmail.store.retention import prune_raw_messages

    inject(cli, make_mail(body="old", subject="status"))
    inject(cli, make_mail(body="new", subject="status"))
    engine = age_log_entry(settings, 1, days=1)
    assert prune_raw_messages(engine, settings.gateway.keep_raw_days) == 1
    assert raw_of(engine, 1) is None and raw_of(engine, 2) is not None
    engine.dispose()
    assert cli("reprocess", "1").exit_code == 1


def test_serve_prunes_old_raw_messages_when_it_starts(cli, settings):
    import time

    from tests.conftest import RunningGateway

    inject(cli, make_mail(body="ancient", subject="status"))
    engine = age_log_entry(settings, 1, days=5)
    running = RunningGateway(settings, engine)
    try:
        for _ in range(100):  # the housekeeping task runs at start, in the background
            if raw_of(engine, 1) is None:
                break
            time.sleep(0.05)
    finally:
        running.stop()
    assert raw_of(engine, 1) is None
    engine.dispose()


def test_check_reaches_an_smtp_relay_and_fails_when_none_answers(tmp_path, sqlite_url, cli_for):
    from aiosmtpd.controller import Controller

    from tests.conftest import write_config
    from tests.gateway.test_crash import free_port

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            return "250 OK"

    port = free_port()
    config = write_config(tmp_path, sqlite_url)
    config.write_text(config.read_text().replace(f'transport = "maildir:{tmp_path}/outbox"',
                                                 f'transport = "smtp://127.0.0.1:{port}"'))
    cli, _, _ = cli_for(config)
    cli("init")
    relay = Controller(Sink(), hostname="127.0.0.1", port=port)
    relay.start()
    try:
        result = cli("check")
    finally:
        relay.stop()
    assert result.exit_code == 0 and f"ok    relay: 127.0.0.1:{port} answers" in result.stdout
    result = cli("check")
    assert result.exit_code == 1 and f"FAIL  relay: 127.0.0.1:{port}" in result.stdout
