"""Engines, sessions and schema upgrades.

SQLite is the embedded default: WAL mode so readers never block the writer, a busy
timeout so concurrent writers wait instead of failing, and ``synchronous=FULL`` because
250 means the message survives a power cut, not only a crash. PostgreSQL (psycopg 3) is
the choice when several gateway processes share one database.

Every database failure that a retry could cure (server down, file locked, disk full) is
raised as :class:`StoreUnavailable`, which the SMTP side answers with ``451 4.3.0``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, SQLModel

from statusmail.errors import NoDatabase, StoreUnavailable
from statusmail.store.direct import Direct

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 5000
POOL_SIZE = 10


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for any other database and for ``:memory:``."""
    if not is_sqlite(url):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def describe_url(url: str) -> str:
    """Where the database is, for a person: a SQLite file's absolute path, or the URL
    without its password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path.absolute())
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def create_private_sqlite(url: str) -> bool:
    """Create a SQLite database's file empty, readable by its owner only (and its
    folder, if missing, 0700); True if it was created. SQLite gives the -wal and -shm
    files the database file's permissions, so they are private too. An existing file
    loses any group and other permission bits."""
    path = sqlite_path(url)
    if path is None:
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return False
    return True


def open_existing(url: str) -> Engine:
    """An engine for a database ``init`` created; :class:`NoDatabase` if there is none.

    Nothing is created: not the SQLite file, not its folder (SPEC §2).
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise NoDatabase(f"no database at {describe_url(url)}; run `statusmail init` or pass --config")
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    except OperationalError as exc:
        engine.dispose()
        raise StoreUnavailable(describe_db_error(exc)) from exc
    if revision is None:
        engine.dispose()
        raise NoDatabase(f"no database at {describe_url(url)} (it has no tables); "
                         "run `statusmail init` or pass --config")
    return engine


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for a SQLite file, its folder is created (owner only)."""
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        pool: dict[str, int] = {}
        if path and path != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # As large a pool as PostgreSQL's: a connection beyond pool_size is closed when
            # returned, and a new SQLite connection pays for its PRAGMAs and schema read.
            pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_SIZE}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               **pool)
        event.listen(engine, "connect", configure_sqlite)
        # A many-row INSERT becomes one statement with many VALUES rows, not one
        # sqlite3 step per row: each step releases and retakes the interpreter lock, and
        # a digest run writes ~40 reply tokens per reader (bench/digest.py: 47 -> 70
        # digests/s at 2,000 readers). psycopg batches executemany on its own.
        engine.dialect.use_insertmanyvalues_wo_returning = True
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)


def configure_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error.

    Connection-level failures become :class:`StoreUnavailable`; constraint violations
    and programming errors pass through unchanged.
    """
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
            session.commit()
    except OperationalError as exc:
        raise StoreUnavailable(describe_db_error(exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(describe_db_error(exc)) from exc
        raise


def begin_immediate(session: Session) -> None:
    """On SQLite, start the transaction as the writer now.

    pysqlite sends no BEGIN of its own before a SAVEPOINT, and a SAVEPOINT outside a
    transaction is a transaction whose RELEASE commits: every message of a batch would
    pay its own fsync again. BEGIN IMMEDIATE also takes the write lock before the first
    read, so reading then writing can never fail with SQLITE_BUSY_SNAPSHOT under WAL.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def insert_values(session: Session, model: type[SQLModel], **values: Any) -> int:
    """INSERT one row of ``model`` and return its new id.

    Building a SQLModel instance and flushing it through the ORM's unit of work (change
    tracking, flush ordering, identity map) cost about ten times the INSERT itself, and
    SQLAlchemy's execution layer as much again as the driver (``store/direct.py``); on
    the ingest hot path that was most of a message's time (bench/ingest.py). Fields not
    given take the model's defaults. Nothing is attached to ``session``: the row is
    written in its transaction (and SAVEPOINT), and read back like any other.
    """
    statement, defaults = insert_plan(model)
    unknown = values.keys() - defaults.keys()
    if unknown:
        raise TypeError(f"{model.__name__} has no column {', '.join(sorted(unknown))}")
    row = {name: values[name] if name in values else default() for name, default in defaults.items()}
    return int(statement.scalar(session, row))


@functools.cache
def insert_plan(model: type[SQLModel]) -> tuple[Direct, dict[str, Callable[[], Any]]]:
    """The model's INSERT returning the new id, built once, and a default maker for
    every column but the id."""
    table = model.__table__  # type: ignore[attr-defined]
    fields = model.model_fields
    defaults: dict[str, Callable[[], Any]] = {column.key: functools.partial(fields[column.key].get_default, call_default_factory=True)
                for column in table.columns if not column.primary_key}
    (key,) = table.primary_key.columns
    return Direct(table.insert().returning(key), list(defaults)), defaults


def describe_db_error(exc: DBAPIError) -> str:
    """One line for the log, without the SQL statement or its parameters."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest alembic revision. Idempotent."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
