"""Statements of the ingest hot path, run on the database driver's cursor directly.

SQLAlchemy's ``Connection.execute`` spends about 12 µs on a statement before the driver
sees it (cache key, execution context, result wrapping); sqlite3 runs a small indexed
one in about 1 µs. A post runs six statements, and on a two-core machine the pipeline's
CPU per message sets how close ingest comes to the SMTP stack's own speed
(``bench/ingest.py``). A :class:`Direct` statement is an ordinary Core construct,
compiled once per dialect together with the bind processors SQLAlchemy would apply
(SQLite keeps datetimes as text), and run on the DBAPI cursor of the session's own
connection: it shares the session's transaction. Driver errors are
raised as SQLAlchemy's, so callers catch one family of exceptions whichever path ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlmodel import Session


@dataclass(frozen=True)
class Plan:
    """A statement as one dialect's driver takes it."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    constants: dict[str, Any]  # values bound in the statement itself (a LIMIT's, say)

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.constants:
            values = {**self.constants, **values}
        converted = [value if process is None else process(value)
                     for value, process in zip((values[name] for name in self.names), self.processors)]
        return converted if self.positional else dict(zip(self.names, converted))


class Direct:
    """One Core statement, compiled once per dialect, run without SQLAlchemy's execution layer.

    ``columns`` names the parameters of an INSERT built without values (every other
    column is left out of it).
    """

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.columns = list(columns) if columns is not None else None
        self.plans: dict[str, Plan] = {}

    def plan(self, dialect: Dialect) -> Plan:
        plan = self.plans.get(dialect.name)
        if plan is None:
            compiled = cast(SQLCompiler, self.statement.compile(dialect=dialect, column_keys=self.columns))
            names = tuple(compiled.positiontup or compiled.binds) if dialect.positional else tuple(compiled.binds)
            processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                               for name in names)
            constants = {name: bind.value for name, bind in compiled.binds.items()
                         if bind.value is not None and not bind.required}
            plan = self.plans[dialect.name] = Plan(compiled.string, names, processors, dialect.positional, constants)
        return plan

    def execute(self, session: Session, values: Mapping[str, Any]) -> Any:
        """Run once with ``values`` by bound name; the driver's cursor."""
        return self.run(session, lambda cursor, plan: cursor.execute(plan.sql, plan.parameters(values)))

    def execute_many(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        self.run(session, lambda cursor, plan: cursor.executemany(plan.sql, [plan.parameters(r) for r in rows]))

    def scalar(self, session: Session, values: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(session, values).fetchone()
        return None if row is None else row[0]

    def run(self, session: Session, call: Callable[[Any, Plan], Any]) -> Any:
        return on_driver(session, lambda cursor, dialect: call(cursor, self.plan(dialect)))


# session.info key: (the transaction it was found in, DBAPI connection, dialect).
DRIVER = "statusmail.driver"


def on_driver(session: Session, call: Callable[[Any, Dialect], Any]) -> Any:
    """Run ``call(cursor, dialect)`` on the session's DBAPI connection; the cursor."""
    dbapi_connection, dialect = driver_of(session)
    cursor = dbapi_connection.cursor()
    try:
        call(cursor, dialect)
    except dialect.loaded_dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, dbapi_connection, cursor)
        raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=invalidated, dialect=dialect) from exc
    return cursor


def driver_of(session: Session) -> tuple[Any, Dialect]:
    """The DBAPI connection under the session's transaction, and its dialect.

    ``session.connection()`` begins the transaction and emits a pending ORM SAVEPOINT,
    so statements run here land inside them. It is asked once per (nested) transaction,
    not for every statement: that cost about 20 us per post.
    """
    current = session.get_nested_transaction() or session.get_transaction()
    known = session.info.get(DRIVER)
    if current is not None and known is not None and known[0] is current:
        return known[1], known[2]
    connection = session.connection()
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    session.info[DRIVER] = (session.get_nested_transaction() or session.get_transaction(), dbapi_connection,
                            connection.dialect)
    return dbapi_connection, connection.dialect
