"""Small helpers the notebooks share: showing library source and printing tables.

`say(text)` and `show_table(rows)` display Markdown with every "$" money-safe (`lifecycle.money`).
`show_source(fn)` prints a library function instead of pasting it into a notebook (the library stays the
single source of truth). Exercises are code the learner writes, checked by `lifecycle.exercises` (one module per
lesson); the course has no typed-in number quizzes.
"""
from __future__ import annotations

import inspect

from IPython.display import Markdown, display

from . import money


def show_source(obj) -> None:
    """Display the source of a library function or class as a highlighted code block."""
    display(Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```"))


def markdown_table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = ".4g") -> str:
    """Rows of dicts as a Markdown table (for display(Markdown(...)))."""
    if not rows:
        return "(empty)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def show_table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = ".4g") -> None:
    """Display rows as a Markdown table; every "$" is written so that no front end typesets money as maths."""
    display(Markdown(money.markdown(markdown_table(rows, columns, floatfmt))))


def say(text: str) -> None:
    """Display prose as Markdown, money-safe (`lifecycle.money.markdown`): for text with dollars and no maths."""
    display(Markdown(money.markdown(text)))
