"""The HTML pages (feedback, class report) as Jinja2 templates in this folder, autoescaped:
the code passes data, the templates own the markup, and every string a student's code could
have produced (messages, notes, ids) is escaped on the way in."""
from __future__ import annotations

from functools import lru_cache

MAX_MESSAGE = 2000  # characters of one message shown; a student's exception may be huge


def fmt(x: float) -> str:
    return f"{x:g}"


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "\u2026"


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("autograder.reports", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=fmt, clip=clip)
    return env


def render(name: str, **data) -> str:
    return environment().get_template(name).render(**data)
