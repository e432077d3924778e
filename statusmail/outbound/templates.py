"""Rendering mail bodies with jinja2.

Text templates are rendered without autoescape; HTML templates with autoescape on, so
user text reaches HTML escaped unless a template explicitly passes it through
:func:`statusmail.outbound.safehtml.linkify` (which escapes first). Every template gets
an explicit context and ``StrictUndefined``: a missing variable is an error, not an
empty string in someone's inbox. Headers are never set from templates.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2

from statusmail.outbound.safehtml import linkify


@functools.cache
def environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("statusmail", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["linkify"] = linkify
    return env


def render_text(name: str, context: dict[str, Any]) -> str:
    return environment(False).get_template(f"{name}.txt.j2").render(context)


def render_html(name: str, context: dict[str, Any]) -> str:
    return environment(True).get_template(f"{name}.html.j2").render(context)
