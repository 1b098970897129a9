"""Tests of lifecycle.checks: bools are never integers, every bound holds, and every message names the argument,
the range and the value."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lifecycle.checks import (ArgumentTypeError, is_finite_number, is_int, is_number, require_bool, require_int,
                              require_number)


def test_bools_are_not_numbers_here():
    assert not is_int(True) and not is_number(False) and not is_finite_number(True)
    assert is_int(3) and is_int(np.int64(3)) and not is_int(3.0)
    assert is_number(2.5) and is_number(math.inf) and not is_finite_number(math.inf) and not is_number("1")


def test_require_int_bounds_and_messages():
    assert require_int("slots", 4, low=1) == 4 and require_int("n", None, optional=True) is None
    with pytest.raises(ValueError, match=r"^slots must be a positive integer, got 0$"):
        require_int("slots", 0, low=1)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 8\], got 9"):
        require_int("bits", 9, low=2, high=8)
    with pytest.raises(ArgumentTypeError, match=r"gamma must be an integer >= 0 \(draft tokens\), got True"):
        require_int("gamma", True, low=0, hint="draft tokens")
    with pytest.raises(ValueError, match=r"or None.*got 0; do this instead$"):
        require_int("capacity", 0, low=1, optional=True, fix="do this instead")
    with pytest.raises(ValueError, match=r"in \[0, 100,000\]"):
        require_int("max_new_tokens", 100_001, low=0, high=100_000)


def test_require_number_bounds_and_messages():
    assert require_number("t", 0, low=0) == 0 and require_number("p", 1.0, low=0, high=1, low_open=True) == 1.0
    for bad in (math.nan, math.inf, -0.5):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            require_number("temperature", bad, low=0)
    with pytest.raises(ValueError, match=r"top_p must be a finite number in \(0, 1\] or None"):
        require_number("top_p", 0.0, low=0, high=1, low_open=True, optional=True)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        require_number("fraction", 1.0, low=0, high=1, high_open=True)
    with pytest.raises(TypeError, match="rate"):  # a wrong type is a TypeError ...
        require_number("rate", "fast")
    with pytest.raises(ValueError, match="rate"):  # ... and a ValueError, for callers that catch bad arguments
        require_number("rate", "fast")


def test_require_bool():
    assert require_bool("stream", False) is False
    with pytest.raises(ArgumentTypeError, match="stream must be True or False"):
        require_bool("stream", 1)
