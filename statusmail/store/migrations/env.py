"""Alembic environment: statusmail always passes an open connection (store.db.upgrade)."""

from alembic import context
from sqlmodel import SQLModel

from statusmail.store import models  # noqa: F401  (registers the tables on the metadata)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
)
with context.begin_transaction():
    context.run_migrations()
