"""web: sessions, sign-in links and their rate limits, full-text search over posts (#20)

SQLite: an external-content FTS5 table over posts.body, kept in step by triggers, so the
inbound recorder's INSERTs (store/direct.py) need not know it exists. PostgreSQL: a GIN
index on to_tsvector('simple', body); 'simple' because staff write in several languages
and a stemmer for one would mangle the others. Neither is in models.py: see
store/search.py NOT_IN_MODELS.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE posts_fts USING fts5(body, content='posts', content_rowid='id')",
    "CREATE TRIGGER posts_fts_insert AFTER INSERT ON posts BEGIN "
    "INSERT INTO posts_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts BEGIN "
    "INSERT INTO posts_fts(posts_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER posts_fts_update AFTER UPDATE OF body ON posts BEGIN "
    "INSERT INTO posts_fts(posts_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO posts_fts(rowid, body) VALUES (new.id, new.body); END",
    "INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')",
]


def upgrade() -> None:
    op.create_table(
        'web_sessions',
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('secret_hash'),
    )
    op.create_index('ix_web_sessions_user_id', 'web_sessions', ['user_id'], unique=False)
    op.create_table(
        'sign_in_tokens',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    op.create_index('ix_sign_in_tokens_user_id', 'sign_in_tokens', ['user_id'], unique=False)
    op.create_table(
        'sign_in_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('client', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sign_in_requests_at', 'sign_in_requests', ['at'], unique=False)
    op.create_index('ix_sign_in_requests_email', 'sign_in_requests', ['email'], unique=False)
    op.create_index('ix_sign_in_requests_client', 'sign_in_requests', ['client'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute("CREATE INDEX ix_posts_body_search ON posts USING gin (to_tsvector('simple', body))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("posts_fts_insert", "posts_fts_delete", "posts_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS posts_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_posts_body_search")
    for table in ('sign_in_requests', 'sign_in_tokens', 'web_sessions'):
        op.drop_table(table)
