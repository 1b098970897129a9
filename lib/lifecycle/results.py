"""The results ledger: what each lesson measured on this machine, for lesson 09 to turn into money.

One JSON file in the course cache (`results.json`), one entry per key:
    {"key": {"value": 1.9, "unit": "x", "lesson": "05_batching", "what": "...", "machine": "...", "when": "..."}}
Lessons call `record(...)`; lesson 09 calls `get(...)`, `entries()` or `table()`. A missing file is an empty
ledger; a corrupt one is set aside (renamed, never deleted) with a warning, so no lesson crashes because of it.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

from .data import cache_dir


def ledger_path() -> Path:
    return cache_dir() / "results.json"


def machine() -> str:
    """A short description of where a figure was measured."""
    import torch

    from .device import device_name, pick_device

    dev = pick_device()
    return f"{dev.type}: {device_name(dev)} ({os.cpu_count()} CPUs, torch {torch.__version__}, {platform.system()})"


def entries(path: Path | None = None) -> dict[str, dict]:
    """Every entry in the ledger ({} when there is none yet)."""
    path = path or ledger_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, dict) and _is_number(v.get("value"))
                                                 for v in data.values()):
            raise ValueError("not a mapping of key -> {value: a finite number, ...}")
        return data
    except (ValueError, OSError) as e:
        aside = _set_aside(path)
        warnings.warn(f"the results ledger {path} was unreadable ({e}); {aside} and an empty ledger is used. "
                      "Re-run the lessons whose measurements you want back.", stacklevel=2)
        return {}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _set_aside(path: Path) -> str:
    """Rename an unreadable file out of the way (never delete it); say what happened."""
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
        return f"it was moved to {aside.name}"
    except OSError as e:  # e.g. a read-only clone: leave it where it is, still carry on
        return f"it could not be moved aside ({e})"


def record(key: str, value: float, unit: str, *, lesson: str, what: str, path: Path | None = None) -> dict:
    """Store one measurement (replacing an older one under the same key) and return its entry."""
    if not isinstance(key, str) or not key:
        raise ValueError("a ledger key must be a non-empty string")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
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


# ---- the claims table: each numeric claim of the seed, what the course measured, and a verdict ----

VERDICTS = ("reproduced", "holds under stated assumptions", "not reproduced here")


def claims_path() -> Path:
    return cache_dir() / "claims.json"


def record_claim(claim_id: str, *, lesson: str, claim: str, measured: str, verdict: str, why: str = "",
                 path: Path | None = None) -> dict:
    """Store one row of the claims table (replacing an older row with the same id)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    path = path or claims_path()
    rows = _read_json(path)
    row = {"lesson": lesson, "claim": claim, "measured": measured, "verdict": verdict, "why": why,
           "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows[claim_id] = row
    _write_json(path, rows)
    return row


def claims(path: Path | None = None) -> list[dict]:
    """Every recorded claim row, in lesson order."""
    rows = {k: v for k, v in _read_json(path or claims_path()).items() if isinstance(v, dict)}
    return [{"id": k} | v for k, v in sorted(rows.items(), key=lambda kv: (kv[1].get("lesson", ""), kv[0]))]


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (ValueError, OSError) as e:
        warnings.warn(f"{path} was unreadable ({e}); {_set_aside(path)}, starting empty", stacklevel=3)
        return {}


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
