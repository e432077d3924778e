"""Administration commands (SPEC §6): bans, post moderation, the hold queue, the audit
trail, follows and statistics. Registered on the main group by :mod:`statusmail.cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click
from sqlalchemy import func
from sqlmodel import col, select

from statusmail import moderation
from statusmail.cli import (
    DAYS,
    LIMIT,
    ROW_ID,
    App,
    config_option,
    emit,
    json_option,
    main,
    pass_app,
    posts,
    require_post,
    require_user,
    users,
)
from statusmail.store.follows import UnknownTarget, follow, following, resolve_target, unfollow
from statusmail.store.models import AuditEntry, Bounce, Outbox, Post, PostTag, User, utcnow
from statusmail.store.posts import iso, posts_json
from statusmail.store.users import ROLES

F = TypeVar("F", bound=Callable[..., Any])


def actor_option(f: F) -> F:
    return click.option("--as", "actor", default=None, metavar="NAME",
                        help="Who is acting, for the audit trail (default: the OS user), e.g. --as carol")(f)


def acting(actor: str | None) -> str:
    return actor or moderation.default_actor()


def moderate(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except moderation.ModerationError as exc:
        raise click.ClickException(str(exc)) from None


def plural(count: int, word: str) -> str:
    """``1 user``, ``2 users``, ``1 address``, ``0 addresses``."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {word}{'es' if word.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


# --- users ----------------------------------------------------------------------------------


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
            report = import_users(session, csv_file.read(), progress=bar)
    except ImportError_ as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit(report, True)
    else:
        click.echo(f"{len(report['created'])} created, {len(report['updated'])} updated, "
                   f"{len(report['unchanged'])} unchanged, {report['follows_added']} org-chart follows added")


# --- follows --------------------------------------------------------------------------------


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


# --- posts ----------------------------------------------------------------------------------


@posts.command("hide")
@config_option
@click.argument("post_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why; kept in the audit trail, e.g. --reason 'customer data'")
@actor_option
@pass_app
def posts_hide(app: App, post_id: int, reason: str, actor: str | None) -> None:
    """Hide a post from the feed, digests and notifications."""
    with app.session() as session:
        post = require_post(session, post_id)
        changed = moderate(lambda: moderation.hide(session, post, reason, acting(actor)))
    click.echo(f"post {post_id} hidden" if changed else f"post {post_id} is already hidden; nothing changed")


@posts.command("unhide")
@config_option
@click.argument("post_id", type=ROW_ID)
@actor_option
@pass_app
def posts_unhide(app: App, post_id: int, actor: str | None) -> None:
    """Show a hidden post again."""
    with app.session() as session:
        post = require_post(session, post_id)
        changed = moderate(lambda: moderation.unhide(session, post, acting(actor)))
    click.echo(f"post {post_id} visible" if changed else f"post {post_id} is already visible; nothing changed")


@posts.command("delete")
@config_option
@click.argument("post_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why; kept in the audit trail, e.g. --reason 'posted twice'")
@actor_option
@pass_app
def posts_delete(app: App, post_id: int, reason: str, actor: str | None) -> None:
    """Delete a post (kept, with status deleted, for the audit trail)."""
    with app.session() as session:
        changed = moderation.delete(session, require_post(session, post_id), reason, acting(actor))
    click.echo(f"post {post_id} deleted" if changed else f"post {post_id} is already deleted; nothing changed")


# --- the hold queue -------------------------------------------------------------------------


@main.group()
def queue() -> None:
    """Posts waiting for a moderator."""


@queue.command("list")
@config_option
@json_option
@pass_app
def queue_list(app: App, as_json: bool) -> None:
    """Held posts with their reasons, oldest first."""
    with app.session() as session:
        held = list(session.exec(select(Post).where(Post.status == "held").order_by(col(Post.id))))
        rows = posts_json(session, held)
        for row, post in zip(rows, held):
            row["hold_reason"] = post.status_reason
    emit(rows, as_json, ("id", "created_at", "author", "hold_reason", "body"))


@queue.command("approve")
@config_option
@click.argument("post_id", type=ROW_ID)
@actor_option
@pass_app
def queue_approve(app: App, post_id: int, actor: str | None) -> None:
    """Publish a held post and send its notifications."""
    with app.session() as session:
        post = require_post(session, post_id)
        sent = moderate(lambda: moderation.approve(session, app.settings, post, acting(actor)))
    click.echo(f"post {post_id} published, {sent} notification(s) queued")


@queue.command("reject")
@config_option
@click.argument("post_id", type=ROW_ID)
@click.option("--reason", required=True, help="Mailed to the sender and kept in the audit trail, e.g. "
                                                 "--reason 'please use #random for this'")
@actor_option
@pass_app
def queue_reject(app: App, post_id: int, reason: str, actor: str | None) -> None:
    """Refuse a held post; the sender is told the reason, once."""
    with app.session() as session:
        post = require_post(session, post_id)
        moderate(lambda: moderation.reject(session, app.settings, post, reason, acting(actor)))
    click.echo(f"post {post_id} rejected; the sender is told why")


# --- audit and stats ------------------------------------------------------------------------


@main.command("audit")
@config_option
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many entries, e.g. --limit 20")
@json_option
@pass_app
def audit_command(app: App, limit: int, as_json: bool) -> None:
    """Every moderation action: who, what, when, why. Newest first."""
    with app.session() as session:
        rows = [{"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "target": e.target,
                 "reason": e.reason}
                for e in session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit))]
    emit(rows, as_json, ("id", "at", "actor", "action", "target", "reason"))


@main.command("stats")
@config_option
@click.option("--days", type=DAYS, default=7, show_default=True, help="How many days back to count, e.g. --days 30")
@json_option
@pass_app
def stats_command(app: App, days: int, as_json: bool) -> None:
    """Posts per day, active posters, top tags, held posts, bounces, outbox depth."""
    since = utcnow() - timedelta(days=days)
    with app.session() as session:
        # Activity is what readers saw: deleted, rejected, hidden and held posts are not.
        recent = session.exec(select(Post.created_at, Post.author_id)
                              .where(Post.created_at >= since, Post.status == "visible")).all()
        per_day: dict[str, int] = {}
        for created, _author in recent:
            per_day[created.date().isoformat()] = per_day.get(created.date().isoformat(), 0) + 1
        tags = session.exec(select(PostTag.tag, func.count()).join(Post, col(Post.id) == PostTag.post_id)
                            .where(Post.created_at >= since, Post.status == "visible").group_by(PostTag.tag)
                            .order_by(func.count().desc(), PostTag.tag).limit(10)).all()
        data = {
            "days": days,
            "posts_per_day": dict(sorted(per_day.items())),
            "active_posters": len({a for _c, a in recent}),
            "top_tags": [{"tag": t, "posts": n} for t, n in tags],
            "held_posts": session.exec(select(func.count()).select_from(Post).where(Post.status == "held")).one(),
            "users": session.exec(select(func.count()).select_from(User)).one(),
            "bounces": session.exec(select(func.count()).select_from(Bounce).where(Bounce.received_at >= since)).one(),
            "suspended_addresses": session.exec(select(func.count()).select_from(User)
                                                .where(col(User.mail_suspended).is_(True))).one(),
            "outbox_queued": session.exec(select(func.count()).select_from(Outbox).where(Outbox.status == "queued")).one(),
            "outbox_failed": session.exec(select(func.count()).select_from(Outbox).where(Outbox.status == "failed")).one(),
        }
    if as_json:
        emit(data, True)
        return
    click.echo(f"last {days} days")
    per_day_text = ", ".join(f"{d} {n}" for d, n in data["posts_per_day"].items()) or "none"
    click.echo(f"  posts per day:    {per_day_text}")
    click.echo(f"  active posters:   {data['active_posters']} of {plural(data['users'], 'user')}")
    top_tags = ", ".join(f"#{t['tag']} ({t['posts']})" for t in data["top_tags"]) or "none"
    click.echo(f"  top tags:         {top_tags}")
    click.echo(f"  held posts:       {data['held_posts']}")
    click.echo(f"  bounces:          {data['bounces']} ({plural(data['suspended_addresses'], 'address')} suspended)")
    click.echo(f"  outbox:           {data['outbox_queued']} queued, {data['outbox_failed']} failed")
