"""``statusmail digest preview|send`` through the real command group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from statusmail.store.models import Digest, Outbox, ReplyToken, User
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


def test_preview_shows_the_readers_reply_address_form_and_never_a_token(cli, engine):
    lea, carol = lea_follows_carol(engine)
    first = add_post(engine, carol, "Update with a token", an_hour_ago())
    add_post(engine, carol, "Update without one", an_hour_ago())
    secret = "abcdefghijklmnopqrstuvwxyz234567"
    with Session(engine) as session:
        session.add(ReplyToken(token=secret, user_id=lea, post_id=first))
        session.commit()
    for args in ((), ("--html",)):
        result = cli("digest", "preview", "lea@corp.example", *args)
        assert result.exit_code == 0
        assert result.output.count("status+[redacted]@corp.example") >= 2, args
        assert secret not in result.output and "status+preview@" not in result.output, args


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


def recorded(engine, email: str) -> tuple[str, str]:
    """The period of the reader's digest row and when it was recorded, as printed."""
    with Session(engine) as session:
        user = session.exec(select(User).where(User.email == email)).one()
        row = session.exec(select(Digest).where(Digest.user_id == user.id)).one()
    return row.period, f"{row.created_at:%Y-%m-%d %H:%M} UTC"


def test_send_now_queues_each_digest_once_and_says_why_each_reader_was_left_out(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Update one", an_hour_ago())
    first = cli("digest", "send", "--now")
    assert (first.exit_code, first.output) == (0, "carol@corp.example  left out: nothing new\n"
                                                  "1 digest(s) queued, 1 with nothing new\n")
    again = cli("digest", "send", "--now")
    (lea_period, lea_at), (carol_period, carol_at) = recorded(engine, "lea@corp.example"), \
        recorded(engine, "carol@corp.example")
    assert (again.exit_code, again.output.splitlines()) == (0, [
        f"lea@corp.example  left out: already sent for {lea_period} (1 update, {lea_at})",
        f"carol@corp.example  left out: already done for {carol_period}: there was nothing new at {carol_at}; "
        "the next digest covers what came since",
        "0 digest(s) queued, 0 with nothing new, 2 already done for this period"])
    assert digests_and_mail(engine) == (2, 1)


def test_send_for_one_user_whose_period_was_recorded_empty_says_so(cli, engine):
    """The issue's case: the period's digest was recorded empty (at import time, say);
    a post since then does not make `--now` send a second digest, and it says why."""
    _, carol = lea_follows_carol(engine)
    assert cli("digest", "send", "--now", "--user", "lea@corp.example").output.splitlines()[0] == \
        "lea@corp.example  left out: nothing new"
    add_post(engine, carol, "Update after the empty digest", datetime.now(UTC))
    result = cli("digest", "send", "--now", "--user", "lea@corp.example")
    period, at = recorded(engine, "lea@corp.example")
    assert (result.exit_code, result.output) == (0, (
        f"lea@corp.example  left out: already done for {period}: there was nothing new at {at}; "
        "the next digest covers what came since\n"
        "0 digest(s) queued, 0 with nothing new, 1 already done for this period\n"))


def zone_where_it_is_3_am() -> str:
    """An Etc/GMT zone whose local hour is 3 now: well before the digest hour (8)."""
    offset = datetime.now(UTC).hour - 3  # local = UTC - offset for Etc/GMT+offset
    offset = offset - 24 if offset > 12 else offset
    return f"Etc/GMT{offset:+d}" if offset else "Etc/GMT"


def test_dry_run_says_why_each_reader_is_left_out(cli, engine):
    lea, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Update one", an_hour_ago())
    add_user(engine, "olga@corp.example", "Olga Off", digest="off")
    add_user(engine, "bo@corp.example", "Bo Bounced", mail_suspended=True)
    add_user(engine, "ben@corp.example", "Ben Banned", banned=True)
    zone = zone_where_it_is_3_am()
    add_user(engine, "nora@corp.example", "Nora Night", timezone=zone)
    result = cli("digest", "send", "--dry-run")
    lines = result.output.splitlines()
    assert result.exit_code == 0
    assert "olga@corp.example  left out: digest turned off" in lines
    assert "bo@corp.example  left out: banned, or mail to them suspended after hard bounces" in lines
    assert "ben@corp.example  left out: banned, or mail to them suspended after hard bounces" in lines
    assert f"nora@corp.example  left out: not due yet: daily digest at 08:00 {zone}" in lines
    forced = cli("digest", "send", "--dry-run", "--now").output.splitlines()
    assert "olga@corp.example  left out: digest turned off" in forced
    assert not any(line.startswith("nora@corp.example  left out") for line in forced)
    assert digests_and_mail(engine) == (0, 0)


def test_send_for_one_user_touches_only_that_user(cli, engine):
    _, carol = lea_follows_carol(engine)
    add_post(engine, carol, "Update one", an_hour_ago())
    result = cli("digest", "send", "--now", "--user", "LEA@corp.example")
    assert (result.exit_code, result.output) == (0, "1 digest(s) queued, 0 with nothing new\n")  # carol untouched
    with Session(engine) as session:
        [row] = session.exec(select(Outbox)).all()
    assert (row.to_addr, row.kind, row.subject) == ("lea@corp.example", "digest", "Your Status digest: 1 update")


def test_send_for_an_unknown_user_fails(cli, engine):
    result = cli("digest", "send", "--user", "nobody@corp.example")
    assert result.exit_code == 1 and "no such user" in result.output
