"""Alembic environment: statusmail always passes an open connection (store.db.upgrade)."""

from alembic import context
from sqlmodel import SQLModel

from statusmail.store import models  # noqa: F401  (registers the tables on the metadata)
from statusmail.store.search import include_name

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
    include_name=include_name,  # the search index lives outside the models
)
with context.begin_transaction():
    context.run_migrations()
