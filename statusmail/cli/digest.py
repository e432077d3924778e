"""``statusmail digest preview|send`` (SPEC §6): look at a reader's digest, or send
digests now instead of waiting for the scheduler in ``serve``.

``send`` queues mail in the outbox (the running ``serve`` delivers it), exactly as the
scheduler does, so a manual run and the scheduler can never both send one period.
Registered on the main group when :mod:`statusmail.cli` imports it.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from statusmail.cli.app import (
    App,
    config_option,
    main,
    pass_app,
    require_user,
)
from statusmail.gil import digest_process
from statusmail.logs import redact
from statusmail.outbound.digest import SendReport, preview, send_digests


@main.group()
def digest() -> None:
    """Personalized digests."""


@digest.command("preview")
@config_option
@click.argument("email")
@click.option("--html", "as_html", is_flag=True,
              help="Print the HTML part instead of the text, e.g. statusmail digest preview EMAIL --html > d.html")
@pass_app
def digest_preview(app: App, email: str, as_html: bool) -> None:
    """Print the digest EMAIL would get now; changes nothing."""
    with app.session() as session:
        user_id = require_user(session, email).id
    result = preview(app.settings, app.engine, user_id)  # type: ignore[arg-type]
    if result.message is None:
        click.echo(result.reason)
        return
    msg = result.message
    part = msg.get_body(("html",) if as_html else ("plain",))
    # Reply tokens are secrets (SPEC §5): each address shows as status+[redacted]@domain.
    click.echo(redact(f"To: {msg['To']}\nSubject: {msg['Subject']}\n"))
    click.echo(redact(part.get_content() if part is not None else ""), nl=False)


@digest.command("send")
@config_option
@click.option("--user", "email", metavar="EMAIL", help="Only this user, e.g. --user alice@corp.example")
@click.option("--now", "force", is_flag=True,
              help="Send this period's digest whether or not the digest hour has come, e.g. after an outage.")
@click.option("--dry-run", is_flag=True, help="Show who would get what, and why others get nothing; change nothing.")
@pass_app
def digest_send(app: App, email: str | None, force: bool, dry_run: bool) -> None:
    """Send the digests that are due (with --now: every digest of this period not yet sent)."""
    user_ids = None
    if email:
        with app.session() as session:
            user_ids = [require_user(session, email).id]
    settings, engine = app.settings, app.engine
    with digest_process():  # this process's entry point: its switches are ours to set
        if sys.stdout.isatty() and not dry_run:
            report = send_with_bar(app, user_ids, force)
        else:
            report = send_digests(settings, engine, user_ids=user_ids, force=force, dry_run=dry_run,  # type: ignore[arg-type]
                                  explain=True)
    if dry_run:
        for planned in report.planned:
            what = f"{planned.count} update{'' if planned.count == 1 else 's'}" if planned.count else "nothing new"
            click.echo(f"{planned.recipient.email}  {planned.period}  {what}")
    for item in report.left_out:  # SPEC §6: say why each reader gets nothing
        click.echo(f"{item.email}  left out: {item.reason}")
    if dry_run:
        click.echo(f"dry run: {report.queued} would get a digest, {report.empty} with nothing new; nothing changed")
        return
    click.echo(summary(report))


def send_with_bar(app: App, user_ids: Any, force: bool) -> SendReport:
    """Send with a progress bar; it appears once the run knows how many readers are due."""
    bar: Any = None

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="digests", show_pos=True)
            bar.__enter__()
        bar.update(done - bar.pos)
    try:
        return send_digests(app.settings, app.engine, user_ids=user_ids, force=force, progress=advance, explain=True)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def summary(report: SendReport) -> str:
    text = f"{report.queued} digest(s) queued, {report.empty} with nothing new"
    if report.already:
        text += f", {report.already} already done for this period"
    return text
