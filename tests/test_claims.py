"""The claims table computes its verdicts: flips at every bound, properties, and a scan for typed verdicts."""
from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import results
from lifecycle.verdicts import (CONTRADICTED, NOT_MEASURABLE, REPRODUCED, SEED_CLAIMS, UNDER_ASSUMPTIONS, VERDICTS,
                                Assumption, Range, band, coverage, judge)

ROOT = Path(__file__).resolve().parents[1]
SEED_PRICE = Assumption("price per query", 0.01, "$", "the seed")
EPS = 1e-9


# ---- every verdict flips as the value crosses each bound ----

@pytest.mark.parametrize("rng", [Range(0.001, 0.10, "$/query"), Range(20, 40, "%"), Range(-5, 5, "x")])
def test_closed_range_flips_at_both_bounds(rng):
    width = rng.high - rng.low
    for bound, outside in ((rng.low, rng.low - width * 1e-3), (rng.high, rng.high + width * 1e-3)):
        assert judge(rng, bound).verdict == REPRODUCED  # bounds are inclusive
        assert judge(rng, bound, [SEED_PRICE]).verdict == UNDER_ASSUMPTIONS
        assert judge(rng, outside).verdict == CONTRADICTED
        assert judge(rng, outside, [SEED_PRICE]).verdict == CONTRADICTED


def test_open_high_end_flips_only_at_the_low_end():
    rng = Range(1.0, None, "x")
    assert judge(rng, 1.0).verdict == REPRODUCED and judge(rng, 1e300).verdict == REPRODUCED
    j = judge(rng, 1.0 - 1e-6)
    assert j.verdict == CONTRADICTED and j.direction == "below" and j.bound == 1.0


def test_open_low_end_flips_only_at_the_high_end():
    rng = Range(None, 8, "GPUs")
    assert judge(rng, 8).verdict == REPRODUCED and judge(rng, -1e300).verdict == REPRODUCED
    j = judge(rng, 8.01, [SEED_PRICE])
    assert j.verdict == CONTRADICTED and j.direction == "above" and j.bound == 8


def test_contradiction_says_how_far_and_which_way():
    j = judge(Range(0.001, 0.10, "$/query"), 1e-5)
    assert j.direction == "below" and math.isclose(j.factor, 0.01) and "100× below" in j.explanation
    j = judge(Range(20, 40, "%"), 89.0)
    assert j.direction == "above" and math.isclose(j.difference, 49.0) and "49 percentage points above" in j.explanation


def test_unmeasurable_needs_a_reason_and_no_value():
    j = judge(Range(1, 8, "GPUs"), None, unmeasurable="no cluster here")
    assert j.verdict == NOT_MEASURABLE and "no cluster here" in j.explanation
    with pytest.raises(ValueError, match="unmeasurable"):
        judge(Range(1, 8, "GPUs"), None)
    with pytest.raises(ValueError, match="one or the other"):
        judge(Range(1, 8, "GPUs"), 2.0, unmeasurable="why")


def test_interval_flips_from_noise_to_verdict_at_each_bound():
    rng = Range(1.0, 2.0, "x")
    assert judge(rng, 1.5, interval=(1.1, 1.9)).verdict == REPRODUCED
    assert judge(rng, 1.1, interval=(0.9, 1.3)).verdict == NOT_MEASURABLE  # straddles the floor
    assert judge(rng, 1.9, interval=(1.7, 2.1)).verdict == NOT_MEASURABLE  # straddles the ceiling
    assert judge(rng, 0.8, interval=(0.7, 0.95)).verdict == CONTRADICTED
    assert judge(rng, 1.5, interval=(0.5, 2.5)).verdict == NOT_MEASURABLE  # wider than the range
    with pytest.raises(ValueError, match="interval"):
        judge(rng, 1.5, interval=(1.6, 1.9))


@pytest.mark.parametrize("bad", [dict(low=None, high=None), dict(low=2, high=1), dict(low=math.nan, high=1),
                                 dict(low=1, high=2, unit="")])
def test_bad_ranges_are_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="Range"):
        Range(**({"unit": "x"} | bad))


def test_assumption_needs_a_source():
    with pytest.raises(ValueError, match="source"):
        Assumption("GPU price", 2.0, "$/h", "")


def test_band_finds_where_a_claim_would_hold():
    got = band(Range(20, 40, "%"), lambda x: 100 * 10 / (10 + x), 0.1, 1000)  # share falls as x grows
    assert got is not None and 15 - 0.5 < got[0] < 15 + 0.5 and 40 - 1 < got[1] < 40 + 1
    assert band(Range(200, None, "%"), lambda x: 50.0, 1, 10) is None


# ---- properties ----

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@given(a=finite, b=finite, v=finite, assumed=st.booleans())
def test_verdict_matches_containment(a, b, v, assumed):
    rng = Range(min(a, b), max(a, b), "u")
    j = judge(rng, v, [SEED_PRICE] if assumed else [])
    inside = min(a, b) <= v <= max(a, b)
    assert j.verdict == ((UNDER_ASSUMPTIONS if assumed else REPRODUCED) if inside else CONTRADICTED)
    if not inside:
        assert (j.direction == "below") == (v < min(a, b)) and j.explanation


@given(low=finite, v=finite, open_high=st.booleans())
def test_half_open_ranges_check_only_their_one_end(low, v, open_high):
    rng = Range(low, None, "u") if open_high else Range(None, low, "u")
    inside = v >= low if open_high else v <= low
    assert (judge(rng, v).verdict == REPRODUCED) == inside


@given(lo=finite, hi=finite, width=st.floats(min_value=0, max_value=1e6))
def test_an_interval_never_gets_a_firmer_verdict_than_its_ends(lo, hi, width):
    rng = Range(min(lo, hi), max(lo, hi), "u")
    mid = (lo + hi) / 2
    j = judge(rng, mid, interval=(mid - width, mid + width))
    ends = {judge(rng, mid - width).verdict, judge(rng, mid + width).verdict}
    if ends == {REPRODUCED} or ends == {CONTRADICTED} and rng.contains(mid):
        # both ends agree inside; or both are outside on opposite sides of the range (the interval spans it)
        assert j.verdict == (REPRODUCED if ends == {REPRODUCED} else NOT_MEASURABLE)
    elif ends == {CONTRADICTED}:
        assert j.verdict == CONTRADICTED
    else:
        assert j.verdict == NOT_MEASURABLE  # one end in, one out: inside the noise


# ---- storage ----

def test_check_claim_stores_range_value_assumptions_and_verdict(tmp_path):
    path = tmp_path / "claims.json"
    row = results.check_claim("inference.cost_per_query", lesson="03_inference", claim="$0.001-$0.10 per query",
                              stated=Range(0.001, 0.10, "$/query"), value=2e-5,
                              assumptions=[Assumption("GPU price", 2.0, "$/h", "list price")], path=path)
    assert row["verdict"] == CONTRADICTED and row["range"] == {"low": 0.001, "high": 0.10, "unit": "$/query"}
    (stored,) = results.claims(path)
    assert stored["id"] == "inference.cost_per_query" and stored["assumptions"][0]["source"] == "list price"
    (shown,) = results.claims_display([stored])
    assert "list price" in shown["assumptions"] and shown["verdict"] == CONTRADICTED and shown["range"]


# ---- the scan: no notebook and no library file types a verdict ----

VERDICT_WORDS = {v.lower() for v in VERDICTS + results.LEGACY_VERDICTS}
# only these module-level names may spell the vocabulary out: the vocabulary itself
VOCABULARY_NAMES = {"REPRODUCED", "UNDER_ASSUMPTIONS", "CONTRADICTED", "NOT_MEASURABLE", "LEGACY_VERDICTS"}


def _typed_verdicts(source: str, where: str) -> list[str]:
    """Every string literal in `source` that spells a verdict (or passes/assigns a literal `verdict`)."""
    with warnings.catch_warnings():  # notebook code may hold escapes like "\$" that Python warns about
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in VOCABULARY_NAMES
                                                for t in node.targets):
            allowed |= {id(n) for n in ast.walk(node.value)}
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            allowed.add(id(node.value))  # a docstring explains the vocabulary; it passes nothing anywhere
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed:
            text = node.value.strip().strip(".:;*_").lower()
            if text in VERDICT_WORDS or any(len(w.split()) > 1 and w in text for w in VERDICT_WORDS):
                found.append(f"{where}:{node.lineno}: {node.value!r}")
        targets = []
        if isinstance(node, ast.keyword) and node.arg == "verdict":
            targets = [node.value]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any("verdict" in ast.unparse(t).lower() for t in names):
                targets = [node.value]
        for value in targets:
            if value is not None and id(value) not in allowed and any(isinstance(n, (ast.Constant, ast.JoinedStr))
                                         and isinstance(getattr(n, "value", ""), str) for n in ast.walk(value)):
                found.append(f"{where}:{node.lineno}: verdict given as a literal: {ast.unparse(value)[:80]}")
    return found


def _notebook_code(path: Path) -> str:
    cells = nbformat.read(path, as_version=4).cells
    lines = []
    for cell in cells:
        if cell.cell_type == "code":
            # IPython magics and shell escapes are not Python: blank them, keep line numbers per cell honest
            lines += ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in cell.source.splitlines()] + [""]
    return "\n".join(lines)


def test_the_scanner_catches_typed_verdicts():
    assert _typed_verdicts('f(verdict="reproduced")', "t")
    assert _typed_verdicts('verdict = "contradicted" if x > 1 else "reproduced"', "t")
    assert _typed_verdicts('row = {"verdict": ok and "holds under stated assumptions"}', "t")
    assert _typed_verdicts('v = "reproduced under stated assumptions (see table)"', "t")
    assert _typed_verdicts('f(verdict=f"{x}")', "t")  # a formatted string is still a typed verdict
    assert not _typed_verdicts('f(verdict=judge(r, v).verdict)', "t")
    assert not _typed_verdicts('REPRODUCED = "reproduced"', "t")
    assert not _typed_verdicts('print("the claim was reproduced by others")', "t")
    assert not _typed_verdicts('"""Verdicts: reproduced under stated assumptions, contradicted."""', "t")


def test_no_notebook_or_library_file_types_a_verdict():
    found = []
    for path in sorted((ROOT / "lib" / "lifecycle").rglob("*.py")):
        found += _typed_verdicts(path.read_text(), str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        found += _typed_verdicts(_notebook_code(path), str(path.relative_to(ROOT)))
    assert not found, "verdicts must come from results.check_claim, not a string:\n" + "\n".join(found)


# ---- every checkable claim of the seed is checked by some lesson ----

def _recorded_ids() -> set[str]:
    """Strings in the notebook cells that call check_claim: the claim ids they record (directly or via a loop)."""
    ids = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "check_claim" not in cell.source:
                continue
            source = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in cell.source.splitlines())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
            ids |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return ids


def test_every_seed_claim_is_checked_by_a_notebook():
    recorded = _recorded_ids()
    missing = [(text, wanted) for text, _, ids in SEED_CLAIMS for wanted in ids
               if not (any(r.startswith(wanted) for r in recorded) if wanted.endswith(".") else wanted in recorded)]
    assert not missing, f"seed claims without a check_claim call in any notebook: {missing}"


def test_coverage_lists_every_seed_claim_and_what_is_missing():
    rows = [{"id": "lifecycle.training_share", "verdict": CONTRADICTED, "range": {}},
            {"id": "distillation.smaller_faster", "verdict": REPRODUCED, "range": {}},
            {"id": "caching.redundant_compute", "verdict": "holds under stated assumptions"}]  # a legacy row
    table = coverage(rows)
    assert [t["seed claim"] for t in table] == [text for text, _, _ in SEED_CLAIMS]
    by = {t["seed claim"]: t for t in table}
    assert by["lifecycle: training 20-40% of the total cost"]["verdicts"] == CONTRADICTED
    assert by["distillation: a smaller, faster model mimics a larger one"]["rows"] == 1  # matched by its prefix
    assert by["caching: stored results avoid redundant computation"]["rows"] == 0  # legacy rows do not count


def test_a_subnormal_value_below_a_bound_is_judged_not_crashed():
    """value ÷ bound underflows to 0 for a subnormal value: the verdict still comes out, with a difference."""
    j = judge(Range(2.0, None, "u"), 5e-324)
    assert j.verdict == CONTRADICTED and "below" in j.explanation
