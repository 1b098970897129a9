"""`torchrun` as a subprocess, for notebooks and tests: start the ranks, stream their output, end them all.

`launch(nproc, DDPConfig(...))` runs `python -m torch.distributed.run --standalone --nproc_per_node=N -m
lifecycle.distributed ...` in a session of its own, prints every line live, and returns rank 0's `result.json`
(`LaunchResult`). On failure or timeout it kills torchrun and every rank below it (SIGTERM, then SIGKILL after a
grace period), then any rank that a dead torchrun left orphaned (found by the run folder on its command line), and
raises `LaunchError` naming the rank that failed first and what it raised (from its `error-rank{r}.json`).

`compare_processes` times the same global batch on one process and on several, alternating the counts, and
reports the speedup and the share of a step spent in the all-reduce. What each rank runs is
`lifecycle.distributed`.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..device import thread_budget
from ..distributed import DDPConfig


class LaunchError(RuntimeError):
    """A distributed run failed or timed out; `.rank` and `.error` name the failing rank and what it raised."""

    def __init__(self, message: str, returncode: int | None, rank: int | None = None, error: str = "",
                 output: list[str] | None = None):
        super().__init__(message)
        self.returncode, self.rank, self.error, self.output = returncode, rank, error, output or []


@dataclass
class LaunchResult:
    returncode: int
    result: dict  # rank 0's result.json
    out: Path  # the run's folder (result.json, checkpoint ddp.*)
    seconds: float
    output: list[str] = field(default_factory=list)  # every line the processes printed


# ---- finding and ending the processes of a run ----

def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; torchrun puts each worker in its own session)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields_[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def leftover_processes(out: Path | str) -> list[int]:
    """Running processes whose command line mentions the run folder `out` (torchrun and its ranks); [] = none."""
    needle = str(out).encode()
    return [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
            if _read(p).find(needle) >= 0 and _alive(int(p.parent.name))]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _signal_and_wait(pids: list[int], sig: int, grace_s: float, send=os.kill, reap=lambda: None) -> bool:
    """Send `sig` to each of `pids` (skipping ones already gone or not ours), then wait up to `grace_s` for all of
    them to exit, calling `reap` while waiting; True when none is left."""
    for pid in pids:
        try:
            send(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.perf_counter() + grace_s
    while time.perf_counter() < deadline and any(_alive(p) for p in pids):
        reap()
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def kill_tree(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM torchrun and every worker below it, then SIGKILL whatever is still alive after `grace_s`."""
    pids = [proc.pid] + _descendants(proc.pid)  # collected first: killing torchrun orphans its workers

    def send(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)  # torchrun and each worker lead their own process group
        except (ProcessLookupError, PermissionError):
            os.kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _signal_and_wait(pids, sig, grace_s, send=send, reap=proc.poll):  # reap torchrun if it exited
            break
    proc.poll()


def kill_leftovers(out: Path, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, every live process whose command line names the run folder `out`: the ranks of a
    torchrun that died are no longer its descendants (they were reparented), but their command line still says
    which run they belong to."""
    def ours(pid: int) -> bool:  # a rank or torchrun of this run, never a shell that merely names the folder
        cmdline = _read(Path(f"/proc/{pid}/cmdline"))
        return pid != os.getpid() and (b"lifecycle.distributed" in cmdline or b"torch.distributed.run" in cmdline)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_and_wait([p for p in leftover_processes(out) if ours(p)], sig, grace_s)


def _first_error(out: Path) -> dict | None:
    errors = []
    for path in out.glob("error-rank*.json"):
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return min(errors, key=lambda e: e["time"]) if errors else None  # the root cause failed first


def _pump(stream, lines: queue.Queue) -> None:
    """Move each output line into `lines` (None at the end), so the caller can wait with a timeout."""
    for line in stream:
        lines.put(line)
    lines.put(None)


# ---- starting a run, and comparing process counts ----

def launch(nproc: int, config: DDPConfig | list[str], *, out: Path | str | None = None, timeout_s: float = 600,
           threads: int | None = None, stream: bool = True, check: bool = True) -> LaunchResult:
    """Run `nproc` ranks with torchrun, print their output live, and return rank 0's results.

    threads: torch threads per rank (default: this process's CPU budget, `device.thread_budget`, shared evenly). On failure or timeout every
    process is killed; with check=True a LaunchError names the failing rank and its error.
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer (processes on this machine), got {nproc!r}")
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="ddp-"))
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / "result.json", *out.glob("error-rank*.json")]:
        stale.unlink(missing_ok=True)
    args = config.to_args() if isinstance(config, DDPConfig) else list(config)
    threads = threads or max(1, thread_budget().threads // nproc)
    env = os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), "LIFECYCLE_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "lifecycle.distributed", *args, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own process group, so it can be killed as a whole
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    output, timed_out = [], False
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if time.perf_counter() - t0 > timeout_s:
                    timed_out = True
                    break
                if proc.poll() is not None and proc.returncode != 0:
                    break  # torchrun died (killed, OOM) while orphaned ranks still hold the output pipe open
                continue
            if line is None:
                break
            output.append(line.rstrip("\n"))
            if stream:
                print(line, end="", flush=True)
        if timed_out:
            kill_tree(proc)
        returncode = proc.wait()
    finally:
        if proc.poll() is None or _descendants(proc.pid):  # interrupted (KeyboardInterrupt) or a straggler
            kill_tree(proc)
        if proc.returncode != 0:
            kill_leftovers(out)  # ranks orphaned by a dead torchrun are not its descendants any more
    seconds = time.perf_counter() - t0
    if timed_out or returncode != 0:
        kill_tree(proc)  # a worker torchrun did not reap is still ours to end
        first = _first_error(out)
        rank, error = (first["rank"], first["error"]) if first else (None, "\n".join(output[-20:]))
        why = f"timed out after {timeout_s:.0f} s" if timed_out else f"exited with code {returncode}"
        message = f"distributed run {why}" + (f"; rank {rank} failed first: {error}" if rank is not None else
                                               f"; last output:\n{error}")
        if check:
            raise LaunchError(message, returncode if not timed_out else None, rank, error, output)
        return LaunchResult(returncode if not timed_out else -1, {"error": message}, out, seconds, output)
    result = json.loads((out / "result.json").read_text())
    return LaunchResult(returncode, result, out, seconds, output)


def compare_processes(cfg: DDPConfig, nprocs: tuple[int, ...] = (1, 2), rounds: int = 1, threads: int | None = 1,
                      **launch_kw) -> dict:
    """Time the same global batch on each process count ("time" mode), alternating counts for `rounds` rounds.

    threads: torch threads per rank. 1 (default) gives each rank one core, as each GPU rank brings its own GPU:
    the ideal is then n× the steps/s of one process. None splits the machine's cores evenly between the ranks.

    Returns {"per_nproc": {n: medians over rounds}, "two_vs_one_steps_per_s": steps/s of the largest count ÷
    steps/s of one process, "allreduce_share": a standalone all-reduce of all gradients ÷ the step time, and
    "exposed_comm_share": (step − step without all-reduce) ÷ step}, the last two at the largest count.
    """
    same_device = "auto" if torch.cuda.device_count() >= max(nprocs) else "cpu"  # never GPU vs CPU
    cfg = DDPConfig(**(asdict(cfg) | {"mode": "time", "checkpoint": False, "device": same_device}))
    runs: dict[int, list[dict]] = {n: [] for n in nprocs}
    for _ in range(rounds):
        for n in nprocs:  # 1, 2, 1, 2, ...: a busy neighbour slows both counts alike
            runs[n].append(launch(n, cfg, threads=threads, **launch_kw).result)
    keys = ("seconds_per_step", "seconds_per_step_no_sync", "seconds_allreduce")
    per = {n: {k: statistics.median(r[k] for r in rs) for k in keys} | {"threads": rs[0].get("threads")}
           for n, rs in runs.items()}
    one, most = per[min(nprocs)], per[max(nprocs)]
    return {"per_nproc": per, "gradient_bytes": runs[max(nprocs)][0]["gradient_bytes"],
            "n_params": runs[max(nprocs)][0]["n_params"],
            "two_vs_one_steps_per_s": one["seconds_per_step"] / most["seconds_per_step"],
            "allreduce_share": most["seconds_allreduce"] / most["seconds_per_step"],
            "exposed_comm_share": max(0.0, 1 - most["seconds_per_step_no_sync"] / most["seconds_per_step"])}
