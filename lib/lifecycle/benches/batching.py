"""`python -m lifecycle.bench batching`: decode throughput against batch size, and static vs continuous batching.

Part 1 times greedy decode steps of the teacher at batch 1, 8, 32 and 64 (a short prompt of `context` tokens, then
`steps` steps), all batch sizes interleaved, medians. Part 2 serves one seeded request stream with widely varying
output lengths under both policies, alternating static, continuous, static, … and reports the median throughput
and p95 latency of each (virtual clock advanced by measured step times; see lifecycle.batching). The stream:
64 requests arriving as a Poisson burst at 50/s (faster than either policy serves them), prompts of 16-64 tokens,
outputs log-uniform from 4 to block_size - 64 tokens, 16 slots.

Decode speed does not depend on the weights' values, so when the trained teacher is not cached yet the same
architecture with random weights is timed instead (said in the notes) rather than training it here.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

from .. import zoo
from ..batching import ServeConfig, serve
from ..bench import Report
from ..device import pick_device
from ..measure.requests import make_stream, summarize, wide_stream
from ..measure.speed import decode_sweep
from ..model import GPT, preset
from ..train import CheckpointError, read_checkpoint_meta


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64)
    context: int = 32
    steps: int = 32
    repeats: int = 5
    n_requests: int = 64
    slots: int = 16
    stream_repeats: int = 3


QUICK = BenchConfig(steps=16, repeats=3, n_requests=32, stream_repeats=1)


def bench_model(device: torch.device) -> tuple[GPT, str | None]:
    """The cached teacher, or (not cached yet) the teacher's architecture with random weights and a note."""
    try:
        read_checkpoint_meta(zoo.model_path("teacher", device))
        return zoo.get("teacher", device, progress=False), None
    except CheckpointError:
        torch.manual_seed(0)
        vocab = zoo.corpus().tokenizer.vocab_size
        model = GPT(preset(zoo.teacher_preset(device), vocab_size=vocab)).to(device).eval()
        return model, "teacher not cached: timed its architecture with random weights (speed does not depend on them)"


def policy_comparison(model: GPT, requests, slots: int, repeats: int) -> dict[str, dict]:
    """{policy: summary with medians over `repeats` alternating runs} on the same requests."""
    runs: dict[str, list[dict]] = {"static": [], "continuous": []}
    for _ in range(repeats):
        for policy in runs:
            runs[policy].append(summarize(serve(model, requests, ServeConfig(slots=slots, policy=policy))))
    return {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in runs.items()}


def run(quick: bool = False) -> Report:
    cfg = QUICK if quick else BenchConfig()
    device = pick_device()
    model, note = bench_model(device)
    sweep = decode_sweep(model, cfg.batch_sizes, cfg.context, cfg.steps, cfg.repeats)
    tps = {r["batch_size"]: r["tokens_per_s"] for r in sweep}
    stream = wide_stream(model.config.block_size, cfg.n_requests)
    requests = make_stream(stream, tokens=zoo.corpus().val, block_size=model.config.block_size)
    pol = policy_comparison(model, requests, cfg.slots, cfg.stream_repeats)
    s, c = pol["static"], pol["continuous"]
    rows = [{"part": "decode", "batch_size": r["batch_size"], "ms_per_step": r["ms_per_step"],
             "tokens_per_s": r["tokens_per_s"]} for r in sweep]
    rows += [{"part": f"stream/{p}", "slots": cfg.slots, "tokens_per_s": v["throughput_tok_s"],
              "p50_latency_s": v["latency_p50_s"], "p95_latency_s": v["latency_p95_s"],
              "slot_utilization": v["slot_utilization"], "padding_waste": v["padding_waste"]} for p, v in pol.items()]
    figures = {f"decode_tokens_per_s_batch{B}": v for B, v in tps.items()}
    figures |= {f"{p}_{k}": v[k] for p, v in pol.items()
                for k in ("throughput_tok_s", "latency_p50_s", "latency_p95_s", "ttft_p95_s", "slot_utilization",
                          "padding_waste")}
    figures |= {"stream": f"{stream.n_requests} requests, Poisson {stream.rate}/s, prompts {stream.prompt_len}, "
                          f"outputs {stream.output_len}, seed {stream.seed}",
                "context": cfg.context, "steps": cfg.steps, "threads": torch.get_num_threads()}
    ratios = {"continuous_vs_static_throughput": c["throughput_tok_s"] / s["throughput_tok_s"],
              "continuous_vs_static_p95_latency": c["latency_p95_s"] / s["latency_p95_s"]}
    if 1 in tps and 32 in tps:
        ratios = {"batch32_vs_batch1": tps[32] / tps[1]} | ratios
    notes = [note] if note else []
    notes.append("stream times are on a virtual clock advanced by each step's measured time (on a CPU the smaller "
                 "of wall time and process CPU time, see lifecycle.batching)")
    return Report(rows=rows, figures={k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                                      for k, v in figures.items()}, ratios=ratios, notes=notes)
