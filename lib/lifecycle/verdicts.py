"""Verdicts on the seed's claims, computed from a stated range and a value: never typed by hand.

A claim of the seed ("$0.001-$0.10 per query") becomes a `Range`; what a lesson measured or computed becomes a
value in the range's unit; whatever the computation needed beyond this machine (a GPU price, a model size) becomes
an `Assumption` with its source. `judge(...)` then picks one word from a fixed vocabulary:

    reproduced                            inside the range, measured here, no outside inputs
    reproduced under stated assumptions   inside the range, given the listed assumptions
    contradicted                          outside the range (the explanation says by how much and which way)
    not measurable here                   no value could be measured (the reason is required), or the value's
                                          interval straddles a bound, so the difference is inside the noise

Bounds are inclusive; either end (not both) may be open (`None`). Pure functions, no I/O: `results.check_claim`
stores the judgment in the claims table.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .checks import is_finite_number
from .money import fixed, usd

REPRODUCED = "reproduced"
UNDER_ASSUMPTIONS = "reproduced under stated assumptions"
CONTRADICTED = "contradicted"
NOT_MEASURABLE = "not measurable here"
VERDICTS = (REPRODUCED, UNDER_ASSUMPTIONS, CONTRADICTED, NOT_MEASURABLE)


def _finite(x) -> bool:
    return is_finite_number(x)


def fmt(x: float) -> str:
    """A number for a table cell: 3 significant figures in fixed point ("0.00001", "2,230", "3.65 million")."""
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1e15 or a < 1e-7:  # FLOP counts and the like: no one reads 25 zeros
        return f"{x:.3g}"
    for factor, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if a >= factor:
            return f"{fixed(x / factor, 3)} {word}"
    return fixed(x, 3)


def show(x: float, unit: str) -> str:
    """A value with its unit: money as people write it ("$60 million", "$0.00001/query"), the rest as `fmt`."""
    if unit.startswith("$"):
        return f"{usd(x)}{unit[1:]}"
    if unit in ("%", "×"):
        return f"{fmt(x)}{unit}"
    return f"{fmt(x)} {unit}"


@dataclass(frozen=True)
class Range:
    """What the seed states, as numbers: low <= value <= high in `unit`; `None` marks an open end."""

    low: float | None
    high: float | None
    unit: str

    def __post_init__(self):
        if self.low is None and self.high is None:
            raise ValueError("a Range needs at least one end: give low, high or both (None marks an open end)")
        for name in ("low", "high"):
            end = getattr(self, name)
            if end is not None and not _finite(end):
                raise ValueError(f"Range.{name} must be a finite number or None, got {end!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"Range.low ({self.low}) is above Range.high ({self.high}): swap them")
        if not isinstance(self.unit, str) or not self.unit:
            raise ValueError("a Range needs a unit (e.g. '$/query', 'GPUs', 's'); use '×' for a ratio")

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def text(self) -> str:
        if self.low is None:
            return f"<= {show(self.high, self.unit)}"
        if self.high is None:
            return f">= {show(self.low, self.unit)}"
        if self.low == self.high:
            return f"exactly {show(self.low, self.unit)}"
        if self.unit.startswith("$"):
            return f"{show(self.low, self.unit)} to {show(self.high, self.unit)}"
        return f"{fmt(self.low)}–{show(self.high, self.unit)}"


@dataclass(frozen=True)
class Assumption:
    """An input the computation took from outside this machine, with where it comes from."""

    name: str
    value: float | str
    unit: str
    source: str

    def __post_init__(self):
        if not self.name or not self.source:
            raise ValueError(f"an Assumption needs a name and a source (who says so), got {self!r}")
        if not (isinstance(self.value, str) or _finite(self.value)):
            raise ValueError(f"Assumption {self.name!r}: value must be a finite number or a string, "
                             f"got {self.value!r}")

    def text(self) -> str:
        value = show(self.value, self.unit) if _finite(self.value) else f"{self.value} {self.unit}"
        return f"{self.name} = {value.strip()} ({self.source})"


@dataclass(frozen=True)
class Judgment:
    """The verdict and a sentence, computed from the range and the value, that says why."""

    verdict: str
    explanation: str
    # for a contradicted value: how far outside, which way, and the bound it crossed
    direction: str | None = None   # "above" | "below"
    bound: float | None = None
    factor: float | None = None    # value / bound when both are positive
    difference: float | None = None  # value - bound

    def as_dict(self) -> dict:
        return asdict(self)


def _outside(value: float, rng: Range) -> tuple[str, float]:
    """Which side of the range a value lies on, and the bound it crossed."""
    if rng.low is not None and value < rng.low:
        return "below", rng.low
    return "above", rng.high


def _how_far(value: float, bound: float, unit: str) -> tuple[float | None, str]:
    """(value ÷ bound, "how far and which way"): a ratio when it is large, else a difference in the unit."""
    factor = value / bound if value > 0 and bound > 0 else None
    if factor is not None and not (0 < factor < math.inf):  # a subnormal over a bound underflows to 0
        factor = None
    diff = value - bound
    way = "above" if diff > 0 else "below"
    if unit == "%":  # shares: distances in percentage points read better than ratios
        return factor, f"{fmt(abs(diff))} percentage points {way}"
    if factor is not None and (factor >= 1.5 or factor <= 1 / 1.5):
        return factor, f"{fmt(max(factor, 1 / factor))}× {way}"
    return factor, f"{fmt(abs(diff)) if unit == '×' else show(abs(diff), unit)} {way}"


def judge(rng: Range, value: float | None, assumptions: tuple[Assumption, ...] | list = (), *,
          interval: tuple[float, float] | None = None, unmeasurable: str | None = None) -> Judgment:
    """The verdict on `value` (in `rng.unit`) against the seed's range.

    `interval=(lo, hi)`: the value's spread (e.g. over seeds); the verdict holds only if the whole interval agrees.
    `unmeasurable`: why no value exists on this machine (then `value` must be None).
    """
    if not isinstance(rng, Range):
        raise TypeError(f"judge needs a Range for the seed's claim, got {type(rng).__name__}")
    assumptions = tuple(assumptions)
    if not all(isinstance(a, Assumption) for a in assumptions):
        raise TypeError("assumptions must be Assumption(name, value, unit, source) objects")
    if value is None:
        if not unmeasurable:
            raise ValueError("no value given: pass unmeasurable='why it cannot be measured here'")
        return Judgment(NOT_MEASURABLE, f"no value: {unmeasurable}")
    if unmeasurable:
        raise ValueError("a value was given and also a reason it is unmeasurable: give one or the other")
    if not _finite(value):
        raise ValueError(f"the value must be a finite number in {rng.unit}, got {value!r}")
    lo, hi = (value, value) if interval is None else interval
    if not (_finite(lo) and _finite(hi) and lo <= value <= hi):
        raise ValueError(f"interval {interval!r} must be finite numbers (lo, hi) with lo <= value <= hi")
    shown = show(value, rng.unit) + ("" if interval is None else f" (spread {fmt(lo)} to {fmt(hi)})")
    if rng.contains(lo) and rng.contains(hi):
        inside = f"{shown} matches the seed's {show(rng.low, rng.unit)}" if rng.low == rng.high else \
            f"{shown} is inside {rng.text()}"
        if assumptions:
            return Judgment(UNDER_ASSUMPTIONS, f"{inside}, given {', '.join(a.name for a in assumptions)}")
        return Judgment(REPRODUCED, f"{inside}, with no outside assumptions")
    if rng.contains(lo) or rng.contains(hi) or _outside(lo, rng) != _outside(hi, rng):
        # the spread reaches both inside and outside the range: the data cannot decide
        return Judgment(NOT_MEASURABLE, f"{shown} straddles a bound of {rng.text()}: "
                                        "the difference is inside the noise of this measurement")
    direction, bound = _outside(value, rng)
    factor, how_far = _how_far(value, bound, rng.unit)
    side = "floor" if direction == "below" else "ceiling"
    return Judgment(CONTRADICTED, f"{shown} is {how_far} the {side} of {rng.text()}",
                    direction=direction, bound=bound, factor=factor, difference=value - bound)


def band(rng: Range, f, lo: float, hi: float, *, steps: int = 400, log: bool = True) -> tuple[float, float] | None:
    """The sub-interval of [lo, hi] where f(x) lies inside `rng`, scanning `steps` points (None if nowhere).

    Used to say where a claim *would* hold, e.g. the daily query volumes at which training is 20-40% of the total.
    Assumes the set of x where it holds is one interval (true for the monotone cost curves of this course).
    """
    if not (0 < lo < hi) and log:
        raise ValueError(f"a log-scale scan needs 0 < lo < hi, got lo={lo}, hi={hi}")
    xs = ([lo * (hi / lo) ** (i / (steps - 1)) for i in range(steps)] if log
          else [lo + (hi - lo) * i / (steps - 1) for i in range(steps)])
    inside = [x for x in xs if rng.contains(f(x))]
    return (min(inside), max(inside)) if inside else None


# ---- which row checks which sentence of the seed ----

# Every checkable claim of the seed (../shared/seed), with the ids of the claims-table rows that check it; an id
# ending in "." stands for every row that starts with it. tests/test_claims.py checks that a notebook records each.
SEED_CLAIMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("training: processing trillions of tokens of text data", "09", ("training.trillions_of_tokens",)),
    ("training: adjusts its billions of weights", "09", ("training.billions_of_weights",)),
    ("training: thousands of GPUs simultaneously", "02", ("training.thousands_of_gpus",)),
    ("training: weeks or months to complete", "02", ("training.weeks_to_months",)),
    ("training: $10-100+ million for frontier models", "02", ("training.run_cost",)),
    ("training: happening once (with periodic retraining)", "09", ("training.once_plus_retraining",)),
    ("GPT-4: 25,000+ A100 GPUs for approximately 100 days", "02", ("training.gpt4_fleet",)),
    ("inference: a single GPU or a small cluster, 1-8 GPUs per request", "00",
     ("inference.gpus_per_request.course", "inference.gpus_per_request.published")),
    ("inference: milliseconds to seconds per request", "03, 09",
     ("inference.latency.shortest", "inference.latency.longest", "inference.latency.frontier")),
    ("inference: fractions of a cent, $0.001-$0.10 per query", "03, 09",
     ("inference.cost_per_query", "inference.cost_per_query.frontier")),
    ("inference: millions of times per day", "09", ("inference.millions_per_day",)),
    ("lifecycle: training 20-40% of the total cost", "09", ("lifecycle.training_share",)),
    ("lifecycle: inference 60-80% of the total cost", "09", ("lifecycle.inference_share",)),
    ("1M queries/day at $0.01 = $10,000 a day", "09", ("lifecycle.seed_daily_cost",)),
    ("... = $3.65 million a year", "09", ("lifecycle.seed_yearly_cost",)),
    ("quantization: 2-4x faster inference", "04", ("quantization.speedup_2_4x",)),
    ("quantization: minimal accuracy loss", "04", ("quantization.minimal_accuracy_loss",)),
    ("batching: many requests at once maximize utilization", "05", ("batching.throughput", "batching.utilization")),
    ("distillation: a smaller, faster model mimics a larger one", "06", ("distillation.",)),
    ("caching: stored results avoid redundant computation", "07", ("caching.redundant_compute", "caching.prefix_ttft")),
    ("speculative decoding: a small model drafts, a larger one verifies", "08", ("speculative.draft_verify",)),
    ("API users pay only for inference", "09", ("pricing.only_inference",)),
    ("the provider amortizes training across all customers", "09", ("pricing.amortized",)),
    ("pricing is per token: each token is a unit of inference compute", "09",
     ("pricing.per_token_unit", "pricing.per_token_unit.course")),
)


def rows_for(ids: tuple[str, ...], rows: list[dict]) -> list[dict]:
    """The rows (with an "id") that `ids` name; an id ending in "." matches every row id it begins."""
    return [r for r in rows if any(r["id"].startswith(i) if i.endswith(".") else r["id"] == i for i in ids)]


def coverage(rows: list[dict]) -> list[dict]:
    """One line per seed claim: the lessons that check it, and the verdicts of the rows found (or what is missing)."""
    out = []
    for text, lessons, ids in SEED_CLAIMS:
        found = [r for r in rows_for(ids, rows) if r.get("verdict") in VERDICTS and "range" in r]
        out.append({"seed claim": text, "lessons": lessons, "rows": len(found),
                    "verdicts": "; ".join(r["verdict"] for r in found) or f"no row yet: run lesson {lessons}"})
    return out
