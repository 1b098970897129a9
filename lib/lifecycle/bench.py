"""Side-by-side benchmarks: `python -m lifecycle.bench NAME [--quick] [--json PATH|-]`.

Each benchmark lives in `lifecycle/benches/NAME.py` as `run(quick: bool) -> Report` and times its variants with
`lifecycle.measure.timing.interleaved` (warmed up, one call of each variant per round, the order reversed every
round, medians). This module holds what they share: the machine description (device, threads, library versions),
the printed table and the JSON object

    {"bench": NAME, "machine": {...}, "figures": {...}, "ratios": {...}}

Benchmarks report speed; tests check truths. Nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .course import markdown_table
from .device import device_name, pick_device

BENCHES = ("train", "decode", "quantize", "batching", "speculative", "caching", "ddp", "serve")


@dataclass
class Report:
    """What a benchmark returns: readable rows, named figures, and the ratios that matter."""

    rows: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def library_version(name: str) -> str:
    """The installed version of package `name` (its distribution metadata), or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """Where a benchmark ran: the device, CPU count, torch's thread count, the versions of the libraries whose
    kernels the benchmarks time (torch, and the peers' transformers and torchao), and how busy the machine was."""
    device = pick_device()
    return {"device": str(device), "device_name": device_name(device), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": library_version("transformers"), "torchao": library_version("torchao"),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # others' work too
            "python": platform.python_version(), "platform": platform.platform()}


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
    print(markdown_table(out["rows"]))
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
