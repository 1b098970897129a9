"""Argument checks shared by the whole library: one way to say "an integer, not a bool, in this range".

Python's `bool` is a subclass of `int`, so `isinstance(True, int)` holds and `max_new_tokens=True` would pass a
naive check as 1. Every check here refuses bools, and every error names the argument, the range it must be in, what
it means where a reminder helps, and the value it got:

    require_int("slots", slots, low=1)                     # ValueError: slots must be a positive integer, got 0
    require_number("temperature", t, low=0, hint="0 = greedy")
    require_number("top_p", p, low=0, high=1, low_open=True, optional=True, hint="None: no nucleus filter")

A value of the wrong type raises `ArgumentTypeError`, which is both a TypeError and a ValueError, so the one
`except ValueError` that the HTTP layer (and every earlier caller) uses for a bad argument still catches it. A value
out of range raises ValueError. Each check returns the value, so it can be used inline.
"""
from __future__ import annotations

import math
import numbers


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a bool where an integer was asked for, a string for a number, ...)."""


def is_int(x) -> bool:
    """Whether `x` is an integer (int, numpy integer, ...) and not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_number(x) -> bool:
    """Whether `x` is a real number (int, float, numpy scalar, ...) and not a bool; it may be inf or nan."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def is_finite_number(x) -> bool:
    """Whether `x` is a real number, not a bool, and neither inf nor nan."""
    return is_number(x) and math.isfinite(x)


def _num(x) -> str:
    """A bound as people write it: 100,000 and 1,000,000 with separators, 0.5 and 1e-08 as they are."""
    if is_int(x) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    return f"{x:g}"


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    """" >= 1", " in [0, 1)", " <= 8", or "" for no bound."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f" {'<' if high_open else '<='} {_num(high)}"
    return ""


def _fail(error: type[Exception], name: str, kind: str, value, low, high, low_open: bool, high_open: bool,
          hint: str, optional: bool, fix: str):
    if kind == "an integer" and low == 1 and high is None:
        kind, low = "a positive integer", None  # the usual words for >= 1
    text = f"{name} must be {kind}{_range_text(low, high, low_open, high_open)}"
    text += " or None" if optional else ""
    text += f" ({hint})" if hint else ""
    text += f", got {value!r}"
    text += f"; {fix}" if fix else ""
    raise error(text)


def _in_range(value, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)


def require_int(name: str, value, low: int | None = None, high: int | None = None, *, hint: str = "",
                optional: bool = False, fix: str = "") -> int | None:
    """`value` if it is an integer (not a bool) in [low, high] (either bound may be None), else raise.

    optional: None is accepted (and returned). hint: what the value means, shown in parentheses; fix: what to do
    instead, shown after the value.
    """
    if optional and value is None:
        return None
    args = (name, "an integer", value, low, high, False, False, hint, optional, fix)
    if not is_int(value):
        _fail(ArgumentTypeError, *args)
    if not _in_range(value, low, high, False, False):
        _fail(ValueError, *args)
    return value


def require_number(name: str, value, low: float | None = None, high: float | None = None, *,
                   low_open: bool = False, high_open: bool = False, hint: str = "", optional: bool = False,
                   fix: str = "") -> float | None:
    """`value` if it is a finite real number (not a bool) between low and high, else raise.

    low_open / high_open: the bound itself is excluded (low < value instead of low <= value). optional, hint and
    fix as for require_int.
    """
    if optional and value is None:
        return None
    args = (name, "a finite number", value, low, high, low_open, high_open, hint, optional, fix)
    if not is_number(value):
        _fail(ArgumentTypeError, *args)
    if not math.isfinite(value) or not _in_range(value, low, high, low_open, high_open):
        _fail(ValueError, *args)
    return value


def require_positive(name: str, value, *, hint: str = "") -> float:
    """`value` as a float if it is a finite number > 0, else raise (require_number)."""
    return float(require_number(name, value, low=0, low_open=True, hint=hint))


def require_non_negative(name: str, value, *, hint: str = "") -> float:
    """`value` as a float if it is a finite number >= 0, else raise (require_number)."""
    return float(require_number(name, value, low=0, hint=hint))


def require_fraction(name: str, value, *, zero_ok: bool = False, one_ok: bool = True) -> float:
    """`value` as a float if it is a fraction in (0, 1] (zero_ok: [0, ...; one_ok=False: ..., 1)), else raise with
    the reminder that a percentage is not a fraction."""
    return float(require_number(name, value, low=0, high=1, low_open=not zero_ok, high_open=not one_ok,
                                hint="a fraction, not a percentage: 35% is 0.35"))


def require_bool(name: str, value, *, hint: str = "") -> bool:
    """`value` if it is True or False (not 0, 1 or a string), else raise ArgumentTypeError."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False{f' ({hint})' if hint else ''}, got {value!r}")
    return value
