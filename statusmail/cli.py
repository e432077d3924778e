"""The ``statusmail`` command line (SPEC §6).

Thin by design: parse options, call one function, print. ``--config`` and ``--json``
are shared decorators; listing and showing commands print JSON only with ``--json``,
an aligned table otherwise. A failed operation is a ``ClickException`` (exit 1, one
line on stderr); bad usage is a ``UsageError`` (exit 2). Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from statusmail.config import Settings, load_settings
from statusmail.errors import ConfigError, ListenError, NoDatabase, StoreUnavailable
from statusmail.logs import redact, setup_logging
from statusmail.store.db import (
    create_private_sqlite,
    current_revision,
    make_engine,
    open_existing,
    transaction,
    upgrade,
)
from statusmail.store.models import InboundLog, Outbox, Post, User
from statusmail.store.posts import STATUSES, iso, list_posts, posts_json, thread_posts
from statusmail.store.users import ROLES, find_user, register_user, user_json

F = TypeVar("F", bound=Callable[..., Any])

# Integer ranges (SPEC §6: out of range is a usage error, exit 2, not a traceback from a
# database that cannot hold the number).
ROW_ID = click.IntRange(1, 2**63 - 1)  # the largest id SQLite and PostgreSQL bigint hold
LIMIT = click.IntRange(1, 100_000)
DAYS = click.IntRange(1, 3660)


class App:
    """Settings and engine, loaded on first use so ``--help`` needs neither."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from None
        return self._settings

    @property
    def engine(self) -> Engine:
        """The database ``init`` created. Only ``init`` creates one (SPEC §2): a missing
        database is :class:`NoDatabase`, one line naming where it was looked for, and
        nothing is created in its place. Upgrades are ``init``'s job, and ``serve``'s.
        """
        if self._engine is None:
            self._engine = open_existing(self.settings.gateway.database_url)
        return self._engine

    def session(self) -> Any:
        return transaction(self.engine)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep ``--config`` for :class:`App`. Every level reads $STATUSMAIL_CONFIG, so a value
    from the environment never replaces one given on the command line at another level."""
    if value is None:
        return
    store = ctx.find_root().ensure_object(dict)
    if ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.ENVIRONMENT and "config" in store:
        return
    store["config"] = value


def config_option(f: F) -> F:
    """``--config PATH`` on every command; it may also stand before the subcommand."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), expose_value=False,
                        callback=remember_config, is_eager=True, metavar="PATH", envvar="STATUSMAIL_CONFIG",
                        show_envvar=True,
                        help="TOML configuration file (default: ./statusmail.toml if it exists, else the "
                             "built-in defaults), e.g. --config /etc/statusmail/statusmail.toml")(f)


class StatusGroup(click.Group):
    """A command group whose every command and subgroup takes ``--config``, wherever it
    stands: ``statusmail --config x posts list``, ``statusmail posts --config x list`` and
    ``statusmail posts list --config x`` are one command (SPEC §6: every command takes
    --config). Commands added later by other modules get it too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(param.name == "config_path" for param in cmd.params):
            config_option(cmd)
        super().add_command(cmd, name)


StatusGroup.group_class = StatusGroup


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON only, to stdout: a list of objects, or one object.")(f)


def pass_app(f: F) -> F:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        path = click.get_current_context().find_root().ensure_object(dict).get("config")
        app = App(path)
        try:
            return f(app, *args, **kwargs)
        except NoDatabase as exc:
            raise click.ClickException(str(exc)) from None
        except StoreUnavailable as exc:
            raise click.ClickException(f"database unavailable: {exc}") from None
        except ConfigError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
        finally:
            app.close()
    return wrapper  # type: ignore[return-value]


def emit(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    """JSON to stdout, or an aligned table (lists) / key: value lines (one object)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            if key == "thread":
                continue
            click.echo(f"{key.ljust(width)}  {format_cell(value, wrap=True)}")
        return
    click.echo(table(data, columns or (list(data[0]) if data else [])))


def format_cell(value: Any, wrap: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    text = str(value)
    return text if wrap else " ".join(text.split())


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` at a word boundary, with an ellipsis; a first word longer
    than the column is cut inside it, as nothing else fits."""
    if len(text) <= width:
        return text
    cut = text[:width - 1]
    if text[width - 1] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def table(rows: list[dict[str, Any]], columns: Sequence[str], max_width: int = 60) -> str:
    if not rows:
        return "(none)"
    cells = [[shorten(format_cell(row.get(c)), max_width) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date or time: {value!r}", param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def require_user(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise click.ClickException(f"no such user: {email}")
    return user


def require_post(session: Session, post_id: int) -> Post:
    post = session.get(Post, post_id)
    if post is None:
        raise click.ClickException(f"no such post: {post_id}")
    return post


@click.group(cls=StatusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr, e.g. statusmail -v check")
@click.version_option(package_name="statusmail")
def main(verbose: bool) -> None:
    """statusmail: status updates by mail, threaded replies and digests.

    \b
    Every configuration key can also be set in the environment, as
    STATUSMAIL_<SECTION>_<KEY>, e.g.
      STATUSMAIL_GATEWAY_DATABASE_URL=postgresql+psycopg://statusmail@db/statusmail
    """
    # Commands print their results; only warnings are logged unless asked. `serve` logs INFO.
    setup_logging(logging.DEBUG if verbose else logging.WARNING)


# --- set-up and service -------------------------------------------------------------------


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
            raise click.ClickException(f"log entry {log_id} has no raw message (refused before DATA, or pruned)")
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


# --- users ----------------------------------------------------------------------------------

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

    if "@" not in email:
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


# --- posts ----------------------------------------------------------------------------------

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


# --- log and outbox -------------------------------------------------------------------------

LOG_COLUMNS = ("id", "received_at", "outcome", "sender", "reason", "post_id", "message_id")


def log_json(entry: InboundLog, post_message_id: str | None = None) -> dict[str, Any]:
    reason = entry.reason if not entry.detail or entry.detail == entry.reason else f"{entry.reason}: {entry.detail}"
    return {"id": entry.id, "received_at": iso(entry.received_at), "message_id": entry.message_id or post_message_id,
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
        entries = list(session.exec(query.order_by(col(InboundLog.id).desc()).limit(limit)))
        # A message without a Message-ID got one generated for its post: show that one.
        missing = [e.post_id for e in entries if not e.message_id and e.post_id]
        generated = dict(session.exec(select(Post.id, Post.message_id)
                                      .where(col(Post.id).in_(missing))).all()) if missing else {}
        rows = [log_json(e, generated.get(e.post_id)) for e in entries]
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
                raise click.ClickException(f"outbox entry {outbox_id} was already sent")
        count = retry(session, outbox_id)
    click.echo(f"{count} mail(s) due now")


def load_extensions() -> None:
    """Command groups that live in their own modules register themselves on ``main``."""
    from statusmail import (
        cli_admin,  # noqa: F401
        cli_checkins,  # noqa: F401
        cli_digest,  # noqa: F401
    )


load_extensions()
