"""The ``statusmail`` group and what every command shares (SPEC §6): ``--config`` and
``--json``, the :class:`App` that opens the store once per command and turns store
trouble into one line on stderr, lookups that fail as exit 1, and the option types.

A failed operation is a ``ClickException`` (exit 1, one line on stderr); bad usage is a
``UsageError`` (exit 2). Logs go to stderr.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlmodel import Session

from statusmail import moderation
from statusmail.config import Settings, load_settings
from statusmail.errors import ConfigError, NoDatabase, StoreUnavailable
from statusmail.logs import setup_logging
from statusmail.store.db import (
    open_existing,
    transaction,
)
from statusmail.store.models import Post, User
from statusmail.store.users import find_user

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
