"""``statusmail users``: list, show, add, set, ban, unban, import (SPEC §6)."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlmodel import select

from statusmail import moderation
from statusmail.cli.app import App, acting, actor_option, config_option, json_option, main, pass_app, require_user
from statusmail.cli.output import emit
from statusmail.store.models import User
from statusmail.store.users import ROLES, find_user, is_mail_address, normalize_email, register_user, user_json

USER_COLUMNS = ("email", "name", "handle", "role", "team", "timezone", "digest", "banned")


@main.group()
def users() -> None:
    """The user directory."""


@users.command("list")
@config_option
@json_option
@pass_app
def users_list(app: App, as_json: bool) -> None:
    """Every user, by address."""
    with app.session() as session:
        rows = [user_json(u, app.settings) for u in session.exec(select(User).order_by(User.email))]
    emit(rows, as_json, USER_COLUMNS)


@users.command("show")
@config_option
@click.argument("email")
@json_option
@pass_app
def users_show(app: App, email: str, as_json: bool) -> None:
    """One user."""
    with app.session() as session:
        emit(user_json(require_user(session, email), app.settings), as_json)


@users.command("add")
@config_option
@click.argument("email")
@click.option("--name", default="", metavar="NAME", help="Display name, e.g. --name 'Alice Anders'")
@click.option("--role", type=click.Choice(ROLES), default="staff", show_default=True,
              help="staff posts and reads; leader also gets the check-in round-ups; admin moderates, "
                   "e.g. --role leader")
@click.option("--team", default="", metavar="TEAM", help="Team name; team members follow each other, e.g. --team billing")
@click.option("--timezone", "tz", default="", metavar="ZONE",
              help="IANA zone for the digest hour (default: digest.default_timezone), e.g. --timezone Europe/Berlin")
@json_option
@pass_app
def users_add(app: App, email: str, name: str, role: str, team: str, tz: str, as_json: bool) -> None:
    """Register a user."""
    from statusmail.config import is_timezone

    if not is_mail_address(normalize_email(email)):
        raise click.BadParameter(f"not a mail address: {email!r}", param_hint="EMAIL")
    if tz and not is_timezone(tz):
        raise click.BadParameter(f"unknown timezone {tz!r}", param_hint="--timezone")
    with app.session() as session:
        if find_user(session, email) is not None:
            raise click.ClickException(f"user exists: {email}")
        user = register_user(session, email, name=name, role=role, team=team, timezone=tz)
        data = user_json(user, app.settings)
    if as_json:
        emit(data, True)
    else:
        click.echo(f"added {data['email']} (@{data['handle']})")


@users.command("set")
@config_option
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), help="New role, e.g. --role admin")
@click.option("--digest", type=click.Choice(("daily", "weekly", "off")),
              help="How often the digest comes, e.g. --digest weekly")
@click.option("--checkin", type=click.Choice(("on", "off")),
              help="The daily check-in question (SPEC §7), e.g. --checkin off")
@click.option("--timezone", "tz", metavar="ZONE", help="IANA zone for the digest hour, e.g. --timezone Asia/Tokyo")
@click.option("--handle", metavar="HANDLE", help="The @handle others mention, e.g. --handle alice.a")
@click.option("--name", metavar="NAME", help="Display name, e.g. --name 'Alice Anders'")
@click.option("--reset-bounces", is_flag=True,
              help="Lift a bounce suspension and count hard bounces from zero, e.g. after a mailbox was fixed.")
@actor_option
@pass_app
def users_set(app: App, email: str, role: str | None, digest: str | None, checkin: str | None, tz: str | None,
              handle: str | None, name: str | None, reset_bounces: bool, actor: str | None) -> None:
    """Change a user's role, digest, timezone, handle or name."""
    from statusmail.config import is_timezone
    from statusmail.store.users import HANDLE_CHARS, find_user_by_handle

    given = {k: v for k, v in click.get_current_context().params.items() if k not in ("email", "actor")}
    if all(v is None or v is False for v in given.values()):
        raise click.UsageError("nothing to set: give at least one option (see `statusmail users set --help`)")
    if tz is not None and not is_timezone(tz):
        raise click.BadParameter(f"unknown timezone {tz!r}", param_hint="--timezone")
    with app.session() as session:
        user = require_user(session, email)
        if handle is not None:
            handle = handle.lstrip("@").lower()
            if not handle or HANDLE_CHARS.search(handle):
                raise click.BadParameter(f"a handle is letters, digits, '.', '-' and '_': {handle!r}",
                                         param_hint="--handle")
            other = find_user_by_handle(session, handle)
            if other is not None and other.id != user.id:
                raise click.ClickException(f"handle @{handle} belongs to {other.email}")
            user.handle = handle
        for field, value in (("role", role), ("digest", digest), ("timezone", tz), ("name", name)):
            if value is not None:
                setattr(user, field, value)
        if checkin is not None:
            user.checkin = checkin == "on"
        session.add(user)
        if reset_bounces:
            moderation.reset_bounces(session, user, acting(actor))
        click.echo(f"updated {user.email}")


@users.command("ban")
@config_option
@click.argument("email")
@click.option("--reason", required=True, help="Why; kept in the audit trail, e.g. --reason 'phishing from a "
                                                 "hijacked account'")
@actor_option
@pass_app
def users_ban(app: App, email: str, reason: str, actor: str | None) -> None:
    """Refuse this sender's mail (550 5.7.1); nothing is mailed to them."""
    with app.session() as session:
        user = require_user(session, email)
        changed = moderation.ban(session, user, reason, acting(actor))
        already = user.ban_reason
    click.echo(f"banned {email}" if changed else f"{email} is already banned ({already}); nothing changed")


@users.command("unban")
@config_option
@click.argument("email")
@actor_option
@pass_app
def users_unban(app: App, email: str, actor: str | None) -> None:
    """Let a banned sender post again."""
    with app.session() as session:
        user = require_user(session, email)
        changed = moderation.unban(session, user, acting(actor))
    click.echo(f"unbanned {email}" if changed else f"{email} is not banned; nothing changed")


@users.command("import")
@config_option
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@json_option
@pass_app
def users_import(app: App, csv_file: Any, as_json: bool) -> None:
    """Create or update users from CSV: email,name,role,team,manager,timezone."""
    from statusmail.directory import ImportError_, import_users

    try:
        with app.session() as session:
            # A progress bar only for a person at a terminal; scripts get the summary alone.
            bar = click.progressbar if sys.stdout.isatty() and not as_json else None
            report = import_users(session, read_text(csv_file), progress=bar)
    except ImportError_ as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit(report, True)
    else:
        click.echo(f"{len(report['created'])} created, {len(report['updated'])} updated, "
                   f"{len(report['unchanged'])} unchanged, {report['follows_added']} org-chart follows added")


def read_text(csv_file: Any) -> str:
    try:
        return str(csv_file.read())
    except UnicodeDecodeError as exc:
        # One line, not a traceback: a spreadsheet saved as Latin-1 or UTF-16 (SPEC §6).
        raise click.ClickException(f"{csv_file.name}: not UTF-8 text (byte {exc.start}); "
                                   "save the CSV as UTF-8 and import it again") from None
