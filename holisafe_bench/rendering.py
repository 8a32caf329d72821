"""HTML pages from the Jinja2 templates shipped in holisafe_bench/templates/ (package
data). Autoescape is on: every value from data is escaped where it is written; only our
own scripts, shipped beside the templates, are inlined as they are."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("holisafe_bench", "templates"),
        autoescape=True,
        # Block tags on lines of their own leave no blank lines, so a template can be laid
        # out readably and still give the compact pages (and their golden bytes) as before.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails, not renders empty
    )


def asset(name: str) -> Markup:
    """A script shipped with the templates, inlined verbatim: it is ours, not data, and
    escaping it would break its quotes. Read raw, not rendered as a template."""
    env = environment()
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    return Markup(source)


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(asset=asset, **context)
