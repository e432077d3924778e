"""Schema migrations: every revision upgrades to the newest, and data survives (DESIGN 10)."""

from __future__ import annotations

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import Session, select

from statusmail.outbound.outbox import claim_due
from statusmail.store.db import MIGRATIONS, current_revision, make_engine, upgrade
from statusmail.store.models import InboundLog, Post, User


def revisions() -> list[str]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return [r.revision for r in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]


def upgrade_to(engine, revision: str) -> None:
    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@pytest.mark.parametrize("start", revisions())
def test_every_revision_upgrades_to_head_keeping_its_users(start, database_url):
    engine = make_engine(database_url)
    upgrade_to(engine, start)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (email, name, handle, role, team, manager_email, timezone, digest, "
                                   "banned, ban_reason, hard_bounces, mail_suspended, created_at) VALUES "
                                   "('kept@corp.example', 'Kept', 'kept', 'staff', '', '', '', '', false, '', 0, false, "
                                   "CURRENT_TIMESTAMP)")
    upgrade(engine)
    assert current_revision(engine) == revisions()[-1]
    with Session(engine) as session:
        assert session.exec(select(User.email)).all() == ["kept@corp.example"]
    engine.dispose()


def test_init_on_an_existing_database_keeps_its_posts(cli, settings):
    from tests.conftest import make_mail

    cli("inject", input=make_mail(body="survives init", subject="status").as_bytes())
    assert cli("init").exit_code == 0
    engine = make_engine(settings.gateway.database_url)
    with Session(engine) as session:
        assert session.exec(select(Post.body)).all() == ["survives init"]
    engine.dispose()


def test_queued_mail_keeps_its_bytes_when_they_move_to_outbox_bodies(database_url):
    """Revision 0002 moves each outbox message out of its row; mail queued before the
    upgrade is sent after it, byte for byte."""
    engine = make_engine(database_url)
    upgrade_to(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO outbox (created_at, kind, to_addr, envelope_from, subject, message_id, raw, status, attempts, "
            "next_attempt_at, last_error, bounce_key) VALUES (CURRENT_TIMESTAMP, 'digest', 'lea@corp.example', "
            "'status+bounce-k@corp.example', 'Your digest', '<d1@corp.example>', :raw, 'queued', 0, "
            "CURRENT_TIMESTAMP, '', 'k')"), {"raw": b"Subject: Your digest\r\n\r\nkept\r\n"})
    upgrade(engine)
    [(row, raw)] = claim_due(engine)
    assert (row.to_addr, raw) == ("lea@corp.example", b"Subject: Your digest\r\n\r\nkept\r\n")
    engine.dispose()


def test_the_newest_revision_builds_exactly_the_schema_the_models_describe(database_url):
    """A column or index changed in models.py without a revision (or the other way round)
    would differ here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from statusmail.store.search import include_name

    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"include_name": include_name}),
                                       SQLModel.metadata)
    engine.dispose()
    assert differences == []


def test_log_rows_from_before_0008_get_the_message_id_their_post_got(database_url):
    """Before 0008 a mail without a Message-ID left its log row's empty (only `statusmail
    log` looked the post up); the upgrade fills it in, and leaves rows without a post."""
    engine = make_engine(database_url)
    upgrade_to(engine, "0007")
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO users (id, email, name, handle, role, team, manager_email, timezone, "
                                   "digest, checkin, banned, ban_reason, hard_bounces, mail_suspended, created_at) "
                                   "VALUES (1, 'al@corp.example', 'Al', 'al', 'staff', '', '', '', '', 'on', false, "
                                   "'', 0, false, CURRENT_TIMESTAMP)")
        connection.exec_driver_sql("INSERT INTO posts (id, author_id, body, trimmed, created_at, thread_id, status, "
                                   "status_reason, message_id, thread_index) VALUES (7, 1, 'no id here', '', "
                                   "CURRENT_TIMESTAMP, 7, 'visible', '', '<made.7@corp.example>', '')")
        for log_id, message_id, post_id in ((1, "", 7), (2, "", None), (3, "<own@corp.example>", 7)):
            connection.execute(text(
                "INSERT INTO inbound_log (id, received_at, message_id, sender, recipients, peer, source, outcome, "
                "reason, detail, post_id, defects) VALUES (:id, CURRENT_TIMESTAMP, :mid, 'al@corp.example', '', "
                "'', 'smtp', 'accepted', 'posted', '', :post, '')"), {"id": log_id, "mid": message_id, "post": post_id})
    upgrade(engine)
    with Session(engine) as session:
        rows = session.exec(select(InboundLog.id, InboundLog.message_id).order_by(InboundLog.id)).all()
    assert [tuple(row) for row in rows] == [(1, "<made.7@corp.example>"), (2, ""), (3, "<own@corp.example>")]
    engine.dispose()
