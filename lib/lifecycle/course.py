"""Small helpers the notebooks share: showing library source, checking exercises, printing tables.

`show_source(fn)` prints a library function instead of pasting it into a notebook (the library stays the
single source of truth). `check(...)` grades an exercise without ever raising, so a notebook committed with
its exercises unanswered still runs top to bottom.
"""
from __future__ import annotations

import inspect
import math

from IPython.display import Markdown, display


def show_source(obj) -> None:
    """Display the source of a library function or class as a highlighted code block."""
    display(Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```"))


def check(name: str, answer, expected, rel_tol: float = 1e-2, abs_tol: float = 0.0) -> bool | None:
    """Grade one exercise: None = not attempted yet, True/False = right/wrong. Prints the verdict; never raises."""
    if answer is None or answer is ...:
        print(f"{name}: not attempted yet. Replace None with your answer and run the cell again.")
        return None
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            ok = math.isclose(float(answer), float(expected), rel_tol=rel_tol, abs_tol=abs_tol)
        except (TypeError, ValueError):
            ok = False
    else:
        ok = answer == expected
    print(f"{name}: {'correct' if ok else 'not quite'} (you: {answer!r}{'' if ok else f'; expected: {expected!r}'})")
    return ok


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
    display(Markdown(markdown_table(rows, columns, floatfmt)))
