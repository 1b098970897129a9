"""The results ledger: what each lesson measured on this machine, for lesson 09 to turn into money.

One JSON file in the course cache (`results.json`), one entry per key:
    {"key": {"value": 1.9, "unit": "x", "lesson": "05_batching", "what": "...", "machine": "...", "when": "..."}}
Lessons call `record(...)`; lesson 09 calls `get(...)`, `entries()` or `table()`. A missing file is an empty
ledger; a file that is not a JSON object is set aside (renamed, never deleted) with a warning, and entries that are
not {value: a finite number, ...} are moved to a file of their own while the good ones stay, so no lesson crashes
and no measurement is lost. Every set-aside file gets a new, unique name.

The claims table (`claims.json`) holds one row per claim of the seed. A lesson states the seed's range and passes
the value it measured or computed; the verdict is derived (see `verdicts.py`), never written by hand:

    from lifecycle.results import Assumption, Range, check_claim
    row = check_claim(
        "inference.cost_per_query", lesson=LESSON, claim="$0.001-$0.10 per query",
        stated=Range(0.001, 0.10, "$/query"),         # Range(low, None, unit) / Range(None, high, unit): open end
        value=cost_per_query,                          # in the Range's unit; None only with unmeasurable="why"
        assumptions=[Assumption("GPU price", 2.0, "$/h", "cloud list price, 2024")],  # [] -> "reproduced"
        interval=None,                                 # or (lo, hi) over seeds: a straddled bound is "inside the noise"
        note="what the reader should know (never a verdict)")
    row["verdict"], row["explanation"]                 # "contradicted", "$0.00001/query is 100× below the floor ..."
    show_table(claims_display([row]))                  # claim, range, value, assumptions with sources, verdict

Verdicts: `REPRODUCED`, `UNDER_ASSUMPTIONS`, `CONTRADICTED`, `NOT_MEASURABLE` (compare against these names, never
a string). `verdicts.judge(stated, value, assumptions)` gives the same judgment without storing it, and
`verdicts.band(stated, f, lo, hi)` the interval of x where f(x) would satisfy the claim.

The course's hardware probe (`lifecycle.device.course_probe`) is kept here too: lesson 00 stores it with
`record_probe(p, lesson)`, later lessons read it back with `recorded_probe(device)` (probing again only where the
ledger lacks it, or holds another machine's figures).
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from .checks import is_finite_number
from .data import cache_dir
from .device import (COURSE_PROBE_DTYPES, PROBE_LEDGER_KEYS, CourseProbe, bandwidth_buffer_bytes, course_probe,
                     device_name, last_level_cache_bytes, pick_device, supports_dtype)
from .verdicts import (CONTRADICTED, NOT_MEASURABLE, REPRODUCED, UNDER_ASSUMPTIONS, VERDICTS,  # noqa: F401
                       Assumption, Range, band, fmt, judge, show)


def ledger_path() -> Path:
    return cache_dir() / "results.json"


def machine() -> str:
    """A short description of where a figure was measured."""
    dev = pick_device()
    return f"{dev.type}: {device_name(dev)} ({os.cpu_count()} CPUs, torch {torch.__version__}, {platform.system()})"


def entries(path: Path | None = None) -> dict[str, dict]:
    """Every entry in the ledger ({} when there is none yet)."""
    path = path or ledger_path()
    data = _read_json(path, what="the results ledger ", shape=" of key -> {value: a finite number, ...}",
                      then=" and an empty ledger is used. Re-run the lessons whose measurements you want back.")
    good = {k: v for k, v in data.items() if isinstance(v, dict) and _is_number(v.get("value"))}
    if len(good) < len(data):
        bad = {k: v for k, v in data.items() if k not in good}
        aside = _set_aside_entries(path, bad, good)
        warnings.warn(f"the results ledger {path} held {len(bad)} unreadable entries {sorted(bad)[:5]} (not "
                      f"{{value: a finite number, ...}}); {aside}; its other {len(good)} entries are kept. Re-run the "
                      "lessons that measure the set-aside keys.", stacklevel=2)
    return good


def _is_number(value) -> bool:
    return is_finite_number(value)


def _unique_name(path: Path, tag: str) -> Path:
    """A new, empty file next to `path`, named PATH.TAG-<seconds>-<random>: two set-asides in the same second
    get two files (mkstemp creates the name exclusively), so neither overwrites the other."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{tag}-{int(time.time())}-")
    os.close(fd)
    return Path(name)


def _set_aside(path: Path) -> str:
    """Rename an unreadable file out of the way (never delete it); say what happened."""
    try:
        aside = _unique_name(path, "corrupt")
        os.replace(path, aside)  # replaces only the empty placeholder made for it
        return f"it was moved to {aside.name}"
    except OSError as e:  # e.g. a read-only clone: leave it where it is, still carry on
        return f"it could not be moved aside ({e})"


def _set_aside_entries(path: Path, bad: dict, good: dict) -> str:
    """Move the `bad` entries of the ledger at `path` to a file of their own, then keep only the `good` ones."""
    try:
        aside = _unique_name(path, "bad-entries")
        aside.write_text(json.dumps(bad, indent=1, sort_keys=True))
        _write_json(path, good)
        return f"they were moved to {aside.name}"
    except OSError as e:  # a read-only clone: the file stays as it is; the good entries are still used
        return f"they could not be moved aside ({e}), so the file is left unchanged"


def record(key: str, value: float, unit: str, *, lesson: str, what: str, path: Path | None = None) -> dict:
    """Store one measurement (replacing an older one under the same key) and return its entry."""
    if not isinstance(key, str) or not key:
        raise ValueError("a ledger key must be a non-empty string")
    if not is_finite_number(value):
        raise ValueError(f"ledger value for {key!r} must be a finite number, got {value!r}")
    path = path or ledger_path()
    data = entries(path)
    entry = {"value": float(value), "unit": unit, "lesson": lesson, "what": what, "machine": machine(),
             "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    data[key] = entry
    _write_json(path, data)
    return entry


def get(key: str, default: float | None = None, path: Path | None = None) -> float | None:
    """The value recorded under `key`, or `default` when the lesson that measures it has not run."""
    entry = entries(path).get(key)
    return default if entry is None else entry["value"]


def table(path: Path | None = None) -> list[dict]:
    """The ledger as rows, sorted by lesson then key (for display)."""
    return [{"key": k} | v for k, v in sorted(entries(path).items(), key=lambda kv: (kv[1].get("lesson", ""), kv[0]))]


# ---- the claims table: each claim of the seed, as a range; what the course measured; a computed verdict ----
# Verdicts are computed by `verdicts.judge` from the range and the value; no caller passes a verdict string
# (tests/test_claims.py scans the notebooks and the library for one).

LEGACY_VERDICTS = ("reproduced", "holds under stated assumptions", "not reproduced here")  # record_claim only


def claims_path() -> Path:
    return cache_dir() / "claims.json"


def check_claim(claim_id: str, *, lesson: str, claim: str, stated: Range, value: float | None,
                assumptions: tuple[Assumption, ...] | list = (), interval: tuple[float, float] | None = None,
                unmeasurable: str | None = None, note: str = "", path: Path | None = None) -> dict:
    """Judge one claim of the seed and store the row (replacing an older row with the same id); return the row.

    `stated`: the seed's range; `value`: what this run measured or computed, in `stated.unit` (None with
    `unmeasurable="why"` when nothing can be measured); `assumptions`: outside inputs with their sources;
    `interval`: the value's spread over repeats, if any; `note`: context for the reader (never a verdict).
    """
    if not isinstance(claim_id, str) or not claim_id:
        raise ValueError("a claim id must be a non-empty string, e.g. 'inference.cost_per_query'")
    judgment = judge(stated, value, assumptions, interval=interval, unmeasurable=unmeasurable)
    assumptions = tuple(assumptions)
    shown = "-" if value is None else show(value, stated.unit)
    row = {"lesson": lesson, "claim": claim, "range": asdict(stated), "range_text": stated.text(),
           "value": value, "unit": stated.unit, "interval": None if interval is None else list(interval),
           "assumptions": [asdict(a) for a in assumptions], "verdict": judgment.verdict,
           "explanation": judgment.explanation, "direction": judgment.direction, "factor": judgment.factor,
           "note": note, "measured": shown, "why": judgment.explanation + (f"; {note}" if note else ""),
           "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = path or claims_path()
    rows = _read_json(path)
    rows[claim_id] = row
    _write_json(path, rows)
    return row


def claims_display(rows: list[dict] | None = None) -> list[dict]:
    """Claim rows flattened for `course.show_table`: claim, range, value, assumptions (with sources), verdict, why.

    Rows stored by the deprecated `record_claim` (a typed verdict, no range) are left out: re-run their lesson.
    """
    out = []
    for r in claims() if rows is None else rows:
        if "range" not in r:
            continue
        assumptions = "; ".join(Assumption(**a).text() for a in r.get("assumptions", [])) or "none"
        out.append({"lesson": r.get("lesson", ""), "claim": r.get("claim", ""),
                    "range": r.get("range_text", "-"), "value": r.get("measured", "-"),
                    "assumptions": assumptions, "verdict": r.get("verdict", ""),
                    "explanation": r.get("why", "")})
    return out


def record_claim(claim_id: str, *, lesson: str, claim: str, measured: str, verdict: str, why: str = "",
                 path: Path | None = None) -> dict:
    """Deprecated: a typed verdict. Use `check_claim`, which computes the verdict from a Range and a value."""
    warnings.warn("results.record_claim stores a typed verdict; use results.check_claim(stated=Range(...), "
                  "value=...) so the verdict is computed", DeprecationWarning, stacklevel=2)
    if verdict not in LEGACY_VERDICTS:
        raise ValueError(f"verdict must be one of {LEGACY_VERDICTS}, got {verdict!r}")
    path = path or claims_path()
    rows = _read_json(path)
    row = {"lesson": lesson, "claim": claim, "measured": measured, "verdict": verdict, "why": why,
           "legacy": True, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows[claim_id] = row
    _write_json(path, rows)
    return row


def claims(path: Path | None = None) -> list[dict]:
    """Every recorded claim row, in lesson order."""
    rows = {k: v for k, v in _read_json(path or claims_path()).items() if isinstance(v, dict)}
    return [{"id": k} | v for k, v in sorted(rows.items(), key=lambda kv: (kv[1].get("lesson", ""), kv[0]))]


def _read_json(path: Path, *, what: str = "", shape: str = "", then: str = ", starting empty") -> dict:
    """The JSON object in `path` ({} when there is none). An unreadable file is set aside (renamed, not deleted)
    with a warning that names it: "{what}{path} was unreadable (...); <where it went>{then}"."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object{shape}")
        return data
    except (ValueError, OSError) as e:
        warnings.warn(f"{what}{path} was unreadable ({e}); {_set_aside(path)}{then}", stacklevel=3)
        return {}


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; keep the ledger readable like any other file
    os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one


# ---- the course's hardware probe (lifecycle.device.course_probe), as lesson 00 recorded it ----

def record_probe(p: CourseProbe, lesson: str) -> None:
    """Write `p` into the results ledger: one key per dtype's peak, the bandwidth and the buffer size."""
    for dtype, flops in p.peaks.items():
        record(PROBE_LEDGER_KEYS[dtype], flops, "FLOP/s", lesson=lesson,
               what=f"peak {dtype} matmul rate measured by lifecycle.device.course_probe")
    record("machine.bandwidth", p.bandwidth, "B/s", lesson=lesson,
           what="main-memory copy bandwidth measured by lifecycle.device.course_probe")
    record("machine.probe_buffer_bytes", p.buffer_bytes, "B", lesson=lesson,
           what="size of the buffer copied by lifecycle.device.course_probe")
    if p.cache_bytes:
        record("machine.last_level_cache_bytes", p.cache_bytes, "B", lesson=lesson,
               what="last-level cache the probe's buffer was sized against")


def recorded_probe(device: torch.device | str | None = None, lesson: str = "00_start_here") -> CourseProbe:
    """The course probe as lesson 00 recorded it in the ledger, for this machine.

    When the ledger lacks it (lesson 00 has not run), or holds figures from another machine or from other probe
    settings, the same `course_probe` runs now and is recorded under `lesson`, so every lesson uses one measurement.
    """
    device = torch.device(device) if device is not None else pick_device()
    ledger = entries()
    wanted = [str(dt).removeprefix("torch.") for dt in COURSE_PROBE_DTYPES if supports_dtype(device, dt)]
    keys = [PROBE_LEDGER_KEYS[d] for d in wanted] + ["machine.bandwidth", "machine.probe_buffer_bytes"]
    here = machine()
    fresh = all(k in ledger and ledger[k].get("machine") == here and "course_probe" in ledger[k].get("what", "")
                for k in keys) and ledger["machine.probe_buffer_bytes"]["value"] == bandwidth_buffer_bytes(device)
    if not fresh:
        p = course_probe(device)
        record_probe(p, lesson)
        return p
    return CourseProbe(str(device), device_name(device), {d: ledger[PROBE_LEDGER_KEYS[d]]["value"] for d in wanted},
                       ledger["machine.bandwidth"]["value"], int(ledger["machine.probe_buffer_bytes"]["value"]),
                       last_level_cache_bytes(device), torch.get_num_threads())
