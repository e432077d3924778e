"""drop ix_posts_thread_id: ix_posts_thread_created starts with the same column

Every lookup by thread_id alone can use (thread_id, created_at); the single-column
index only cost a page write per commit and a B-tree insert per post
(bench/ingest.py: server CPU 1.14 -> 1.08 ms per message).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_posts_thread_id', table_name='posts')


def downgrade() -> None:
    op.create_index('ix_posts_thread_id', 'posts', ['thread_id'], unique=False)
