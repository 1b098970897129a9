"""Lesson 00's code exercises (the roofline, GPUs for the weights), and the rule that no exercise in the course is
a number typed in: every one is a function the learner writes, checked against the library."""
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lifecycle import roofline
from lifecycle.exercises import ExerciseError
from lifecycle.exercises.lesson00 import EXERCISES
from test_exercises_01_05 import blank, solution

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_solution_passes(name):
    assert EXERCISES[name](getattr(solution("00"), name)) is True


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_blank_is_not_attempted(name, capsys):
    assert EXERCISES[name](blank) is None
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("wrong,words", [
    (lambda i, p, b: max(p, i * b), "decode at batch 1"),             # the larger roof, not the smaller
    (lambda i, p, b: min(p, i / b), "decode at batch 1"),             # intensity divided by bandwidth
    (lambda i, p, b: i * b, "large matmul"),                          # no compute roof at all
])
def test_wrong_rooflines_raise(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        EXERCISES["attainable_flops"](wrong)


@pytest.mark.parametrize("wrong,words", [
    (lambda n, b, g: round(n * b / g), "7B model in int8"),           # rounds 0.0875 down to no GPU at all
    (lambda n, b, g: int(n * b // g) + 1, "1 trillion"),             # one too many on an exact multiple
    (lambda n, b, g: int(n * b / g), "Llama-2-70B"),                  # truncates 1.75 to 1
])
def test_wrong_gpu_counts_raise(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        EXERCISES["gpus_for_weights"](wrong)


def test_library_roofline_is_min_of_the_two_roofs():
    assert roofline.attainable_flops(2.0, 100.0, 10.0) == 20.0
    assert roofline.attainable_flops(50.0, 100.0, 10.0) == 100.0
    grid = roofline.attainable_flops(np.array([0.0, 5.0, 10.0, 20.0]), 100.0, 10.0)
    assert grid.tolist() == [0.0, 50.0, 100.0, 100.0]
    for bad in (0.0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="peak_flops"):
            roofline.attainable_flops(1.0, bad, 10.0)


def test_no_exercise_is_a_number_typed_in():
    """Every exercise is a function checked against the library: no `answer = None` cell, no check of a typed value."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            assert not re.search(r"^\s*answer(_\d+)?\s*=", cell.source, re.M), f"{path.name}: a typed-in answer"
            assert not re.search(r"(?<![\w.])check\(\s*[\"']", cell.source), f"{path.name}: a number quiz's check"
