"""Running the gateway: ``init``, ``serve``, ``check``, ``inject``, ``reprocess`` and
``hash-password`` (SPEC §6)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from statusmail.cli.app import (
    ROW_ID,
    App,
    config_option,
    json_option,
    main,
    pass_app,
)
from statusmail.cli.output import emit
from statusmail.config import Settings
from statusmail.errors import ListenError, StoreUnavailable
from statusmail.logs import redact
from statusmail.store.db import (
    create_private_sqlite,
    current_revision,
    describe_db_error,
    make_engine,
    upgrade,
)
from statusmail.store.models import InboundLog


@main.command()
@config_option
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database and the secret key file; idempotent."""
    settings = app.settings
    key_file = Path(settings.gateway.secret_key_file)
    if not key_file.exists():
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before the secret is written: never readable by others, not even briefly.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    # The database file exists, 0600, before SQLite opens it: its -wal and -shm files
    # take the same permissions (SPEC §2: files the gateway creates are the owner's only).
    create_private_sqlite(settings.gateway.database_url)
    engine = make_engine(settings.gateway.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    except OperationalError as exc:  # a server that does not answer: one line (SPEC §6)
        raise StoreUnavailable(describe_db_error(exc)) from exc
    finally:
        engine.dispose()
    state = "created" if before is None else ("upgraded" if before != after else "up to date")
    click.echo(f"database {state} at revision {after}")


@main.command()
@config_option
@pass_app
def serve(app: App) -> None:
    """Run the listener, the outbox worker and the digest scheduler until SIGTERM/SIGINT."""
    from statusmail.gateway.serve import serve_forever

    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    settings = app.settings
    upgrade(app.engine)  # a long-running process may follow a code upgrade: bring the schema along
    try:
        asyncio.run(serve_forever(settings, app.engine, ready_message=first_update_hint(settings)))
    except ListenError as exc:
        raise click.ClickException(str(exc)) from None


def first_update_hint(settings: Settings) -> str:
    """The start-up line: where the listener is and a command that posts a first update
    through it, in the protocol it speaks (smtplib.LMTP sends LHLO, as RFC 2033 asks)."""
    client = "LMTP" if settings.smtp.lmtp else "SMTP"
    return (f"statusmail listening on {settings.smtp.host}:{{port}}; post a first update: "
            f"python3 -c \"import smtplib; smtplib.{client}('{settings.smtp.host}', {{port}}).sendmail("
            f"'you@{settings.domain}', '{settings.gateway.address}', "
            f"'From: you@{settings.domain}\\nSubject: Hello #team\\n\\nMy first update')\"")


@main.command()
@config_option
@pass_app
def check(app: App) -> None:
    """Validate the configuration; reach the database and the relay."""
    from statusmail.gateway.checks import config_warnings, run_checks

    failures = 0
    results = run_checks(app.settings)
    for name, ok, detail in results:
        failures += not ok
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    for warning in config_warnings(app.settings):
        click.echo(f"warn  {warning}")
    if failures:
        raise click.ClickException(f"{failures} check(s) failed")


def report_outcome(outcome: Any, as_json: bool) -> None:
    """Print a pipeline outcome; exit 1 unless the message was accepted or held (SPEC §6)."""
    if as_json:
        emit({"outcome": outcome.status, "reason": outcome.reason.name.lower(), "detail": redact(outcome.detail),
              "post_id": outcome.post_id, "log_id": outcome.log_id}, True)
    else:
        detail = f" ({redact(outcome.detail)})" if outcome.detail and outcome.detail != outcome.reason.value else ""
        click.echo(f"{outcome.status}: {outcome.reason.value}{detail}"
                   + (f", post {outcome.post_id}" if outcome.post_id else ""))
    if not outcome.accepted:
        sys.exit(1)


@main.command()
@config_option
@click.argument("file", type=click.File("rb"), default="-")
@click.option("--from", "mail_from", default="", metavar="ADDRESS",
              help="Envelope sender, checked against the From domain (default: the Return-Path header, if any). e.g. --from alice@corp.example")
@click.option("--to", "rcpt_to", multiple=True, metavar="ADDRESS",
              help="Envelope recipient, repeatable (default: the To/Cc headers), e.g. --to status@corp.example")
@json_option
@pass_app
def inject(app: App, file: Any, mail_from: str, rcpt_to: tuple[str, ...], as_json: bool) -> None:
    """Run one RFC 5322 message (stdin if no FILE) through the inbound pipeline."""
    from statusmail.inbound.envelope import Envelope
    from statusmail.inbound.pipeline import run

    raw = file.read()
    # Without --from the pipeline reads the envelope sender from Return-Path.
    outcome = run(raw, Envelope(mail_from=mail_from, rcpt_tos=rcpt_to, source="inject"), app.settings, app.engine)
    report_outcome(outcome, as_json)


@main.command()
@config_option
@click.argument("log_id", type=ROW_ID)
@json_option
@pass_app
def reprocess(app: App, log_id: int, as_json: bool) -> None:
    """Run a logged raw message through the pipeline again (after a fix, say)."""
    from statusmail.inbound.envelope import Envelope
    from statusmail.inbound.pipeline import run

    with app.session() as session:
        entry = session.get(InboundLog, log_id)
        if entry is None:
            raise click.ClickException(f"no such log entry: {log_id}")
        if entry.raw is None:
            raise click.ClickException(f"log entry {log_id} has no raw message (refused before DATA, a refusal over 256 KiB, or pruned)")
        raw, sender = entry.raw, entry.sender
        recipients = tuple(r.strip() for r in entry.recipients.split(",") if r.strip())
    outcome = run(raw, Envelope(mail_from=sender, rcpt_tos=recipients, source="reprocess"), app.settings, app.engine)
    report_outcome(outcome, as_json)


@main.command("hash-password")
@click.option("--user", required=True, metavar="NAME", help="The SMTP AUTH login name, e.g. --user postfix")
@click.password_option(help="Read from a prompt (or stdin) when not given; a prompt keeps it out of the shell "
                            "history.")
def hash_password_command(user: str, password: str) -> None:
    """Print a user:hash line for smtp.auth_file."""
    from statusmail.gateway.smtpauth import hash_password

    if ":" in user:
        raise click.BadParameter("a login name cannot contain ':'", param_hint="--user")
    click.echo(f"{user}:{hash_password(password)}")
