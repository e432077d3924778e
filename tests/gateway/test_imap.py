"""Reading a mailbox over IMAP (SPEC §2 [imap]): against a real Dovecot on loopback,
started by the tests, and the response parsing on captured server output."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from statusmail.gateway.imapwire import mailbox_name, parse_delimiter, parse_fetch, parse_search, parse_uidvalidity
from statusmail.store.models import ImapState, InboundLog, Outbox, Post
from tests.conftest import RunningGateway, make_mail, write_config
from tests.dovecot import PASSWORD, USER, Dovecot, find_dovecot

WAIT_SECONDS = 30.0


def wait_until(condition: Callable[[], Any], seconds: float = WAIT_SECONDS) -> Any:
    """Poll ``condition`` until it is truthy or time is up; return its last value."""
    deadline = time.monotonic() + seconds
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = condition()
    return value


def post_bodies(engine: Any) -> list[str]:
    with Session(engine) as session:
        return [p.body for p in session.exec(select(Post).order_by(Post.id))]


def log_entries(engine: Any) -> list[InboundLog]:
    with Session(engine) as session:
        return list(session.exec(select(InboundLog).order_by(InboundLog.id)))


# --- against Dovecot ---------------------------------------------------------------------


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    binary = find_dovecot()
    if binary is None:
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot(binary)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def imap_extra() -> str:
    """More [imap] keys; a test parametrizes this to change them."""
    return "poll_seconds = 3600"  # so only IDLE can notice new mail within a test's patience


@pytest.fixture
def policy_extra() -> str:
    """More [policy] keys; a test parametrizes this to change them."""
    return ""


@pytest.fixture
def config_file(tmp_path: Path, database_url: str, dovecot: Dovecot, imap_extra: str, policy_extra: str) -> Path:
    password_file = tmp_path / "imap.password"
    password_file.write_text(PASSWORD + "\n")
    return write_config(tmp_path, database_url, f"""{policy_extra}
[imap]
enabled = true
host = "127.0.0.1"
port = {dovecot.port}
ssl = false
username = "{USER}"
password_file = "{password_file}"
{imap_extra}
""")


@pytest.fixture
def start_gateway(settings: Any, engine: Any) -> Iterator[Callable[[], RunningGateway]]:
    """Start `serve`'s Gateway (SMTP plus the IMAP poller); every one started is stopped."""
    running: list[RunningGateway] = []

    def start() -> RunningGateway:
        running.append(RunningGateway(settings, engine))
        return running[-1]
    yield start
    for gateway in running:
        if gateway.thread.is_alive():
            gateway.stop()


@pytest.mark.dovecot
def test_messages_waiting_before_start_are_posted_and_moved_to_the_processed_folder(dovecot, start_gateway, engine):
    first, second = make_mail(subject="Billing export done"), make_mail(subject="Search is faster", body="by 30%")
    dovecot.append(first)
    dovecot.append(second)
    start_gateway()
    processed = dovecot.folder("statusmail/processed")
    assert wait_until(lambda: len(dovecot.message_ids(processed)) == 2), dovecot.log()
    assert dovecot.message_ids(processed) == [first["Message-ID"], second["Message-ID"]]
    assert dovecot.message_ids("INBOX") == []
    assert post_bodies(engine) == ["Billing export done\n\nShipped the billing export #billing",
                                   "Search is faster\n\nby 30%"]
    assert {(e.source, e.outcome, e.peer) for e in log_entries(engine)} == {("imap", "accepted", "127.0.0.1")}


@pytest.mark.dovecot
def test_a_message_arriving_while_the_poller_idles_is_posted_within_seconds(dovecot, start_gateway, engine):
    dovecot.append(make_mail(subject="First"))
    start_gateway()
    assert wait_until(lambda: len(post_bodies(engine)) == 1)
    dovecot.append(make_mail(subject="Second, pushed by IDLE"))  # poll_seconds is an hour: only IDLE sees it
    assert wait_until(lambda: len(post_bodies(engine)) == 2), dovecot.log()
    assert post_bodies(engine)[1].startswith("Second, pushed by IDLE")


@pytest.mark.dovecot
@pytest.mark.parametrize("imap_extra", ["idle = false\npoll_seconds = 1"])
def test_without_idle_the_folder_is_polled_every_poll_seconds(dovecot, start_gateway, engine):
    start_gateway()
    time.sleep(0.5)
    dovecot.append(make_mail(subject="Polled"))
    assert wait_until(lambda: post_bodies(engine)), dovecot.log()
    assert post_bodies(engine)[0].startswith("Polled")


@pytest.mark.dovecot
def test_a_refused_message_lands_in_the_failed_folder_logged_and_never_answered(dovecot, start_gateway, engine):
    stranger = make_mail(sender="Eve <eve@elsewhere.example>", subject="Buy now")
    dovecot.append(stranger)
    start_gateway()
    failed = dovecot.folder("statusmail/failed")
    assert wait_until(lambda: dovecot.message_ids(failed)), dovecot.log()
    assert dovecot.message_ids(failed) == [stranger["Message-ID"]]
    assert dovecot.message_ids("INBOX") == [] and dovecot.message_ids(dovecot.folder("statusmail/processed")) == []
    [entry] = log_entries(engine)
    assert (entry.outcome, entry.reason, entry.source, entry.sender) == (
        "refused", "domain_not_allowed", "imap", "eve@elsewhere.example")
    assert post_bodies(engine) == []
    with Session(engine) as session:
        assert session.exec(select(Outbox)).all() == []


@pytest.mark.dovecot
@pytest.mark.parametrize("policy_extra", ["hold_new_users = true"])
def test_a_held_message_waits_for_a_moderator_and_is_moved_to_the_processed_folder(dovecot, start_gateway, engine):
    held = make_mail(subject="My first update")
    dovecot.append(held)
    start_gateway()
    processed = dovecot.folder("statusmail/processed")
    assert wait_until(lambda: dovecot.message_ids(processed)), dovecot.log()
    assert dovecot.message_ids(processed) == [held["Message-ID"]]
    [entry] = log_entries(engine)
    assert (entry.outcome, entry.source) == ("held", "imap")
    with Session(engine) as session:
        assert [p.status for p in session.exec(select(Post))] == ["held"]


@pytest.mark.dovecot
@pytest.mark.parametrize("policy_extra", ["posts_per_hour = 1"])
def test_a_deferred_message_waits_in_the_folder_until_its_limit_lifts_with_one_log_row(dovecot, start_gateway, engine):
    first_post, over_limit = make_mail(subject="One"), make_mail(subject="Two")
    dovecot.append(first_post)
    dovecot.append(over_limit)
    start_gateway()
    assert wait_until(lambda: any(e.reason == "rate_limited" for e in log_entries(engine))), dovecot.log()
    # Every new message starts a round; the deferred one is not run again in any of them
    # (it used to be, logging a refused row with its raw bytes each time).
    others = [make_mail(sender=f"User {n} <user{n}@corp.example>", subject=f"Other {n}") for n in range(4)]
    for other in others:
        dovecot.append(other)
        assert wait_until(lambda other=other: other["Message-ID"] in dovecot.message_ids(
            dovecot.folder("statusmail/processed"))), dovecot.log()
    assert dovecot.message_ids("INBOX") == [over_limit["Message-ID"]]
    assert dovecot.message_ids(dovecot.folder("statusmail/failed")) == []
    [deferred] = [e for e in log_entries(engine) if e.reason == "rate_limited"]
    with Session(engine) as session:
        [one] = session.exec(select(Post).where(Post.body.startswith("One"))).all()  # type: ignore[attr-defined]
    lifts = (one.created_at.replace(tzinfo=None) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert f"the limit lifts at {lifts} UTC" in deferred.detail
    assert len(log_entries(engine)) == 1 + 1 + len(others)


@pytest.mark.dovecot
def test_the_poller_reconnects_after_dovecot_restarts_and_reads_new_mail(dovecot, start_gateway, engine):
    dovecot.append(make_mail(subject="Before the restart"))
    start_gateway()
    assert wait_until(lambda: len(post_bodies(engine)) == 1)
    dovecot.stop()  # the poller, idling, is told BYE or just loses the connection
    time.sleep(1.5)
    dovecot.start()
    dovecot.append(make_mail(subject="After the restart"))
    assert wait_until(lambda: len(post_bodies(engine)) == 2, 60), dovecot.log()
    assert post_bodies(engine)[1].startswith("After the restart")


@pytest.mark.dovecot
def test_a_restarted_poller_moves_what_a_crash_left_after_the_commit_without_posting_it_twice(
        dovecot, start_gateway, settings, engine):
    from statusmail.gateway.imap import ImapPoller

    one = make_mail(subject="One")
    dovecot.append(one)
    gateway = start_gateway()
    assert wait_until(lambda: len(post_bodies(engine)) == 1)
    gateway.stop()
    key = ImapPoller(settings, engine).state_key
    # A crash between the batch's commit (which saved the last UID) and its move: the
    # message is still in the folder at a UID the state says was handled.
    dovecot.append(one)  # UID 2
    with Session(engine) as session:
        state = session.get(ImapState, key)
        assert state is not None and state.last_uid == 1 and state.uidvalidity > 0
        state.last_uid = 2
        session.add(state)
        session.commit()
    new = make_mail(subject="Two")
    dovecot.append(new)  # UID 3
    start_gateway()
    assert wait_until(lambda: len(post_bodies(engine)) == 2 and dovecot.message_ids("INBOX") == []), dovecot.log()
    assert [b.split("\n")[0] for b in post_bodies(engine)] == ["One", "Two"]
    assert dovecot.message_ids(dovecot.folder("statusmail/processed")) == [one["Message-ID"]] * 2 + [new["Message-ID"]]
    assert [e.reason for e in log_entries(engine)] == ["posted", "duplicate", "posted"]


@pytest.mark.dovecot
def test_a_uidvalidity_change_rescans_the_folder_without_doubling_posts(dovecot, start_gateway, engine):
    one, two = make_mail(subject="One"), make_mail(subject="Two")
    dovecot.append(one)
    dovecot.append(two)
    gateway = start_gateway()
    assert wait_until(lambda: len(post_bodies(engine)) == 2)
    gateway.stop()
    # The mailbox is restored from a backup: "One" is back, with a new message, and the
    # server numbers the folder afresh, so both now sit at UIDs the poller has seen.
    three = make_mail(subject="Three")
    dovecot.append(one)
    dovecot.append(three)
    dovecot.renumber_inbox()
    start_gateway()
    assert wait_until(lambda: len(post_bodies(engine)) == 3), dovecot.log()
    assert wait_until(lambda: dovecot.message_ids("INBOX") == [])
    assert [b.split("\n")[0] for b in post_bodies(engine)] == ["One", "Two", "Three"]
    assert dovecot.message_ids(dovecot.folder("statusmail/processed")).count(one["Message-ID"]) == 2


@pytest.mark.dovecot
def test_statusmail_check_reports_the_mailbox_reachable(dovecot, cli):
    dovecot.append(make_mail())
    cli("init")
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    assert f"ok    mailbox: 127.0.0.1:{dovecot.port} INBOX: 1 message(s) waiting" in result.stdout


@pytest.mark.dovecot
def test_statusmail_check_fails_on_a_wrong_password_without_printing_it(dovecot, cli, tmp_path):
    (tmp_path / "imap.password").write_text("not-the-password\n")
    cli("init")
    result = cli("check")
    assert result.exit_code == 1
    assert "FAIL  mailbox" in result.stdout and "not-the-password" not in result.stdout + result.stderr


# --- without a server ----------------------------------------------------------------------

DOVECOT_FETCH = [b"1 FETCH (UID 7 BODY[] {43}", bytearray(b"From: a@corp.example\r\nSubject: hi\r\n\r\nbody\r\n"),
                 b")", b"Fetch completed (0.001 + 0.000 secs)."]


def test_fetch_parsing_takes_the_literal_after_the_body_line_as_bytes():
    assert parse_fetch(DOVECOT_FETCH) == {7: b"From: a@corp.example\r\nSubject: hi\r\n\r\nbody\r\n"}
    assert type(parse_fetch(DOVECOT_FETCH)[7]) is bytes


def test_fetch_parsing_finds_a_uid_sent_after_the_body_and_skips_flag_updates():
    lines = [b"3 FETCH (FLAGS (\\Seen))",
             b"1 FETCH (BODY[] {5}", bytearray(b"hello"), b" UID 41)",
             b"2 FETCH (FLAGS () UID 42 BODY[] {0}", bytearray(b""), b")",
             b"4 FETCH (UID 44 BODY[] NIL)",
             b"Fetch completed."]
    assert parse_fetch(lines) == {41: b"hello", 42: b""}


def test_fetch_parsing_of_a_vanished_message_is_empty():
    assert parse_fetch([b"Fetch completed (0.001 + 0.000 secs)."]) == {}


def test_search_parsing_reads_uids_and_ignores_the_completion_text():
    assert parse_search([b"3 4 10", b"Search completed (0.001 + 0.000 secs)."]) == [3, 4, 10]
    assert parse_search([b"", b"Search completed (0.001 + 0.000 secs)."]) == []


def test_select_parsing_finds_uidvalidity():
    lines = [b"FLAGS (\\Seen)", b"1 EXISTS", b"OK [UIDVALIDITY 1795655736] UIDs valid", b"[READ-WRITE] Select completed."]
    assert parse_uidvalidity(lines) == 1795655736


def test_configured_folder_names_use_the_servers_delimiter_and_modified_utf7():
    assert parse_delimiter([b'(\\Noselect) "." ""', b"List completed."]) == "."
    assert parse_delimiter([b'(\\Noselect) "/" ""']) == "/"
    assert parse_delimiter([b'(\\Noselect) "\\\\" ""']) == "\\"
    assert parse_delimiter([b'(\\Noselect) NIL ""']) is None
    assert mailbox_name("statusmail/processed", ".") == '"statusmail.processed"'
    assert mailbox_name("statusmail/processed", None) == '"statusmail/processed"'
    assert mailbox_name("Status/Entwürfe & Co", "/") == '"Status/Entw&APw-rfe &- Co"'
