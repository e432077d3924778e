"""outbox message bytes in their own table

Marking an outbox row claimed or sent rewrote the whole row on SQLite, message
included; the bytes now live in outbox_bodies, one row per outbox row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The bytes are set aside before the column goes: on SQLite, dropping a column
    # copies the outbox table and drops the old one, which would cascade to a table
    # that already pointed at it.
    op.create_table('outbox_bodies_moving',
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('outbox_id')
    )
    op.execute("INSERT INTO outbox_bodies_moving (outbox_id, raw) SELECT id, raw FROM outbox")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('raw')
    op.create_table('outbox_bodies',
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('outbox_id')
    )
    op.execute("INSERT INTO outbox_bodies (outbox_id, raw) SELECT outbox_id, raw FROM outbox_bodies_moving")
    op.drop_table('outbox_bodies_moving')


def downgrade() -> None:
    # Nullable on the way back: a NOT NULL column cannot be added to a table with rows.
    op.add_column('outbox', sa.Column('raw', sa.LargeBinary(), nullable=True))
    op.execute("UPDATE outbox SET raw = (SELECT raw FROM outbox_bodies WHERE outbox_bodies.outbox_id = outbox.id)")
    op.drop_table('outbox_bodies')
