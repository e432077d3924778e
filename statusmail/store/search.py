"""Full-text search over post text: one function, SQLite FTS5 or PostgreSQL's own.

SQLite keeps an external-content FTS5 table (``posts_fts``) in step with ``posts`` by
triggers; PostgreSQL a GIN index on ``to_tsvector('simple', body)`` (revision 0005).
Every word the reader typed must occur (AND); FTS5 gets each word as a quoted string, so
no reader's input is ever FTS5 query syntax, and PostgreSQL gets ``plainto_tsquery``,
which ignores operators. Results are newest first, visible posts in visible threads only.
"""

from __future__ import annotations

import re

from sqlalchemy import and_, column, table, text
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from statusmail.store.models import Post

# Made by revision 0005 outside the models (an FTS5 table and its shadow tables, an
# expression index): alembic's comparison of models and schema leaves these out.
NOT_IN_MODELS = ("posts_fts", "posts_fts_data", "posts_fts_idx", "posts_fts_docsize", "posts_fts_config",
                 "ix_posts_body_search")
WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 8


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """alembic ``include_name`` hook: everything but :data:`NOT_IN_MODELS`."""
    return name not in NOT_IN_MODELS


def words(query: str) -> list[str]:
    return WORD.findall(query.lower())[:MAX_WORDS]


def search_posts(session: Session, query: str, *, limit: int = 20, before: int | None = None) -> list[Post]:
    """Visible posts (in visible threads) containing every word of ``query``, newest first
    by id (ids are given out in the order posts are stored); ``before``: the id of the last
    post of the previous page.

    On SQLite the FTS5 table drives the query in descending rowid order, which FTS5 walks
    natively, so a page of a common word stops after its first matches instead of
    collecting every match and sorting them (bench/web.py: 24 -> 3 ms at 100,000 posts)."""
    terms = words(query)
    if not terms:
        return []
    root = aliased(Post)
    visible = and_(col(Post.status) == "visible", col(root.status) == "visible")
    if session.get_bind().dialect.name == "sqlite":
        match = " ".join('"' + term.replace('"', '""') + '"' for term in terms)
        fts = table("posts_fts", column("rowid"))
        rowid = fts.c.rowid
        statement = (select(Post).select_from(fts)
                     .join(Post, col(Post.id) == rowid).join(root, col(root.id) == col(Post.thread_id))
                     .where(text("posts_fts MATCH :match"), visible).params(match=match))
        if before is not None:
            statement = statement.where(rowid < before)
        statement = statement.order_by(rowid.desc())
    else:
        statement = (select(Post).join(root, col(root.id) == col(Post.thread_id)).where(
            text("to_tsvector('simple', posts.body) @@ plainto_tsquery('simple', :match)"), visible)
            .params(match=" ".join(terms)))
        if before is not None:
            statement = statement.where(col(Post.id) < before)
        statement = statement.order_by(col(Post.id).desc())
    return list(session.exec(statement.limit(limit)))
