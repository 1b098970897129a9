"""The order nbval runs the lessons in: name order, except that a lesson runs after the lessons it reads from."""
import json
from pathlib import Path

import pytest

from conftest import notebook_order

NOTEBOOKS = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def declared() -> dict[str, list[str]]:
    return {Path(p).stem: json.loads(Path(p).read_text())["metadata"].get("lifecycle", {}).get("reads_from", [])
            for p in NOTEBOOKS}


def test_lesson_09_runs_after_lesson_10_and_the_rest_in_name_order():
    order = [Path(p).stem for p in notebook_order(NOTEBOOKS, declared())]
    assert order.index("10_serve_millions") < order.index("09_lifecycle_costs")
    assert [s for s in order if s != "10_serve_millions"] == sorted(Path(p).stem for p in NOTEBOOKS
                                                                   if Path(p).stem != "10_serve_millions")


def test_every_declared_dependency_is_a_notebook():
    stems = {Path(p).stem for p in NOTEBOOKS}
    for name, reads in declared().items():
        assert set(reads) <= stems, f"{name} reads from a notebook that does not exist: {set(reads) - stems}"


def test_lesson_09_declares_that_it_reads_lesson_10():
    assert "10_serve_millions" in declared()["09_lifecycle_costs"]


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        notebook_order(["a.ipynb", "b.ipynb"], {"a": ["b"], "b": ["a"]})


def test_no_declarations_keep_name_order():
    assert notebook_order(["b.ipynb", "a.ipynb", "c.ipynb"], {}) == ["a.ipynb", "b.ipynb", "c.ipynb"]
