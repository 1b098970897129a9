"""Side-by-side benchmarks: `python -m lifecycle.bench NAME [--quick] [--json PATH|-]`.

Each benchmark lives in `lifecycle/benches/NAME.py` as `run(quick: bool) -> Report`. This module holds what
they share: interleaved timing (A B A B … in one process, median of several repeats, so that a noisy machine
slows every variant alike), the machine description, the printed table and the JSON object

    {"bench": NAME, "machine": {...}, "figures": {...}, "ratios": {...}}

Benchmarks report speed; tests check truths. Nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .device import device_name, pick_device, synchronize

BENCHES = ("train", "decode", "quantize", "batching", "speculative", "caching", "ddp", "serve")


@dataclass
class Report:
    """What a benchmark returns: readable rows, named figures, and the ratios that matter."""

    rows: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def interleaved(variants: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, dict]:
    """Time each variant `repeats` times, alternating between them; return {name: {median, min, all}} in seconds."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return {name: {"median": statistics.median(ts), "min": min(ts), "all": ts} for name, ts in times.items()}


def machine_info() -> dict:
    device = pick_device()
    return {"device": str(device), "device_name": device_name(device), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for row in rows for k in row))

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    widths = {c: max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(cell(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def run(name: str, quick: bool = False) -> dict:
    """Run benchmark `name` and return its JSON object."""
    if name not in BENCHES:
        raise SystemExit(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHES)}")
    module = importlib.import_module(f"lifecycle.benches.{name}")
    t0 = time.perf_counter()
    report: Report = module.run(quick=quick)
    return {"bench": name, "quick": quick, "seconds": round(time.perf_counter() - t0, 1),
            "machine": machine_info(), "figures": report.figures, "ratios": report.ratios,
            "rows": report.rows, "notes": report.notes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lifecycle.bench", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=BENCHES)
    parser.add_argument("--quick", action="store_true", help="a smaller run, well under a minute")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the JSON object to PATH ('-' = stdout)")
    args = parser.parse_args(argv)
    out = run(args.name, args.quick)
    print(f"== {args.name} benchmark on {out['machine']['device_name']} ({out['machine']['device']}, "
          f"{out['machine']['torch_threads']} threads) ==")
    print(format_table(out["rows"]))
    for note in out["notes"]:
        print(f"note: {note}")
    print("ratios:", json.dumps(out["ratios"], indent=1))
    if args.json == "-":
        print(json.dumps(out, indent=1))
    elif args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
