"""Shared fixtures: a small corpus written by the tests themselves (no fetch), tiny models, an isolated cache.

Every test runs with its own course cache ($LIFECYCLE_CACHE in a temporary folder), so the results ledger and
claims of the learner are never touched. The trained models and the fetched corpus are shared with the real
cache through links, so a test that needs the teacher loads it instead of training it again.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifecycle.data import CharTokenizer, Corpus, cache_dir, split
from lifecycle.model import GPT, preset

# A few original lines, repeated with variations, so a tiny model has something learnable.
LINES = [
    "The tide comes in and the tide goes out.",
    "A lamp is lit at dusk; the lamp is out by dawn.",
    "Count the boats, then count them once again.",
    "What the river keeps, the river gives back.",
]


@pytest.fixture
def small_text() -> str:
    return "\n".join(f"{i}: {LINES[i % len(LINES)]}" for i in range(600)) + "\n"


@pytest.fixture
def small_corpus(small_text) -> Corpus:
    tok = CharTokenizer.from_text(small_text)
    ids = torch.tensor(tok.encode(small_text), dtype=torch.long)
    train, val = split(ids, val_fraction=0.1, chunk=256)
    return Corpus(tok, train, val)


@pytest.fixture
def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(preset("test")).eval()


REAL_CACHE = cache_dir()  # resolved before any test changes $LIFECYCLE_CACHE


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """A private cache per test; models/ and corpus/ link to the real ones (shared, trained once)."""
    private = tmp_path / "cache"
    private.mkdir()
    for shared in ("models", "corpus"):
        (REAL_CACHE / shared).mkdir(parents=True, exist_ok=True)
        (private / shared).symlink_to(REAL_CACHE / shared, target_is_directory=True)
    monkeypatch.setenv("LIFECYCLE_CACHE", str(private))
    return private


def notebook_order(paths: list[str], reads_from: dict[str, list[str]]) -> list[str]:
    """The notebooks in name order, except that one runs after every lesson whose ledger entries it reads.

    `reads_from[name]` lists notebook stems (e.g. "10_serve_millions") that `name` reads; a lesson declares them in its
    notebook metadata as {"lifecycle": {"reads_from": [...]}}. Lesson 09's cost model reads lesson 10's measured
    stack, so under nbval lesson 10 runs first and lesson 09 shows the measurement instead of its stand-in."""
    stems = {Path(p).stem: p for p in paths}
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(stem: str) -> None:
        if stems[stem] in ordered:
            return
        if stem in visiting:
            raise ValueError(f"notebooks read from each other in a cycle through {stem}")
        visiting.add(stem)
        for before in reads_from.get(stem, []):
            if before in stems:
                visit(before)
        visiting.discard(stem)
        ordered.append(stems[stem])

    for stem in sorted(stems):
        visit(stem)
    return ordered


def pytest_collection_modifyitems(session, config, items):
    """Run each notebook's cells after the notebooks it reads from (see `notebook_order`); other items keep order."""
    import json

    notebooks = list(dict.fromkeys(str(item.path) for item in items if str(item.path).endswith(".ipynb")))
    if not notebooks:
        return
    reads = {Path(p).stem: json.loads(Path(p).read_text())["metadata"].get("lifecycle", {}).get("reads_from", [])
             for p in notebooks}
    rank = {p: i for i, p in enumerate(notebook_order(notebooks, reads))}
    first = next(i for i, item in enumerate(items) if str(item.path) in rank)
    cells = [item for item in items if str(item.path) in rank]
    rest = [item for item in items if str(item.path) not in rank]
    cells.sort(key=lambda item: rank[str(item.path)])  # stable: each notebook's cells keep their order
    items[:] = rest[:first] + cells + rest[first:]


NOTEBOOK_BUDGET_S = 15 * 60  # reported, not asserted: wall time depends on the machine


def pytest_terminal_summary(terminalreporter):
    """Print how long each notebook took under nbval (the course's time budget is checked by eye in CI logs)."""
    per_notebook: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if ".ipynb" in nodeid and getattr(report, "when", "call") == "call":
                name = nodeid.split("::")[0]
                per_notebook[name] = per_notebook.get(name, 0.0) + getattr(report, "duration", 0.0)
    if per_notebook:
        terminalreporter.section("notebook times")
        for name, seconds in sorted(per_notebook.items()):
            terminalreporter.write_line(f"{seconds:8.1f} s  {name}")
        total = sum(per_notebook.values())
        verdict = "within" if total <= NOTEBOOK_BUDGET_S else "OVER"
        terminalreporter.write_line(f"{total:8.1f} s  total: {verdict} the course's budget of {NOTEBOOK_BUDGET_S:.0f} s "
                                    "(all notebooks from a clean clone on 2 CPU cores)")
