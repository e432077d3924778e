"""``statusmail digest preview|send`` through the real command group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from statusmail.store.models import Digest, Outbox
from tests.outbound.test_digest import add_follow, add_post, add_user


def lea_follows_carol(engine) -> tuple[int, int]:
    lea = add_user(engine, "lea@corp.example", "Lea Leader")
    carol = add_user(engine, "carol@corp.example", "Carol Coder")
    add_follow(engine, lea, target=carol)
    return lea, carol


def digests_and_mail(engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (len(session.exec(select(Digest)).all()),
                len(session.exec(select(Outbox).where(Outbox.kind == "digest")).all()))


def an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def test_preview_prints_the_text_digest_and_changes_nothing(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Shipped the <new> search", an_hour_ago())
    result = cli("digest", "preview", "lea@corp.example")
    assert result.exit_code == 0
    assert "Subject: Your Status digest: 1 update" in result.output
    assert "Carol Coder - " in result.output and "Shipped the <new> search" in result.output
    assert digests_and_mail(engine) == (0, 0)


def test_preview_html_prints_the_escaped_html_part(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Shipped the <new> search", an_hour_ago())
    result = cli("digest", "preview", "lea@corp.example", "--html")
    assert result.exit_code == 0
    assert "<table" in result.output and "Shipped the &lt;new&gt; search" in result.output


def test_preview_says_nothing_new_when_there_is_nothing(cli, engine):
    lea_follows_carol(engine)
    result = cli("digest", "preview", "lea@corp.example")
    assert (result.exit_code, result.output) == (0, "nothing new\n")


def test_preview_of_an_unknown_user_fails_with_one_line(cli, engine):
    result = cli("digest", "preview", "nobody@corp.example")
    assert result.exit_code == 1
    assert result.output == "Error: no such user: nobody@corp.example\n"


def test_send_dry_run_reports_who_would_get_what_and_changes_nothing(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Update one", an_hour_ago())
    add_post(engine, carol, "Update two", an_hour_ago())
    result = cli("digest", "send", "--now", "--dry-run")
    assert result.exit_code == 0
    assert "lea@corp.example" in result.output and "2 updates" in result.output
    assert "carol@corp.example" in result.output and "nothing new" in result.output
    assert result.output.splitlines()[-1] == "dry run: 1 would get a digest, 1 with nothing new; nothing changed"
    assert digests_and_mail(engine) == (0, 0)


def test_send_now_queues_each_digest_once_and_prints_a_summary(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Update one", an_hour_ago())
    first = cli("digest", "send", "--now")
    assert (first.exit_code, first.output) == (0, "1 digest(s) queued, 1 with nothing new\n")
    again = cli("digest", "send", "--now")
    assert (again.exit_code, again.output) == (0, "0 digest(s) queued, 0 with nothing new\n")
    assert digests_and_mail(engine) == (2, 1)


def test_send_for_one_user_touches_only_that_user(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Update one", an_hour_ago())
    result = cli("digest", "send", "--now", "--user", "LEA@corp.example")
    assert (result.exit_code, result.output) == (0, "1 digest(s) queued, 0 with nothing new\n")
    with Session(engine) as session:
        [row] = session.exec(select(Outbox)).all()
    assert (row.to_addr, row.kind, row.subject) == ("lea@corp.example", "digest", "Your Status digest: 1 update")


def test_send_for_an_unknown_user_fails(cli, engine):
    result = cli("digest", "send", "--user", "nobody@corp.example")
    assert result.exit_code == 1 and "no such user" in result.output
