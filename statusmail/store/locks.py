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

    def held(self) -> bool:
        """Whether this process still holds the lock. A session lock lasts as long as its
        connection: one an administrator terminated (``pg_terminate_backend``), or that a
        network failure cut, has released it, and another process may have it now."""
        if self.engine.dialect.name != "postgresql":
            return True
        connection = self.connection
        if connection is None:
            return False
        high, low = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        try:
            count = connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
                " AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid) AND objsubid = 1"),
                {"high": high, "low": low}).scalar()
            connection.commit()
        except Exception:
            self.forget()
            return False
        if not count:
            self.forget()
        return bool(count)

    def forget(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass

    def release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                connection.commit()
            except Exception:
                pass  # the connection is gone, and the lock with it
            finally:
                try:
                    connection.close()
                except Exception:
                    pass
