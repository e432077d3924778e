"""``statusmail follows``: list, add, remove (SPEC §6)."""

from __future__ import annotations

import click

from statusmail.cli.app import (
    App,
    config_option,
    json_option,
    main,
    pass_app,
    require_user,
)
from statusmail.cli.output import emit
from statusmail.store.follows import UnknownTarget, follow, following, resolve_target, unfollow


@main.group()
def follows() -> None:
    """Who follows whom, and which tags."""


@follows.command("list")
@config_option
@click.argument("email")
@json_option
@pass_app
def follows_list(app: App, email: str, as_json: bool) -> None:
    """What a user follows."""
    with app.session() as session:
        targets = following(session, require_user(session, email))
        rows = [{"type": "tag", "target": f"#{t.tag}"} if t.tag else
                {"type": "user", "target": t.user.email, "handle": t.user.handle} for t in targets]  # type: ignore[union-attr]
    emit(rows, as_json, ("type", "target"))


def change_follow(app: App, email: str, target_text: str, add: bool) -> None:
    with app.session() as session:
        user = require_user(session, email)
        try:
            target = resolve_target(session, target_text)
        except UnknownTarget as exc:
            raise click.ClickException(str(exc)) from None
        if add and target.user is not None and target.user.id == user.id:
            raise click.ClickException(f"{user.email} cannot follow themselves")
        changed = follow(session, user, target) if add else unfollow(session, user, target)
    verb = "now follows" if add else "no longer follows"
    click.echo(f"{email} {verb} {target_text}" if changed else f"nothing to change for {email} and {target_text}")


@follows.command("add")
@config_option
@click.argument("email")
@click.argument("target")
@pass_app
def follows_add(app: App, email: str, target: str) -> None:
    """EMAIL follows TARGET (an address, @handle or #tag)."""
    change_follow(app, email, target, add=True)


@follows.command("remove")
@config_option
@click.argument("email")
@click.argument("target")
@pass_app
def follows_remove(app: App, email: str, target: str) -> None:
    """EMAIL stops following TARGET."""
    change_follow(app, email, target, add=False)
