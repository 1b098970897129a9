"""`python -m lifecycle.bench batching`: decode throughput against batch size, and static vs continuous batching
under a sweep of loads.

Part 1 times greedy decode steps of the teacher at batch 1, 8, 32 and 64 (a short prompt of `context` tokens, then
`steps` steps), all batch sizes interleaved by `lifecycle.measure.timing` (a warm-up round, then rounds with the
order reversed each time; medians).

Part 2 serves seeded request streams with widely varying output lengths under both policies (prompts of 16-64
tokens, outputs log-uniform from 4 to block_size - 64 tokens, 16 slots), on a virtual clock advanced by measured
step times (see lifecycle.batching). Where the load sits matters, so it is swept:
  - capacity: first, one burst (every request at time 0) served by continuous batching gives the most tokens/s the
    server can deliver; the saturating arrival rate is that ÷ the mean output length (requests/s).
  - loads: Poisson arrivals at 0.5×, 1× and 2× that rate: below, at and above saturation.
Before the timed runs each policy serves the first requests once, untimed (warm-up); then the policies alternate
(static, continuous, then continuous, static, ...) for `stream_repeats` rounds per load, and each figure is the
median over the rounds. `continuous_vs_static_throughput` is reported at each load; the headline is at saturation.

Decode speed does not depend on the weights' values, so when the trained teacher is not cached yet the same
architecture with random weights is timed instead (said in the notes) rather than training it here.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import torch

from .. import zoo
from ..batching import ServeConfig, serve
from ..bench import Report
from ..device import pick_device
from ..measure.requests import RequestStreamConfig, make_stream, summarize, wide_stream
from ..measure.speed import decode_sweep
from ..measure.standin import cached_or_standin
from ..measure.timing import round_order
from ..model import GPT


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64)
    context: int = 32
    steps: int = 32
    repeats: int = 5
    n_requests: int = 64
    slots: int = 16
    stream_repeats: int = 3
    loads: tuple[float, ...] = (0.5, 1.0, 2.0)  # arrival rate ÷ the saturating rate: below, at, above
    warmup_requests: int = 4  # served once per policy, untimed, before the timed runs


QUICK = BenchConfig(steps=16, repeats=3, n_requests=32, stream_repeats=2)
LOAD_NAMES = {0.5: "below", 1.0: "at", 2.0: "above"}  # how the notes name each load


def policy_comparison(model: GPT, requests, slots: int, repeats: int, warmup: int = 4) -> dict[str, dict]:
    """{policy: summary with medians over `repeats` runs} on the same requests: each policy first serves the first
    `warmup` requests untimed, then the policies alternate, the order reversed every round (static continuous,
    continuous static, ...)."""
    policies = ["static", "continuous"]
    for policy in policies if warmup else []:
        serve(model, requests[:warmup], ServeConfig(slots=slots, policy=policy))
    runs: dict[str, list[dict]] = {p: [] for p in policies}
    for i in range(repeats):
        for policy in round_order(policies, i):
            runs[policy].append(summarize(serve(model, requests, ServeConfig(slots=slots, policy=policy))))
    return {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in runs.items()}


def saturating_rate(model: GPT, stream: RequestStreamConfig, slots: int) -> tuple[float, float]:
    """(tokens/s, requests/s): the continuous server's throughput on a burst of `stream`'s requests (all at time 0),
    and the arrival rate that offers exactly that many tokens per second (÷ the stream's mean output length)."""
    burst = replace(stream, rate=math.inf)
    requests = make_stream(burst, tokens=zoo.corpus().val, block_size=model.config.block_size)
    tok_s = summarize(serve(model, requests, ServeConfig(slots=slots, policy="continuous")))["throughput_tok_s"]
    mean_out = statistics.mean(r.max_new_tokens for r in requests)
    return tok_s, tok_s / mean_out


def run(quick: bool = False) -> Report:
    cfg = QUICK if quick else BenchConfig()
    device = pick_device()
    loaded = cached_or_standin("teacher", device)
    model = loaded.model
    sweep = decode_sweep(model, cfg.batch_sizes, cfg.context, cfg.steps, cfg.repeats)
    tps = {r["batch_size"]: r["tokens_per_s"] for r in sweep}
    base = wide_stream(model.config.block_size, cfg.n_requests)
    capacity_tok_s, saturation = saturating_rate(model, base, cfg.slots)
    rows = [{"part": "decode", "batch_size": r["batch_size"], "ms_per_step": r["ms_per_step"],
             "tokens_per_s": r["tokens_per_s"]} for r in sweep]
    figures = {f"decode_tokens_per_s_batch{B}": v for B, v in tps.items()}
    figures |= {"capacity_tok_s": capacity_tok_s, "saturating_rate_per_s": saturation, "loads": {}}
    ratios = {"batch32_vs_batch1": tps[32] / tps[1]} if 1 in tps and 32 in tps else {}
    for load in cfg.loads:
        stream = replace(base, rate=load * saturation)
        requests = make_stream(stream, tokens=zoo.corpus().val, block_size=model.config.block_size)
        pol = policy_comparison(model, requests, cfg.slots, cfg.stream_repeats, cfg.warmup_requests)
        s, c = pol["static"], pol["continuous"]
        name = LOAD_NAMES.get(load, f"x{load:g}")
        rows += [{"part": f"stream/{name}/{p}", "rate_per_s": stream.rate, "slots": cfg.slots,
                  "tokens_per_s": v["throughput_tok_s"], "p50_latency_s": v["latency_p50_s"],
                  "p95_latency_s": v["latency_p95_s"], "slot_utilization": v["slot_utilization"],
                  "padding_waste": v["padding_waste"]} for p, v in pol.items()]
        figures["loads"][name] = {"rate_per_s": stream.rate, "load_vs_saturation": load} | {
            f"{p}_{k}": v[k] for p, v in pol.items()
            for k in ("throughput_tok_s", "latency_p50_s", "latency_p95_s", "ttft_p95_s", "slot_utilization",
                      "padding_waste")}
        suffix = "" if load == 1.0 else f"_{name}_saturation"
        ratios[f"continuous_vs_static_throughput{suffix}"] = c["throughput_tok_s"] / s["throughput_tok_s"]
        ratios[f"continuous_vs_static_p95_latency{suffix}"] = c["latency_p95_s"] / s["latency_p95_s"]
    figures |= {"stream": f"{base.n_requests} requests, Poisson arrivals at each load, prompts {base.prompt_len}, "
                          f"outputs {base.output_len}, seed {base.seed}",
                "context": cfg.context, "steps": cfg.steps, "threads": torch.get_num_threads(),
                "stream_repeats": cfg.stream_repeats}
    notes = [loaded.note,
             f"saturation: the continuous server delivered {capacity_tok_s:.0f} tokens/s on a burst, i.e. "
             f"{saturation:.2f} requests/s of this stream; loads {', '.join(f'{x:g}x' for x in cfg.loads)} of that",
             f"each load: one untimed warm-up of {cfg.warmup_requests} requests per policy, then {cfg.stream_repeats} "
             "rounds alternating the order, medians; the headline ratio is at saturation (1x)",
             "stream times are on a virtual clock advanced by each step's measured time (on a CPU the smaller "
             "of wall time and process CPU time, see lifecycle.batching)"]
    return Report(rows=rows, figures=_finite(figures), ratios=ratios, notes=notes)


def _finite(value):
    """`value` with every non-finite float (an infinite rate, an empty percentile) replaced by None, for JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value if not isinstance(value, float) or math.isfinite(value) else None
