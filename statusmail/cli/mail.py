"""``statusmail log`` (every inbound message and its outcome) and ``statusmail outbox``
(mail statusmail sent or will send), SPEC §6."""

from __future__ import annotations

from typing import Any

import click
from sqlmodel import col, select

from statusmail.cli.app import (
    LIMIT,
    ROW_ID,
    App,
    config_option,
    json_option,
    main,
    pass_app,
)
from statusmail.cli.output import emit
from statusmail.logs import redact
from statusmail.store.models import InboundLog, Outbox
from statusmail.store.posts import iso

LOG_COLUMNS = ("id", "received_at", "outcome", "sender", "reason", "post_id", "message_id")


def log_json(entry: InboundLog) -> dict[str, Any]:
    reason = entry.reason if not entry.detail or entry.detail == entry.reason else f"{entry.reason}: {entry.detail}"
    return {"id": entry.id, "received_at": iso(entry.received_at), "message_id": entry.message_id or None,
            "sender": redact(entry.sender), "outcome": entry.outcome, "reason": redact(reason),
            "post_id": entry.post_id, "source": entry.source, "recipients": redact(entry.recipients)}


@main.command("log")
@config_option
@click.option("--outcome", type=click.Choice(("accepted", "held", "refused")),
              help="Only messages with this outcome (default: all), e.g. --outcome refused")
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many entries, e.g. --limit 20")
@json_option
@pass_app
def log_command(app: App, outcome: str | None, limit: int, as_json: bool) -> None:
    """Every inbound message and refusal, newest first."""
    with app.session() as session:
        query = select(InboundLog)
        if outcome:
            query = query.where(InboundLog.outcome == outcome)
        # A message without a Message-ID has the one its post got in its row (record.py).
        rows = [log_json(e) for e in session.exec(query.order_by(col(InboundLog.id).desc()).limit(limit))]
    emit(rows, as_json, LOG_COLUMNS)


OUTBOX_COLUMNS = ("id", "created_at", "kind", "status", "attempts", "to", "subject", "last_error")


def outbox_json(row: Outbox) -> dict[str, Any]:
    return {"id": row.id, "to": row.to_addr, "subject": row.subject, "kind": row.kind, "status": row.status,
            "attempts": row.attempts, "created_at": iso(row.created_at), "sent_at": iso(row.sent_at),
            "last_error": redact(row.last_error)}


@main.group()
def outbox() -> None:
    """Mail waiting to go out, sent, or failed."""


@outbox.command("list")
@config_option
@click.option("--status", type=click.Choice(("queued", "sent", "failed")),
              help="Only mail with this status (default: all), e.g. --status failed")
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many mails, e.g. --limit 20")
@json_option
@pass_app
def outbox_list(app: App, status: str | None, limit: int, as_json: bool) -> None:
    """Outbound mail, newest first."""
    with app.session() as session:
        query = select(Outbox)
        if status:
            query = query.where(Outbox.status == status)
        rows = [outbox_json(r) for r in session.exec(query.order_by(col(Outbox.id).desc()).limit(limit))]
    emit(rows, as_json, OUTBOX_COLUMNS)


@outbox.command("retry")
@config_option
@click.argument("outbox_id", type=ROW_ID, required=False)
@click.option("--all", "retry_all", is_flag=True, help="Every unsent mail (the same as giving no ID), e.g. "
                                                        "statusmail outbox retry --all")
@pass_app
def outbox_retry(app: App, outbox_id: int | None, retry_all: bool) -> None:
    """Make the given, or every (--all, or no ID), unsent mail due now."""
    from statusmail.outbound.outbox import retry

    if outbox_id is not None and retry_all:
        raise click.UsageError("give an ID or --all, not both")
    with app.session() as session:
        if outbox_id is not None:
            row = session.get(Outbox, outbox_id)
            if row is None:
                raise click.ClickException(f"no such outbox entry: {outbox_id}")
            if row.status == "sent":
                # SPEC §6: no unsent mail to retry is exit 0, and says so.
                click.echo(f"outbox entry {outbox_id} was already sent; nothing changed")
                return
        count = retry(session, outbox_id)
    click.echo(f"{count} mail(s) due now")
