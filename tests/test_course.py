"""lifecycle.course.check: an unanswered exercise is not an error, a wrong answer is, a right one says so."""
import math

import pytest

from lifecycle.course import check
from lifecycle.exercises import ExerciseError


@pytest.mark.parametrize("blank", [None, ...])
def test_unanswered_reports_not_attempted(blank, capsys):
    assert check("exercise 1", blank, 42.0) is None
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("answer,expected,kw", [(42.0, 42.0, {}), (42.3, 42.0, {}), ("42", 42, {}),
                                                (160, 160, {"rel_tol": 0}), ("bf16", "bf16", {}),
                                                (1e-9, 0.0, {"abs_tol": 1e-6})])
def test_right_answer_is_correct(answer, expected, kw, capsys):
    assert check("exercise", answer, expected, **kw) is True
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("answer,expected,kw,words", [
    (50.0, 42.0, {}, "too high"), (40.0, 42.0, {}, "too low"), (161, 160, {"rel_tol": 0}, "exactly"),
    (math.nan, 1.0, {}, "not a number"), ("fp16", "bf16", {}, "not the answer"),
    ("forty-two", 42.0, {}, "should be a number"), ([42], 42.0, {}, "should be a number")])
def test_wrong_answer_raises(answer, expected, kw, words):
    with pytest.raises(ExerciseError, match=words) as info:
        check("exercise 2", answer, expected, **kw)
    assert str(info.value).startswith("exercise 2: ")
    assert repr(expected) not in str(info.value) or repr(expected) == repr(answer)  # the answer is not given away


def test_tolerance_is_stated():
    with pytest.raises(ExerciseError, match=r"within 2%"):
        check("x", 1.1, 1.0, rel_tol=0.02)


def test_committed_notebooks_leave_typed_answers_blank():
    """nbval runs the notebooks as committed: every `answer = ...` must be None (or ...), so no check raises."""
    import re
    from pathlib import Path

    import nbformat

    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                m = re.match(r"\s*(answer(?:_\d+)?)\s*=\s*([^#]*)", line)
                if m:
                    assert m.group(2).strip() in ("None", "..."), f"{path.name}: {line.strip()!r} is not blank"
