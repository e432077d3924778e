"""One process at a time: a leader lock for work that must not run twice at once.

With several ``serve`` processes on one PostgreSQL database, only one may read the IMAP
mailbox (two readers would fetch the same message at once; dedupe would keep it to one
post, but both would try to move it). PostgreSQL's session advisory locks are the tool:
the lock lives as long as the connection that took it, so a process that dies releases
it with its connection. SQLite is one machine's store; there the lock is always granted.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, Engine, text


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LeaderLock:
    """``acquire()`` without waiting; hold until ``release()`` or the process ends."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.key = engine, lock_key(name)
        self.connection: Connection | None = None

    def acquire(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        connection = self.engine.connect()
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar())
        connection.commit()
        if got:
            self.connection = connection
        else:
            connection.close()
        return got

    def release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                connection.commit()
            finally:
                connection.close()
