"""``statusmail audit`` and ``statusmail stats`` (SPEC §6)."""

from __future__ import annotations

from datetime import timedelta

import click
from sqlalchemy import func
from sqlmodel import col, select

from statusmail.cli.app import (
    DAYS,
    LIMIT,
    App,
    config_option,
    json_option,
    main,
    pass_app,
)
from statusmail.cli.output import emit, plural
from statusmail.store.models import AuditEntry, Bounce, Outbox, Post, PostTag, User, utcnow
from statusmail.store.posts import iso


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
