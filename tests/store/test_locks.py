"""The leader lock that lets one of several processes read the IMAP mailbox."""

from __future__ import annotations

from statusmail.store.db import make_engine
from statusmail.store.locks import LeaderLock


def test_only_one_holder_at_a_time_on_postgresql_and_always_granted_on_sqlite(database_url):
    first_engine, second_engine = make_engine(database_url), make_engine(database_url)
    first, second = LeaderLock(first_engine, "imap:INBOX"), LeaderLock(second_engine, "imap:INBOX")
    try:
        assert first.acquire()
        shared = not database_url.startswith("postgresql")
        assert second.acquire() is shared  # SQLite is one machine's store: no second process to keep out
        second.release()
        first.release()
        assert second.acquire()
        other = LeaderLock(first_engine, "imap:Other")
        assert other.acquire()  # other names are other locks
        other.release()
    finally:
        first.release()
        second.release()
        first_engine.dispose()
        second_engine.dispose()
