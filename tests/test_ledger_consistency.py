"""Every ledger figure a later lesson shows equals what the lesson that recorded it printed (issue 16, item 4).

The committed notebooks are read as they are (no execution): the recording lesson's output and each later lesson's
output are searched for the same figure, and the two printed values must agree to the precision both show
(4.76 and 4.8 agree; 4.5 and 4.76 do not). A mismatch means a lesson re-measured a quantity with other settings, or
the notebooks were executed from different ledgers: re-run the lessons in order.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from lifecycle.costs import OPTIMIZATIONS

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NUMBER = r"(-?[\d,]*\.?\d+)"

# The course probe's figures, worded one way in every lesson by `CourseProbe.describe` and the lessons that show them
PROBE_PATTERNS = {
    "peak matmul ({dtype})": re.compile(r"peak matmul \((?P<dtype>float32|bfloat16|float16)\)(?:, lesson 00)?"
                                        r"[ |*ofa-z']{0,24}?" + NUMBER + r" GFLOP/s"),
    "memory bandwidth": re.compile(r"memory bandwidth(?:, lesson 00)?[ |*]{0,8}" + NUMBER + r" GB/s"),
}

# How the recording lesson prints each figure that lesson 09's optimization table shows: (pattern, scale to value)
RECORDED_AS = {
    "quantize.int8_speedup": (re.compile(r"our eager int8 decoded at " + NUMBER + "×"), 1.0),
    "batching.batch32_vs_batch1": (re.compile(r"batch 32 decoded \*\*" + NUMBER + r"×\*\*"), 1.0),
    "distill.student_speedup": (re.compile(r"The student generates \*\*" + NUMBER + r"×\*\*"), 1.0),
    "caching.response_hit_rate": (re.compile(r"The cache answered \*\*" + NUMBER + r"%\*\*"), 0.01),
}

# Other ledger figures lesson 09 shows in one row: (its pattern, one (key, recording lesson, pattern) per group)
SUMMARY_ROWS = [
    (re.compile(r"\| val loss: teacher / student / same student from scratch \| " + NUMBER + " / " + NUMBER + " / "
                + NUMBER + r" \|"),
     # lesson 06's table "| model | val loss (nats/char) | perplexity |"
     [(key, "06_distillation", re.compile(rf"^\| {name} \| (\d+\.\d+) \| \d+\.\d+ \|$", re.MULTILINE))
      for key, name in [("distill.val_loss_teacher", "teacher"), ("distill.val_loss_student", "distilled"),
                        ("distill.val_loss_scratch", "scratch")]]),
]


@dataclass(frozen=True)
class Printed:
    """A figure as printed: its value and how many decimals of it were shown (in the value's own unit)."""

    value: float
    decimals: int
    where: str

    @classmethod
    def parse(cls, text: str, where: str, scale: float = 1.0) -> "Printed":
        text = text.replace(",", "")
        shown = len(text.split(".")[1]) if "." in text else 0
        extra = round(-math.log10(scale))  # 41% read as 0.41: two more decimals
        return cls(float(text) * scale, shown + extra, where)


def agree(a: Printed, b: Printed) -> bool:
    """Whether two printed values are the same figure: equal once both are rounded to the coarser precision
    (a value exactly on a rounding boundary is allowed either way)."""
    d = min(a.decimals, b.decimals)
    return abs(round(a.value, d) - round(b.value, d)) < 1e-9 or abs(a.value - b.value) <= 0.5 * 10 ** -d + 1e-9


def outputs_text(nb) -> str:
    """All text a notebook displays: streams, Markdown, plain text (not the code)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            data = out.get("data", {})
            for kind in ("text/markdown", "text/plain"):
                if kind in data:
                    parts.append(data[kind])
    return "\n".join(parts).replace("\\$", "$")


def probe_mismatches(texts: dict[str, str], recorder: str = "00_start_here") -> list[str]:
    """Every displayed probe figure in `texts` (lesson -> output text) that disagrees with the recorder's."""
    problems = []
    for label, pattern in PROBE_PATTERNS.items():
        recorded = {}
        for m in pattern.finditer(texts.get(recorder, "")):
            key = label.format(dtype=m.groupdict().get("dtype", ""))
            recorded.setdefault(key, Printed.parse(m.group(m.lastindex), recorder))
        for lesson, text in texts.items():
            for m in pattern.finditer(text):
                key = label.format(dtype=m.groupdict().get("dtype", ""))
                shown = Printed.parse(m.group(m.lastindex), lesson)
                if key not in recorded:
                    problems.append(f"{lesson} shows {key} = {m.group(m.lastindex)} but {recorder} printed none")
                elif not agree(recorded[key], shown):
                    problems.append(f"{key}: {recorder} printed {recorded[key].value:g}, {lesson} shows {shown.value:g}")
    return problems


def optimization_mismatches(texts: dict[str, str], summary: str = "09_lifecycle_costs") -> list[str]:
    """Lesson 09's optimization rows ("| name | value | measured in LESSON") against the recording lessons."""
    problems = []
    for o in OPTIMIZATIONS:
        if o.key not in RECORDED_AS:
            continue
        row = re.search(re.escape(f"| {o.name} | ") + NUMBER + re.escape(f" | measured in {o.lesson}"),
                        texts.get(summary, ""))
        if row is None:
            continue  # a default, not a measurement: nothing to compare
        pattern, scale = RECORDED_AS[o.key]
        m = pattern.search(texts.get(o.lesson, ""))
        if m is None:
            problems.append(f"{o.lesson} does not print {o.key} the way this test reads it ({pattern.pattern})")
            continue
        recorded, shown = Printed.parse(m.group(1), o.lesson, scale), Printed.parse(row.group(1), summary)
        if not agree(recorded, shown):
            problems.append(f"{o.key}: {o.lesson} printed {recorded.value:g}, {summary} shows {shown.value:g}")
    return problems


def summary_row_mismatches(texts: dict[str, str], summary: str = "09_lifecycle_costs") -> list[str]:
    """Lesson 09's other rows of ledger figures (SUMMARY_ROWS) against the lessons that printed them first."""
    problems = []
    for row_pattern, figures in SUMMARY_ROWS:
        row = row_pattern.search(texts.get(summary, ""))
        if row is None:
            continue  # "not measured yet": nothing to compare
        for group, (key, lesson, pattern) in enumerate(figures, start=1):
            m = pattern.search(texts.get(lesson, ""))
            if m is None:
                problems.append(f"{lesson} does not print {key} the way this test reads it ({pattern.pattern})")
                continue
            recorded, shown = Printed.parse(m.group(1), lesson), Printed.parse(row.group(group), summary)
            if not agree(recorded, shown):
                problems.append(f"{key}: {lesson} printed {recorded.value:g}, {summary} shows {shown.value:g}")
    return problems


def committed_texts() -> dict[str, str]:
    return {p.stem: outputs_text(nbformat.read(p, as_version=4)) for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


# ---- the checker itself, on made-up outputs ----

@pytest.mark.parametrize("a, b, same", [("4.5", "4.76", False), ("4.8", "4.76", True), ("4.76", "4.76", True),
                                        ("167.2", "167.2", True), ("167.2", "209.4", False), ("12", "12.3", True),
                                        ("12", "12.6", False), ("1,234.5", "1234.5", True)])
def test_agree_compares_at_the_coarser_precision(a, b, same):
    assert agree(Printed.parse(a, "x"), Printed.parse(b, "y")) is same


def test_percent_and_fraction_compare():
    assert agree(Printed.parse("41", "07", 0.01), Printed.parse("0.413", "09"))
    assert not agree(Printed.parse("45", "07", 0.01), Printed.parse("0.413", "09"))


def test_the_known_case_fails_the_check():
    # lesson 06 printed a speed-up of 4.5x while lesson 09 showed 4.76x from another run's ledger
    texts = {"06_distillation": "The student generates **4.5×** faster than the teacher",
             "09_lifecycle_costs": "| distillation (student) | 4.76 | measured in 06_distillation (cpu) |"}
    assert optimization_mismatches(texts) == ["distill.student_speedup: 06_distillation printed 4.5, "
                                              "09_lifecycle_costs shows 4.76"]
    texts["06_distillation"] = "The student generates **4.8×** faster than the teacher"
    assert optimization_mismatches(texts) == []


def test_a_lesson_that_re_probes_fails_the_check():
    texts = {"00_start_here": "peak matmul (float32) **167.2 GFLOP/s**; memory bandwidth **19.8 GB/s** (a copy)",
             "03_inference": "| peak matmul (float32), lesson 00 | 209.4 GFLOP/s |\n| memory bandwidth, lesson 00 | 19.8 GB/s |",
             "05_batching": "This machine (lesson 00): peak matmul (float32) **167.2 GFLOP/s**, memory bandwidth "
                            "**9.9 GB/s**"}
    problems = probe_mismatches(texts)
    assert problems == ["peak matmul (float32): 00_start_here printed 167.2, 03_inference shows 209.4",
                        "memory bandwidth: 00_start_here printed 19.8, 05_batching shows 9.9"]


# ---- the committed notebooks ----

def test_committed_lessons_show_lesson_00s_probe_figures():
    texts = committed_texts()
    assert any(PROBE_PATTERNS["peak matmul ({dtype})"].finditer(texts["00_start_here"])), \
        "lesson 00 does not print its probe figures (execute it, or see CourseProbe.describe)"
    for lesson in ("01_training", "03_inference", "04_quantization", "05_batching"):
        assert PROBE_PATTERNS["peak matmul ({dtype})"].search(texts.get(lesson, "")), \
            f"{lesson} no longer shows lesson 00's matmul peak in the wording this test reads"
    assert probe_mismatches(texts) == []


def test_committed_lesson_09_shows_what_each_lesson_recorded():
    texts = committed_texts()
    assert optimization_mismatches(texts) + summary_row_mismatches(texts) == []


def test_summary_rows_are_compared_too():
    texts = {"06_distillation": "| teacher | 1.772 | 5.9 |\n| distilled | 1.954 | 7.1 |\n| scratch | 1.985 | 7.3 |",
             "09_lifecycle_costs": "| val loss: teacher / student / same student from scratch | 1.772 / 1.954 / 1.990 |"}
    assert summary_row_mismatches(texts) == ["distill.val_loss_scratch: 06_distillation printed 1.985, "
                                             "09_lifecycle_costs shows 1.99"]
