"""The requests a batching server is measured on, and the summary of how it served them.

A seeded **request stream** (`RequestStreamConfig`, `make_stream`): arrivals are a Poisson process at `rate`
requests per second (exponential gaps of mean 1/rate; `math.inf` puts everyone at time 0), prompt and output
lengths are drawn from stated distributions (`LengthDist`: uniform, or log-uniform for the widely varying lengths
of real chat outputs), and prompts are slices of a text (or random ids). Same config and seed, same stream.

`summarize` turns a `batching.ServeResult` (per-request records and the step log, on the server's virtual clock)
into what a serving benchmark reports: throughput, TTFT and end-to-end latency percentiles, tokens/s per request,
slot utilization (time-weighted share of slots holding a live request while decoding) and padding waste (computed
token positions that served no one). Lesson 05 and `python -m lifecycle.bench batching` read their runs this way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..batching import Request, ServeResult

LENGTH_KINDS = ("uniform", "loguniform")


# ---- the stream ----

@dataclass(frozen=True)
class LengthDist:
    """Integer lengths in [low, high]: "uniform" (each length equally likely) or "loguniform" (log-length uniform:
    many short, a few long — widely varying, like real chat outputs)."""

    low: int
    high: int
    kind: str = "uniform"

    def __post_init__(self):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (self.low, self.high)) \
                or not 1 <= self.low <= self.high:
            raise ValueError(f"lengths need integers 1 <= low <= high, got low={self.low!r}, high={self.high!r}")
        if self.kind not in LENGTH_KINDS:
            raise ValueError(f"kind must be one of {LENGTH_KINDS}, got {self.kind!r}")

    def sample(self, n: int, rng: np.random.Generator) -> list[int]:
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, size=n).tolist()
        u = rng.uniform(math.log(self.low), math.log(self.high + 1), size=n)
        return np.minimum(np.floor(np.exp(u)), self.high).astype(int).tolist()


@dataclass(frozen=True)
class RequestStreamConfig:
    n_requests: int = 64
    rate: float = 8.0  # mean arrivals per second (Poisson process); math.inf = everyone at time 0
    prompt_len: LengthDist = LengthDist(8, 64)
    output_len: LengthDist = LengthDist(4, 256, "loguniform")
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.n_requests, int) or isinstance(self.n_requests, bool) or self.n_requests < 1:
            raise ValueError(f"n_requests must be a positive integer, got {self.n_requests!r}")
        if not isinstance(self.rate, (int, float)) or math.isnan(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a number of requests per second > 0 (math.inf allowed), got {self.rate!r}")


def make_stream(config: RequestStreamConfig, tokens: torch.Tensor | None = None, vocab_size: int | None = None,
                block_size: int | None = None) -> list[Request]:
    """Requests with Poisson arrivals (exponential gaps of mean 1/rate); prompts are slices of `tokens` (e.g. the
    validation text) or, without it, uniform random ids below vocab_size. Same config and seed → same stream."""
    c = config
    if block_size is not None and c.prompt_len.high + c.output_len.high > block_size:
        raise ValueError(f"prompt_len.high + output_len.high = {c.prompt_len.high + c.output_len.high} exceeds the "
                         f"context window of {block_size}; lower one of them")
    if tokens is None and not (isinstance(vocab_size, int) and vocab_size > 0):
        raise ValueError("give tokens (a 1-D tensor of token ids to cut prompts from) or a positive vocab_size")
    if tokens is not None and len(tokens) <= c.prompt_len.high:
        raise ValueError(f"tokens has {len(tokens)} ids, fewer than prompt_len.high={c.prompt_len.high}")
    rng = np.random.default_rng(c.seed)
    gaps = np.zeros(c.n_requests) if math.isinf(c.rate) else rng.exponential(1 / c.rate, size=c.n_requests)
    arrivals = np.cumsum(gaps) - gaps[0]  # the first request arrives at time 0
    p_lens, o_lens = c.prompt_len.sample(c.n_requests, rng), c.output_len.sample(c.n_requests, rng)
    out = []
    for i, (t, p, o) in enumerate(zip(arrivals.tolist(), p_lens, o_lens)):
        if tokens is not None:
            s = int(rng.integers(0, len(tokens) - p))
            prompt = tuple(int(x) for x in tokens[s:s + p])
        else:
            prompt = tuple(rng.integers(0, vocab_size, size=p).tolist())
        out.append(Request(i, prompt, o, float(t)))
    return out


def wide_stream(block_size: int, n_requests: int = 64, rate: float = 50.0, seed: int = 0) -> RequestStreamConfig:
    """A burst that keeps every slot busy: prompts of 16-64 tokens, outputs log-uniform from 4 tokens up to what the
    window leaves (block_size - 64), so most answers are short and a few are very long."""
    return RequestStreamConfig(n_requests, rate, LengthDist(16, 64), LengthDist(4, block_size - 64, "loguniform"), seed)


# ---- the summary of a serving run ----

def percentiles(values: Sequence[float], qs=(50, 95, 99)) -> dict[str, float]:
    """{"p50": ..., "p95": ..., "p99": ...} of `values` (numpy's linear interpolation between order statistics)."""
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def summarize(result: ServeResult) -> dict:
    """Throughput, latency percentiles, slot utilization and padding waste of one serving run (`batching.serve`)."""
    records, steps, slots = result.records, result.steps, result.config.slots
    n_tokens = sum(len(r.tokens) for r in records)
    makespan = max(r.finish for r in records) - min(r.arrival for r in records)
    decode = [s for s in steps if s.kind == "decode"]
    busy = sum(s.seconds for s in steps)
    computed, useful = sum(s.computed for s in steps), sum(s.useful for s in steps)
    dec_time = sum(s.seconds for s in decode)
    return {
        "requests": len(records), "tokens": n_tokens, "makespan_s": makespan,
        "throughput_tok_s": n_tokens / makespan if makespan > 0 else math.inf,
        "requests_per_s": len(records) / makespan if makespan > 0 else math.inf,
        **{f"ttft_{k}_s": v for k, v in percentiles([r.ttft for r in records]).items()},
        **{f"latency_{k}_s": v for k, v in percentiles([r.latency for r in records]).items()},
        "tokens_per_s_per_request_p50": percentiles([r.tokens_per_s for r in records], (50,))["p50"],
        # share of slot capacity spent on live requests while decoding (time-weighted)
        "slot_utilization": sum(s.seconds * s.useful for s in decode) / (slots * dec_time) if dec_time else 0.0,
        "padding_waste": 1 - useful / computed if computed else 0.0,  # computed token-rows that served no one
        "busy_fraction": busy / makespan if makespan > 0 else 1.0,
        "decode_steps": len(decode),
    }
