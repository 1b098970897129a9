"""The course's one timing helper: interleaved, warmed up, alternating order, median and spread recorded.

    times = interleaved({"ours": ours_fn, "peer": peer_fn}, repeats=5, device=device)
    times["ours"].median, times["ours"].low, times["ours"].high, times["ours"].all   # seconds

How it times, and why:
- Warm-up: every variant first runs `warmup` times untimed (one-time costs: lazy allocation, kernel selection, the
  allocator's first growth, Python's first-call caches), in the same alternating order as the timed rounds.
- Interleaved: each round runs every variant once, so a noisy neighbour or a throttled core slows every variant
  alike instead of one variant's whole block of repeats.
- Alternating order: round 1 runs A B C, round 2 runs C B A, round 3 A B C again, ..., so no variant always runs
  first (right after a warm cache was left by the other) or last.
- Synchronized: on cuda and mps the queue is drained before the clock starts and before it stops, so a timer
  measures the work and not its launch.
- Median: a variant's figure is the median of its rounds (robust to the odd slow one, unbiased where the fastest
  repeat is biased upward); `low`/`high` (min, max) and the quartiles `q1`/`q3` say how much the rounds spread,
  and `all` keeps every round in order (paired with the other variants' rounds: round i of A ran next to round i
  of B, so `paired_ratios` of two variants is a like-for-like spread of their ratio).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer around it measures the work and not the launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one variant over the timed rounds."""

    median: float
    low: float  # the fastest round
    high: float  # the slowest round
    q1: float  # first and third quartile (equal to the median with fewer than two rounds)
    q3: float
    all: tuple[float, ...]  # every round, in order

    @classmethod
    def of(cls, times: list[float]) -> "Timing":
        """The summary of a list of per-round seconds (at least one)."""
        if not times:
            raise ValueError("a Timing needs at least one timed round")
        median = statistics.median(times)
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (median,) * 3
        return cls(median, min(times), max(times), q1, q3, tuple(times))

    def as_dict(self) -> dict:
        """The JSON-friendly form a benchmark stores: median, low, high, q1, q3 and all (seconds)."""
        return {"median": self.median, "low": self.low, "high": self.high, "q1": self.q1, "q3": self.q3,
                "all": list(self.all)}


def step_seconds(fn: Callable[[], object], device: torch.device | str = "cpu") -> tuple[float, object]:
    """(seconds, fn()) for one step of a simulated server: wall time on a GPU; on a CPU min(wall time, this
    process's CPU time), so a step is not charged for time the process spent descheduled or paused by other
    programs (with several threads busy, CPU time exceeds wall time and wall time counts)."""
    device = torch.device(device)
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return (min(wall, cpu) if device.type == "cpu" else wall), out


def round_order(names: list[str], round_index: int) -> list[str]:
    """The order of round `round_index` (0-based): as given on even rounds, reversed on odd ones (A B, B A, ...)."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def interleaved(variants: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, Timing]:
    """Time each variant `repeats` times, one call of each per round, alternating the order every round.

    Every variant first runs `warmup` untimed rounds. On cuda and mps the device is synchronized before and after
    each timed call. Returns {name: Timing} in seconds per call, in the order of `variants`.
    """
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    names = list(variants)
    for i in range(warmup):
        for name in round_order(names, i):
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in round_order(names, i):
            synchronize(device)
            t0 = time.perf_counter()
            variants[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return {name: Timing.of(times[name]) for name in names}


def timed(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 5,
          warmup: int = 1) -> Timing:
    """`interleaved` with one variant: the Timing of `fn()` alone (`.median` for a typical call, `.low` for a peak)."""
    return interleaved({"fn": fn}, repeats=repeats, warmup=warmup, device=device)["fn"]


def paired_ratios(numerator: Timing, denominator: Timing) -> Timing:
    """The per-round ratios numerator ÷ denominator of two variants timed in the same `interleaved` call, summarized.

    Round i of each ran back to back under the same load, so these ratios spread less than the two medians do;
    their median is the like-for-like speed ratio (time of the numerator over time of the denominator).
    """
    if len(numerator.all) != len(denominator.all):
        raise ValueError("paired ratios need two Timings with the same number of rounds")
    return Timing.of([a / b for a, b in zip(numerator.all, denominator.all)])
