"""One command to check the whole course on a device: every notebook executed there, with a report.

    python -m lifecycle.gpucheck                      # the best device here (cuda -> mps -> cpu), every lesson
    python -m lifecycle.gpucheck --device cuda --notebooks 00 01 --cell-timeout 600

Each notebook runs on a fresh kernel with $LIFECYCLE_DEVICE set (so `device.pick_device()` in the lessons picks
that device), one cell at a time under a per-cell time limit, into an output folder: the executed copies are
written there, the course's notebooks are never touched. The kernels use a private course cache inside that folder
whose `corpus/` and `models/` link to the course cache (no refetch; models trained here, such as the `gpu`
preset's, are kept for the next run), so the ledger (`results.json`) holds this run's measurements only and the
learner's own ledger is left alone.

The report (`report.json` and `report.md`) records the device (name, compute capability, which dtypes are native,
the autocast dtype training uses and so the peak MFU divides by, the teacher's preset), and for each notebook
its time, peak memory (the kernel's peak RSS; on CUDA also torch's peak allocation) and pass or fail with the
first error, then the ledger's ratios (entries in "x" or "fraction") that the lessons measured.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .data import REPO_ROOT, cache_dir
from .device import device_name, pick_device, supports_dtype

NOTEBOOKS = REPO_ROOT / "notebooks"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
RATIO_UNITS = ("x", "fraction")
PEAK_MARK = "GPUCHECK-PEAK "

# Run in each kernel after the lesson's own cells (even after a failing cell): its peak memory, as one JSON line.
PEAK_CELL = f"""\
import json as _json, resource as _resource, sys as _sys
_peak = {{"rss_bytes": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * (1 if _sys.platform == "darwin" else 1024)}}
if "torch" in _sys.modules:
    import torch as _torch
    if _torch.cuda.is_available() and _torch.cuda.is_initialized():
        _peak["cuda_bytes"] = _torch.cuda.max_memory_allocated()
    elif getattr(_torch.backends, "mps", None) is not None and _torch.backends.mps.is_available():
        _peak["mps_bytes"] = _torch.mps.driver_allocated_memory()  # current, not peak: MPS keeps no peak
print({PEAK_MARK!r} + _json.dumps(_peak))
"""


# ---- the device ----

def mfu_dtype(device: torch.device) -> str:
    """The dtype training's matmuls run in on `device` (its autocast dtype; fp32 without one): MFU divides the
    achieved FLOP/s by this dtype's peak (bf16 on an A100, fp16 on a T4 with no bf16, fp32 on a CPU)."""
    from .train import autocast_dtype

    return str(autocast_dtype(device, "auto") or torch.float32).removeprefix("torch.")


def device_report(device: torch.device) -> dict:
    """What the course will use on `device`: name, capability, native dtypes, MFU's dtype, the teacher's preset."""
    from .zoo import teacher_preset

    info = {"type": device.type, "name": device_name(device), "torch": torch.__version__,
            "dtypes": {str(dt).removeprefix("torch."): supports_dtype(device, dt) for dt in DTYPES},
            "mfu_dtype": mfu_dtype(device), "teacher_preset": teacher_preset(device)}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        info |= {"capability": f"{major}.{minor}", "cuda": torch.version.cuda,
                 "memory_bytes": torch.cuda.get_device_properties(device).total_memory}
    return info


# ---- one notebook ----

@dataclass
class NotebookRun:
    """How one notebook went: pass/fail, wall time, peak memory, the first error and the slowest cells."""

    name: str
    passed: bool = False
    seconds: float = 0.0
    peak: dict = field(default_factory=dict)  # rss_bytes, and cuda_bytes or mps_bytes where there is a GPU
    error: str = ""
    failed_cell: int | None = None  # index of the first failing cell
    slowest: list = field(default_factory=list)  # [(cell index, seconds)] of the three slowest cells
    output: str = ""  # the executed copy


def _peak_from(cell) -> dict:
    for out in cell.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(PEAK_MARK):
                return json.loads(line[len(PEAK_MARK):])
    return {}


def run_notebook(path: Path, out_dir: Path, cell_timeout: float, kernel: str = "python3") -> NotebookRun:
    """Execute a copy of the notebook at `path` cell by cell; write the executed copy into `out_dir`."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    run = NotebookRun(path.stem, output=str(out_dir / path.name))
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})  # the lesson's own folder as cwd
    times = []
    t0 = time.perf_counter()
    with client.setup_kernel():
        alive = True
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            c0 = time.perf_counter()
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
                run.failed_cell, run.error = index, _first_line(e)
                alive = not isinstance(e, (CellTimeoutError, DeadKernelError))
                break
            finally:
                times.append((index, round(time.perf_counter() - c0, 2)))
        run.seconds = round(time.perf_counter() - t0, 2)
        if alive:
            nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))  # nbclient writes each cell back into nb
            with contextlib.suppress(Exception):  # a measurement of the run, never a reason to fail it
                client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
                run.peak = _peak_from(nb.cells[-1])
            nb.cells.pop()  # the executed copy holds the lesson's cells only
    run.passed = run.failed_cell is None
    run.slowest = sorted(times, key=lambda t: -t[1])[:3]
    nbformat.write(nb, run.output)
    return run


def _first_line(e: Exception) -> str:
    """The error's most telling line: the exception name and message a failing cell printed."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if ("Error" in ln or "Exception" in ln) and ":" in ln]
    return (named[-1] if named else lines[-1] if lines else type(e).__name__)[:300]


# ---- the whole run ----

def select_notebooks(names: list[str] | None) -> list[Path]:
    """Notebooks by number prefix ("00", "3") or path; every lesson in order when `names` is empty."""
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return every
    chosen = []
    for name in names:
        if name.endswith(".ipynb"):
            path = Path(name)
            if not path.is_file():
                raise SystemExit(f"no notebook at {path}")
            chosen.append(path.resolve())
            continue
        match = [p for p in every if p.name.startswith(f"{int(name):02d}_")] if name.isdigit() else []
        if not match:
            raise SystemExit(f"no lesson {name!r}; give numbers like 00 03 or paths, from: "
                             f"{' '.join(p.name[:2] for p in every)}")
        chosen += match
    return chosen


def private_cache(out: Path) -> Path:
    """out/cache: its own ledger, with corpus/ and models/ linked to the course cache (shared, never copied)."""
    private = out / "cache"
    private.mkdir(parents=True, exist_ok=True)
    shared = cache_dir()
    for name in ("corpus", "models"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        link = private / name
        if not link.exists():
            link.symlink_to(shared / name, target_is_directory=True)
    return private


def ledger_ratios(cache: Path) -> dict:
    """The ratios this run's lessons recorded (ledger entries in "x" or "fraction"), by key."""
    from .results import entries

    return {k: {"value": v["value"], "unit": v.get("unit"), "lesson": v.get("lesson")}
            for k, v in sorted(entries(cache / "results.json").items()) if v.get("unit") in RATIO_UNITS}


def write_report(out: Path, report: dict) -> None:
    """report.json (everything) and report.md (a table a person reads)."""
    (out / "report.json").write_text(json.dumps(report, indent=1))
    d = report["device"]
    native = ", ".join(k for k, ok in d["dtypes"].items() if ok)
    lines = [f"# Course check on {d['type']}: {d['name']}", "",
             f"torch {d['torch']}" + (f", CUDA {d.get('cuda')}, compute capability {d['capability']}, "
                                       f"{d['memory_bytes'] / 2**30:.0f} GiB" if d["type"] == "cuda" else ""),
             f"; native dtypes: {native}; MFU divides by the {d['mfu_dtype']} peak; teacher preset "
             f"`{d['teacher_preset']}`; per-cell limit {report['cell_timeout_s']:g} s.", "",
             f"**{report['passed']} of {len(report['notebooks'])} notebooks passed** in "
             f"{sum(n['seconds'] for n in report['notebooks']):.0f} s.", "",
             "| notebook | result | seconds | peak RSS (MiB) | peak GPU (MiB) | slowest cells (index: s) |",
             "|---|---|---:|---:|---:|---|"]
    for n in report["notebooks"]:
        gpu = n["peak"].get("cuda_bytes", n["peak"].get("mps_bytes"))
        result = "pass" if n["passed"] else f"FAIL at cell {n['failed_cell']}: {n['error']}".replace("|", "\\|")
        lines.append(f"| {n['name']} | {result} | {n['seconds']:.1f} | "
                     f"{n['peak'].get('rss_bytes', 0) / 2**20:,.0f} | {'-' if gpu is None else f'{gpu / 2**20:,.0f}'} | "
                     + ", ".join(f"{i}: {s:g}" for i, s in n["slowest"]) + " |")
    if report["ratios"]:
        lines += ["", "| ledger key | value | unit | lesson |", "|---|---:|---|---|"]
        lines += [f"| {k} | {r['value']:.4g} | {r['unit']} | {r['lesson']} |" for k, r in report["ratios"].items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def check(device: torch.device, notebooks: list[Path], out: Path, cell_timeout: float = 900.0,
          kernel: str = "python3", progress=print) -> dict:
    """Execute `notebooks` on `device` into `out`; return (and write) the report."""
    out.mkdir(parents=True, exist_ok=True)
    if any(p.resolve().parent == out.resolve() for p in notebooks):
        raise SystemExit(f"--out {out} holds the notebooks themselves; give a separate folder (never in place)")
    cache = private_cache(out)
    report = {"device": device_report(device), "cell_timeout_s": cell_timeout, "cache": str(cache),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "notebooks": [], "passed": 0, "ratios": {}}
    saved = {k: os.environ.get(k) for k in ("LIFECYCLE_DEVICE", "LIFECYCLE_CACHE", "MPLBACKEND")}
    os.environ.update(LIFECYCLE_DEVICE=device.type, LIFECYCLE_CACHE=str(cache), MPLBACKEND="Agg")  # kernels inherit
    try:
        for path in notebooks:
            progress(f"{path.name}: running on {device.type} ...")
            run = run_notebook(path, out, cell_timeout, kernel)
            progress(f"{path.name}: {'pass' if run.passed else 'FAIL: ' + run.error} ({run.seconds:.1f} s)")
            report["notebooks"].append(asdict(run))
            report["passed"] = sum(n["passed"] for n in report["notebooks"])
            report["ratios"] = ledger_ratios(cache)
            write_report(out, report)  # after every notebook, so an interrupted check keeps what it measured
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "mps", "cpu"), default=None,
                        help="where the lessons run (default: the best available, cuda -> mps -> cpu)")
    parser.add_argument("--notebooks", nargs="*", default=None, metavar="N",
                        help="lesson numbers (00 03) or notebook paths (default: every lesson, in order)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: gpucheck/<time>-<device> in the course cache)")
    parser.add_argument("--cell-timeout", type=float, default=900.0, help="seconds one cell may take (default 900)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
    except RuntimeError as e:
        parser.error(str(e))
    notebooks = select_notebooks(args.notebooks)
    out = args.out or cache_dir() / "gpucheck" / f"{time.strftime('%Y%m%d-%H%M%S')}-{device.type}"
    report = check(device, notebooks, out, args.cell_timeout, args.kernel)
    print(f"{report['passed']} of {len(notebooks)} notebooks passed on {report['device']['name']}; "
          f"report: {out / 'report.md'}")
    return 0 if report["passed"] == len(notebooks) else 1


if __name__ == "__main__":
    sys.exit(main())
