"""``statusmail checkins send|roundup|rollup`` (SPEC §6, §7): the daily question, the team
round-up and the leader's week by hand, instead of waiting for the scheduler in ``serve``.

Each queues mail in the outbox exactly as the scheduler does (the running ``serve``
delivers it), so a manual run and the scheduler never both send one period; each says,
for every reader it left out, why. Registered on the main group when :mod:`statusmail.cli` imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from sqlmodel import select

from statusmail.cli.app import (
    App,
    config_option,
    main,
    pass_app,
    require_user,
)
from statusmail.gil import digest_process
from statusmail.outbound.checkins import Report, send_questions, send_rollups, send_roundups
from statusmail.store.models import User

NOUNS = {"question": "question", "roundup": "round-up", "rollup": "leader's week"}


@main.group()
def checkins() -> None:
    """Check-ins: the daily question, team round-ups and the leader's week (SPEC §7)."""


def now_option(f: Any) -> Any:
    return click.option("--now", "force", is_flag=True,
                        help="Send now, whether or not the hour and the working day have come "
                             "(still once per period), e.g. --now")(f)


def dry_run_option(f: Any) -> Any:
    return click.option("--dry-run", is_flag=True, help="Show who would get what; change nothing, e.g. --dry-run")(f)


def run(app: App, send: Callable[..., Report], dry_run: bool, **kwargs: Any) -> None:
    engine = app.engine  # a missing database is named first (SPEC §2)
    if not app.settings.checkins.enabled:
        raise click.ClickException("check-ins are off: set checkins.enabled = true (or STATUSMAIL_CHECKINS_ENABLED=1)")
    with digest_process():  # this process's entry point: its switches are ours to set
        report = send(app.settings, engine, dry_run=dry_run, **kwargs)
    print_report(report, dry_run)


def print_report(report: Report, dry_run: bool) -> None:
    noun = NOUNS[report.kind]
    for planned in report.planned:
        what = (f"{planned.count} item{'' if planned.count == 1 else 's'}" if report.kind != "question"
                else "the question")
        if planned.count:
            click.echo(f"would send  {planned.reader.email}  {planned.period}  {what}")
    for address, why in report.left_out:
        click.echo(f"left out    {address}: {why}")
    if dry_run:
        click.echo(f"dry run: {report.queued} would get a {noun}, {report.empty} with nothing to say, "
                   f"{report.already} already sent; nothing changed")
        return
    text = f"{report.queued} {noun}(s) queued"
    if report.kind != "question":
        text += f", {report.empty} with nothing new"
    if report.already:
        text += f", {report.already} already sent for this period"
    click.echo(text)


def user_ids(app: App, email: str | None) -> list[int] | None:
    if not email:
        return None
    with app.session() as session:
        return [require_user(session, email).id]  # type: ignore[list-item]


@checkins.command("send")
@config_option
@click.option("--user", "email", help="Only this user, e.g. --user alice@corp.example")
@now_option
@dry_run_option
@pass_app
def checkins_send(app: App, email: str | None, force: bool, dry_run: bool) -> None:
    """Mail the daily question to everyone whose hour has come today (checkins.hour)."""
    run(app, send_questions, dry_run, user_ids=user_ids(app, email), force=force)


@checkins.command("roundup")
@config_option
@click.option("--team", help="Only this team's members and its manager, e.g. --team billing")
@now_option
@dry_run_option
@pass_app
def checkins_roundup(app: App, team: str | None, force: bool, dry_run: bool) -> None:
    """Mail each team's round-up of the previous working day's answers (checkins.roundup_hour)."""
    if team is not None:
        require_team(app, team)
    run(app, send_roundups, dry_run, team=team, force=force)


def require_team(app: App, team: str) -> None:
    """A team is the ``team`` of at least one user; a name that is none is a failed
    operation (exit 1), as ``--user`` naming no user is."""
    with app.session() as session:
        if session.exec(select(User.id).where(User.team == team).limit(1)).first() is None:
            raise click.ClickException(f"no such team: {team}")


@checkins.command("rollup")
@config_option
@click.option("--user", "email", help="Only this manager, e.g. --user lea@corp.example")
@now_option
@dry_run_option
@pass_app
def checkins_rollup(app: App, email: str | None, force: bool, dry_run: bool) -> None:
    """Mail every manager the week of everyone below them (digest.weekly_day at digest.hour)."""
    ids = user_ids(app, email)
    if not app.settings.checkins.leader_rollup:
        raise click.ClickException("the leader's week is off: set checkins.leader_rollup = true")
    run(app, send_rollups, dry_run, user_ids=ids, force=force)
