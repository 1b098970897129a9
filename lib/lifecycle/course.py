"""Small helpers the notebooks share: showing library source, checking exercises, printing tables.

`say(text)` and `show_table(rows)` display Markdown with every "$" money-safe (`lifecycle.money`).
`show_source(fn)` prints a library function instead of pasting it into a notebook (the library stays the
single source of truth). `check(...)` grades a typed-in answer: an unanswered one (None or ...) only prints "not
attempted", so a notebook committed with its exercises unanswered still runs top to bottom; a right one prints
"correct"; a wrong one raises `lifecycle.exercises.ExerciseError`. Code exercises, where the learner writes a
function, are checked by `lifecycle.exercises` (one module per lesson).
"""
from __future__ import annotations

import inspect
import math

from IPython.display import Markdown, display

from . import money
from .checks import is_number
from .exercises import ExerciseError


def show_source(obj) -> None:
    """Display the source of a library function or class as a highlighted code block."""
    display(Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```"))


def check(name: str, answer, expected, rel_tol: float = 1e-2, abs_tol: float = 0.0) -> bool | None:
    """Grade one typed-in answer against `expected` (numbers within rel_tol/abs_tol, anything else by ==).

    Returns None (and prints "not attempted") when `answer` is None or `...`, returns True (and prints "correct")
    when it is right, and raises `ExerciseError` when it is wrong: the message says whether a number is too high
    or too low, but not the expected value, so the learner can try again.
    """
    if answer is None or answer is ...:
        print(f"{name}: not attempted yet. Replace None with your answer and run the cell again.")
        return None
    if is_number(expected):
        try:
            got = float(answer)
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: the answer should be a number, got {answer!r} "
                                f"({type(answer).__name__})") from None
        if not math.isclose(got, float(expected), rel_tol=rel_tol, abs_tol=abs_tol):
            side = "too high" if got > expected else "too low" if got < expected else "not a number"
            tolerance = ("exactly" if not (rel_tol or abs_tol) else
                         f"within {100 * rel_tol:g}%" + (f" or ±{abs_tol:g}" if abs_tol else ""))
            raise ExerciseError(f"{name}: not quite: {answer!r} is {side} (it must match {tolerance}). "
                                "Check the units and the formula, then run the cell again.")
    elif answer != expected:
        raise ExerciseError(f"{name}: not quite: {answer!r} is not the answer. Try again.")
    print(f"{name}: correct (you: {answer!r})")
    return True


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
