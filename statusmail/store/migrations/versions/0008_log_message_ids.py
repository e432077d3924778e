"""inbound_log.message_id: a row whose mail had no Message-ID gets the one its post got

Since this revision the recorder writes it (store/record.py insert_log_rows); rows from
before kept "" and `statusmail log` looked the post up, so anything else reading the
table saw no id.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE inbound_log SET message_id = "
               "(SELECT posts.message_id FROM posts WHERE posts.id = inbound_log.post_id) "
               "WHERE message_id = '' AND post_id IS NOT NULL "
               "AND EXISTS (SELECT 1 FROM posts WHERE posts.id = inbound_log.post_id)")


def downgrade() -> None:
    pass  # the ids are the posts' own; a row that has one is right on either revision
