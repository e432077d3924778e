"""How commands print: JSON with ``--json``, an aligned table otherwise."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click


def emit(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    """JSON to stdout, or an aligned table (lists) / key: value lines (one object)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            if key == "thread":
                continue
            click.echo(f"{key.ljust(width)}  {format_cell(value, wrap=True)}")
        return
    click.echo(table(data, columns or (list(data[0]) if data else [])))


def format_cell(value: Any, wrap: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    text = str(value)
    return text if wrap else " ".join(text.split())


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` at a word boundary, with an ellipsis; a first word longer
    than the column is cut inside it, as nothing else fits."""
    if len(text) <= width:
        return text
    cut = text[:width - 1]
    if text[width - 1] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def table(rows: list[dict[str, Any]], columns: Sequence[str], max_width: int = 60) -> str:
    if not rows:
        return "(none)"
    cells = [[shorten(format_cell(row.get(c)), max_width) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date or time: {value!r}", param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def plural(count: int, word: str) -> str:
    """``1 user``, ``2 users``, ``1 address``, ``0 addresses``."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {word}{'es' if word.endswith(('s', 'sh', 'ch', 'x')) else 's'}"
