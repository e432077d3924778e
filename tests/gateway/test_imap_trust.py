"""The mailbox path as safe as SMTP (#21): the same checks, bounded work, nothing loops.

Against a real Dovecot on loopback, with the SMTP listener of the same gateway running
beside the poller, as ``serve`` runs them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from statusmail.store.models import InboundLog, Post
from tests.conftest import PG_URL, RunningGateway, make_mail, write_config
from tests.dovecot import PASSWORD, USER, Dovecot, find_dovecot
from tests.gateway.test_imap import log_entries, post_bodies, wait_until

SMALL_LIMIT = 400_000  # smtp.max_message_bytes in these tests


@pytest.fixture
def dovecot_acl() -> bool:
    return False


@pytest.fixture
def dovecot(dovecot_acl: bool) -> Iterator[Dovecot]:
    binary = find_dovecot()
    if binary is None:
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot(binary, acl=dovecot_acl)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def policy_extra() -> str:
    return ""


@pytest.fixture
def imap_host() -> str:
    return "127.0.0.1"


@pytest.fixture
def config_file(tmp_path: Path, database_url: str, dovecot: Dovecot, policy_extra: str, imap_host: str) -> Path:
    password_file = tmp_path / "imap.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)  # as an administrator keeps it: check warns otherwise
    return write_config(tmp_path, database_url, f"""{policy_extra}
[imap]
enabled = true
host = "{imap_host}"
port = {dovecot.port}
ssl = false
username = "{USER}"
password_file = "{password_file}"
poll_seconds = 3600
""", smtp=f"max_message_bytes = {SMALL_LIMIT}")


@pytest.fixture
def start_gateway(settings: Any, engine: Any) -> Iterator[Callable[..., RunningGateway]]:
    running: list[RunningGateway] = []

    def start(**kwargs: Any) -> RunningGateway:
        running.append(RunningGateway(kwargs.pop("settings", settings), engine, **kwargs))
        return running[-1]
    yield start
    for gateway in running:
        if gateway.thread.is_alive():
            gateway.stop()


def folder_ids(dovecot: Dovecot, configured: str) -> list[str]:
    return dovecot.message_ids(dovecot.folder(configured))


def raw_with_headers(headers: bytes, body: bytes = b"Shipped the export\r\n") -> bytes:
    return (b"From: Alice <alice@corp.example>\r\nTo: status@corp.example\r\nSubject: hostile\r\n"
            + headers + b"Message-ID: <hostile-" + str(abs(hash(headers))).encode() + b"@corp.example>\r\n\r\n" + body)


# --- the same checks as SMTP ---------------------------------------------------------------


@pytest.mark.dovecot
def test_a_spoofed_return_path_is_refused_over_imap_as_over_smtp(dovecot, start_gateway, engine):
    spoof = make_mail(sender="The CEO <ceo@corp.example>", subject="Wire the money", body="Today please")
    spoof["Return-Path"] = "<attacker@evil.test>"
    gateway = start_gateway()
    smtp_spoof = make_mail(sender="The CEO <ceo@corp.example>", subject="Wire the money")
    code, reply = gateway.send(smtp_spoof, mail_from="attacker@evil.test")
    assert (code, reply.split()[0]) == (550, "5.7.1")
    dovecot.append(spoof)
    assert wait_until(lambda: folder_ids(dovecot, "statusmail/failed") == [spoof["Message-ID"]]), dovecot.log()
    assert post_bodies(engine) == []
    imap_entry = next(e for e in log_entries(engine) if e.source == "imap")
    assert (imap_entry.outcome, imap_entry.reason) == ("refused", "not_authenticated")
    assert "envelope sender domain evil.test is not in the organization of corp.example" in imap_entry.detail


@pytest.mark.dovecot
def test_a_return_path_of_the_same_organization_posts_over_imap(dovecot, start_gateway, engine):
    mail = make_mail()
    mail["Return-Path"] = "<bounces+alice@mail.corp.example>"
    start_gateway()
    dovecot.append(mail)
    assert wait_until(lambda: folder_ids(dovecot, "statusmail/processed") == [mail["Message-ID"]]), dovecot.log()
    assert post_bodies(engine) == ["Billing export done\n\nShipped the billing export #billing"]


@pytest.mark.dovecot
def test_check_warns_when_the_mailbox_is_read_with_network_trust(dovecot, cli):
    cli("init")
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    assert 'warn  mailbox: imap.enabled with policy.sender_auth = "network"' in result.stdout


@pytest.mark.dovecot
@pytest.mark.parametrize("policy_extra", ['sender_auth = "authres"\nauthserv_id = "mx.corp.example"'])
def test_check_does_not_warn_when_the_mailbox_trusts_authentication_results(dovecot, cli):
    cli("init")
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    assert "warn  " not in result.stdout


# --- bounded work ----------------------------------------------------------------------------


@pytest.mark.dovecot
def test_a_message_over_the_size_limit_is_refused_on_its_size_and_never_fetched_or_stored(dovecot, start_gateway,
                                                                                         engine):
    big = make_mail(subject="Quarterly deck", body="x" * 70 + "\n")
    big.add_attachment(b"\0" * (SMALL_LIMIT * 3 // 2), maintype="application", subtype="octet-stream",
                       filename="deck.bin")
    small = make_mail(subject="Small one")
    dovecot.append(big)
    dovecot.append(small)
    start_gateway()
    assert wait_until(lambda: folder_ids(dovecot, "statusmail/failed") == [big["Message-ID"]]), dovecot.log()
    assert wait_until(lambda: folder_ids(dovecot, "statusmail/processed") == [small["Message-ID"]])
    refused = next(e for e in log_entries(engine) if e.outcome == "refused")
    assert refused.reason == "too_large" and refused.raw is None
    assert f"over smtp.max_message_bytes ({SMALL_LIMIT})" in refused.detail
    # BODY.PEEK[] of the big one was never asked for: Dovecot counts the bodies it sent.
    sent = sum(int(n) for n in __import__("re").findall(r"body_bytes=(\d+)", dovecot.log()))
    assert sent < SMALL_LIMIT
    with Session(engine) as session:
        assert session.exec(select(Post)).all()[0].body.startswith("Small one")


HOSTILE_FROM = b"From: " + b", ".join(b"u%d@corp.example" % i for i in range(5_000)) + b"\r\n"
FOLDED_FROM = b"From: alice@corp.example" + b"".join(b",\r\n u%d@corp.example" % i for i in range(10_000)) + b"\r\n"
MANY_LINES = b"".join(b"X-Line: %d\r\n" % i for i in range(20_000))


def folded(name: bytes, count: int, address: bytes = b"u%d@corp.example") -> bytes:
    """An address field over ``count`` short lines, as SMTP allows (RFC 5322 §2.2.3)."""
    return name + b": " + b",\r\n ".join(address % i for i in range(count)) + b"\r\n"


@pytest.mark.parametrize(("headers", "detail"), [
    (folded(b"From", 5_000), "header field 'From' over 65536 bytes"),
    (folded(b"From", 3_000), "more than 1000 addresses in From"),
    (folded(b"Cc", 1_500, b"u%d@c.e"), "more than 1000 addresses in Cc"),
    (MANY_LINES, "header section over 262144 bytes"),
    (b"".join(b"X-Line: %d\r\n" % i for i in range(600)), "more than 500 header fields"),
])
def test_hostile_headers_are_refused_554_over_smtp_before_parsing(start_gateway, engine, headers, detail):
    gateway = start_gateway()
    code, reply = gateway.send(raw_with_headers(headers))
    assert (code, reply) == (554, "5.6.0 Message cannot be parsed")
    [entry] = log_entries(engine)
    assert (entry.outcome, entry.reason) == ("refused", "unparseable") and detail in entry.detail


def nested_mime(depth: int) -> bytes:
    body = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    return (b"From: Alice <alice@corp.example>\r\nTo: status@corp.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
            b"Message-ID: <deep@corp.example>\r\n" + body + b"Content-Type: text/plain\r\n\r\nhello\r\n")


def test_a_message_the_email_parser_gives_up_on_is_refused_554_over_smtp(start_gateway, engine):
    gateway = start_gateway()
    code, reply = gateway.send(nested_mime(3000))  # RecursionError in the email package
    assert (code, reply) == (554, "5.6.0 Message cannot be parsed")
    [entry] = log_entries(engine)
    assert entry.reason == "unparseable"


@pytest.mark.dovecot
def test_an_unparseable_message_goes_to_the_failed_folder_at_once_with_one_log_row(dovecot, start_gateway, engine):
    dovecot.append(nested_mime(3000))
    after = make_mail(subject="After it")
    dovecot.append(after)
    start_gateway()
    assert wait_until(lambda: folder_ids(dovecot, "statusmail/failed") == ["<deep@corp.example>"]), dovecot.log()
    assert wait_until(lambda: folder_ids(dovecot, "statusmail/processed") == [after["Message-ID"]])
    assert [(e.outcome, e.reason) for e in log_entries(engine)] == [("refused", "unparseable"), ("accepted", "posted")]


@pytest.mark.dovecot
def test_hostile_headers_over_imap_go_to_the_failed_folder_while_smtp_posts_are_answered_250(
        dovecot, start_gateway, engine):
    hostile = [raw_with_headers(HOSTILE_FROM), raw_with_headers(FOLDED_FROM), raw_with_headers(MANY_LINES)]
    gateway = start_gateway(writer_process=True)
    replies: list[tuple[int, str]] = []

    def send_posts() -> None:
        for n in range(20):
            replies.append(gateway.send(make_mail(subject=f"SMTP post {n}",
                                                  sender=f"S{n} <smtp{n}@corp.example>")))
    sender = threading.Thread(target=send_posts)
    sender.start()
    for raw in hostile:
        dovecot.append(raw)
    sender.join(120)
    assert wait_until(lambda: len(folder_ids(dovecot, "statusmail/failed")) == 3, 60), dovecot.log()
    assert [code for code, _ in replies] == [250] * 20, replies
    imap_rows = [(e.outcome, e.reason) for e in log_entries(engine) if e.source == "imap"]
    assert imap_rows == [("refused", "unparseable")] * 3
    assert dovecot.message_ids("INBOX") == []


# --- nothing loops, nothing gets stuck -----------------------------------------------------


@pytest.mark.dovecot
@pytest.mark.parametrize("dovecot_acl", [True])
def test_a_read_only_inbox_posts_each_message_once_and_moves_them_when_it_allows(dovecot, start_gateway, engine,
                                                                               caplog):
    post, stranger = make_mail(subject="Posted once"), make_mail(sender="Eve <eve@elsewhere.example>")
    dovecot.append(post)
    dovecot.append(stranger)
    dovecot.read_only_inbox()  # MOVE answers NO [NOPERM]
    caplog.set_level(logging.WARNING, logger="statusmail.gateway.imap")
    start_gateway()
    assert wait_until(lambda: len(log_entries(engine)) == 2), dovecot.log()
    assert wait_until(lambda: sum("could not move" in r.getMessage() for r in caplog.records) >= 2)
    later = make_mail(subject="Behind them", sender="Bob <bob@corp.example>")
    dovecot.append(later)  # mail behind the stuck ones is not held up
    assert wait_until(lambda: len(post_bodies(engine)) == 2), dovecot.log()
    dovecot.read_only_inbox(False)
    assert wait_until(lambda: dovecot.message_ids("INBOX") == [], 60), dovecot.log()
    # Each went where its outcome said, the refused one to the failed folder, and none
    # was run through the pipeline a second time.
    assert folder_ids(dovecot, "statusmail/processed") == [post["Message-ID"], later["Message-ID"]]
    assert folder_ids(dovecot, "statusmail/failed") == [stranger["Message-ID"]]
    assert [e.reason for e in log_entries(engine)] == ["posted", "domain_not_allowed", "posted"]
    # A refused MOVE is not a reason to reconnect (it used to reconnect every second).
    assert not [r for r in caplog.records if "reconnecting" in r.getMessage()]


@pytest.mark.dovecot
def test_after_a_database_lock_timeout_the_mailbox_is_read_again_soon_not_at_the_next_idle(
        dovecot, start_gateway, engine, settings, caplog):
    if not settings.gateway.database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    start_gateway()
    first = make_mail(subject="First")
    dovecot.append(first)
    assert wait_until(lambda: post_bodies(engine))
    caplog.set_level(logging.ERROR, logger="statusmail.inbound.pipeline")
    path = settings.gateway.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        waiting = make_mail(subject="Waited for the lock")
        dovecot.append(waiting)
        assert wait_until(lambda: any("database unavailable" in r.getMessage() for r in caplog.records))
    finally:
        blocker.rollback()
        blocker.close()
    # No new mail arrives, so IDLE would not wake the poller for minutes.
    assert wait_until(lambda: len(post_bodies(engine)) == 2), dovecot.log()
    assert post_bodies(engine)[1].startswith("Waited for the lock")


# --- one reader on PostgreSQL --------------------------------------------------------------


def pg_settings(settings: Any, host: str) -> Any:
    import dataclasses

    return dataclasses.replace(settings, imap=dataclasses.replace(settings.imap, host=host))


@pytest.mark.dovecot
@pytest.mark.skipif(not PG_URL, reason="needs STATUSMAIL_TEST_DATABASE_URL (PostgreSQL)")
def test_the_leader_lock_is_one_per_mailbox_however_the_host_is_spelled_and_rechecked(
        dovecot, start_gateway, settings, engine, monkeypatch, caplog):
    if not settings.gateway.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL advisory locks")
    from sqlalchemy import text

    import statusmail.gateway.imap as imap

    monkeypatch.setattr(imap, "LEADER_RETRY_SECONDS", 1.0)
    monkeypatch.setattr(imap, "LEADER_CHECK_SECONDS", 0.5)
    caplog.set_level(logging.WARNING, logger="statusmail.gateway.imap")
    one = start_gateway(settings=pg_settings(settings, "127.0.0.1"))
    assert wait_until(lambda: one.gateway.poller.reading)
    two = start_gateway(settings=pg_settings(settings, "localhost"))
    dovecot.append(make_mail(subject="Read by the leader"))
    assert wait_until(lambda: post_bodies(engine))
    assert (one.gateway.poller.reading, two.gateway.poller.reading) == (True, False)
    # The leader's lock connection is terminated: it must notice and stop reading, and
    # the other process takes over; never both at once.
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_locks"
                                " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"))
        connection.commit()
    assert wait_until(lambda: any("lost the leader lock" in r.getMessage() for r in caplog.records)), dovecot.log()
    assert wait_until(lambda: one.gateway.poller.reading != two.gateway.poller.reading)
    mails = [make_mail(subject=f"After the switch {n}", sender=f"U{n} <u{n}@corp.example>") for n in range(30)]
    for mail in mails:
        dovecot.append(mail)
    both: list[bool] = []

    def all_moved() -> bool:
        both.append(one.gateway.poller.reading and two.gateway.poller.reading)
        return len(folder_ids(dovecot, "statusmail/processed")) == 31
    assert wait_until(all_moved, 60), dovecot.log()
    assert not any(both)
    assert len(post_bodies(engine)) == 31
    with Session(engine) as session:
        assert len(session.exec(select(InboundLog)).all()) == 31
