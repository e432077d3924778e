"""``statusmail posts`` and ``statusmail queue``: the feed, moderation and the hold
queue (SPEC §6). Moderation goes through :mod:`statusmail.moderation`, which audits."""

from __future__ import annotations

import click
from sqlmodel import col, select

from statusmail import moderation
from statusmail.cli.app import (
    LIMIT,
    ROW_ID,
    App,
    acting,
    actor_option,
    config_option,
    json_option,
    main,
    moderate,
    pass_app,
    require_post,
    require_user,
)
from statusmail.cli.output import emit, parse_since
from statusmail.logs import redact
from statusmail.store.models import Post
from statusmail.store.posts import STATUSES, list_posts, posts_json, thread_posts

POST_COLUMNS = ("id", "created_at", "author", "status", "thread_id", "reply_count", "body")


@main.group()
def posts() -> None:
    """The feed."""


@posts.command("list")
@config_option
@click.option("--author", metavar="EMAIL", help="Only posts by this address, e.g. --author alice@corp.example")
@click.option("--tag", metavar="TAG", help="Only posts with this tag (no #), e.g. --tag billing")
@click.option("--since", metavar="ISO", help="Only posts at or after this ISO 8601 time (UTC unless it says), "
                                             "e.g. --since 2026-11-30 or --since 2026-11-30T09:00+01:00")
@click.option("--status", type=click.Choice(STATUSES), help="Only posts with this status (default: all), e.g. --status held")
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many posts, e.g. --limit 20")
@json_option
@pass_app
def posts_list(app: App, author: str | None, tag: str | None, since: str | None, status: str | None, limit: int,
               as_json: bool) -> None:
    """Posts, newest first, replies included."""
    since_time = parse_since(since)
    with app.session() as session:
        author_user = require_user(session, author) if author else None
        rows = posts_json(session, list_posts(session, author=author_user, tag=tag, since=since_time, status=status,
                                              limit=limit))
    emit(rows, as_json, POST_COLUMNS)


@posts.command("show")
@config_option
@click.argument("post_id", type=ROW_ID)
@json_option
@pass_app
def posts_show(app: App, post_id: int, as_json: bool) -> None:
    """A post and its whole thread."""
    with app.session() as session:
        post = require_post(session, post_id)
        data = posts_json(session, [post])[0]
        data["thread"] = posts_json(session, thread_posts(session, post.thread_id or post_id))
        # What trimming cut is usually the quoted notification, reply address and all: a
        # token is a secret and never printed (SPEC §5).
        data["trimmed"] = redact(post.trimmed)
    if as_json:
        emit(data, True)
        return
    emit({k: v for k, v in data.items() if k not in ("trimmed",)}, False)
    click.echo("")
    click.echo(f"thread {data['thread_id']}:")
    for item in data["thread"]:
        marker = "*" if item["id"] == post_id else " "
        indent = "" if item["parent_id"] is None else "  "
        body = " ".join(item["body"].split())
        click.echo(f"{marker} {indent}#{item['id']} {item['created_at']} {item['author']} [{item['status']}]: {body}")


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
    if sent is None:
        click.echo(f"post {post_id} is already visible; nothing changed")
    else:
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
        changed = moderate(lambda: moderation.reject(session, app.settings, post, reason, acting(actor)))
    click.echo(f"post {post_id} rejected; the sender is told why" if changed
               else f"post {post_id} is already deleted; nothing changed, the sender is not told again")
