"""Lesson 10 exercises: the figures a serving benchmark reports, and the batch a GPU's memory allows.

- `serving_summary(arrivals, first_tokens, finishes, n_tokens)`: from per-request times (seconds) and output token
  counts, the run's throughput (output tokens per second from the first arrival to the last finish), the 95th
  percentile of end-to-end latency (finish - arrival), and the median time per output token after the first,
  (finish - first token) / (n - 1) over requests with more than one token (checked against `engine.summarize`).
- `max_batch(memory_bytes, n_params, bytes_per_param, n_layer, n_kv_heads, head_dim, context, bytes_per_value)`: how
  many requests of `context` tokens fit their KV cache into the memory the weights leave (checked against
  `roofline.kv_limited_batch` fed `pricing.kv_cache_bytes`).
"""
from __future__ import annotations

import numpy as np

from ..batching import Record
from ..engine import summarize
from ..pricing import kv_cache_bytes
from ..roofline import kv_limited_batch
from . import Case, check_function

KEYS = ("throughput_tok_s", "latency_p95_s", "tpot_p50_s")


# ---- 1. throughput and latency percentiles ----

def reference_serving_summary(arrivals, first_tokens, finishes, n_tokens) -> dict:
    records = []
    for i, (a, f, e, n) in enumerate(zip(arrivals, first_tokens, finishes, n_tokens)):
        r = Record(i, float(a), 1, first_token=float(f), finish=float(e))
        r.tokens = [0] * int(n)
        records.append(r)
    s = summarize(records)
    return {k: s[k] for k in KEYS}


def _requests(n: int, seed: int, one_token: bool = False):
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(0, 2, n))
    first = arrivals + rng.uniform(0.01, 0.3, n)
    tokens = rng.integers(2, 40, n)
    if one_token:
        tokens[::3] = 1
    finishes = first + (tokens - 1) * rng.uniform(0.002, 0.02, n)
    return (arrivals.tolist(), first.tolist(), finishes.tolist(), tokens.tolist())


def check_serving_summary(fn) -> bool | None:
    """`fn(arrivals, first_tokens, finishes, n_tokens) -> {"throughput_tok_s", "latency_p95_s", "tpot_p50_s"}`."""
    cases = [Case("20 requests", _requests(20, 0)), Case("5 requests", _requests(5, 1)),
             Case("some requests of a single token (no TPOT for them)", _requests(12, 2, one_token=True)),
             Case("the first request arrives late", tuple([a + 5 for a in x] if i < 3 else x
                                                          for i, x in enumerate(_requests(8, 3))))]
    return check_function("serving_summary", fn, reference=reference_serving_summary, cases=cases, rtol=1e-6,
                          hint="throughput = sum(n_tokens) / (max(finishes) - min(arrivals)) (the run's span, not "
                               "the sum of latencies); latency = finish - arrival, p95 with np.percentile(..., 95); "
                               "TPOT = (finish - first_token) / (n - 1), only for n > 1 (the first token is TTFT's), "
                               "median with np.percentile(..., 50).")


# ---- 2. the batch the KV cache allows ----

def reference_max_batch(memory_bytes, n_params, bytes_per_param, n_layer, n_kv_heads, head_dim, context,
                        bytes_per_value) -> int:
    kv = kv_cache_bytes(n_layer, n_kv_heads, head_dim, context, bytes_per_value)
    return kv_limited_batch(memory_bytes, n_params * bytes_per_param, kv)


def check_max_batch(fn) -> bool | None:
    """`fn(memory_bytes, n_params, bytes_per_param, n_layer, n_kv_heads, head_dim, context, bytes_per_value) -> int`."""
    cases = [Case("Llama-2-70B (GQA, 8 KV heads) on 2 × 80 GB, 4k context", (144e9, 69e9, 2, 80, 8, 128, 4096, 2)),
             Case("Llama-2-7B on one 80 GB GPU, 2k context", (72e9, 6.7e9, 2, 32, 32, 128, 2048, 2)),
             Case("the same with int8 weights and an fp8 KV cache", (72e9, 6.7e9, 1, 32, 32, 128, 2048, 1)),
             Case("the course's teacher in fp32 on 1 GB", (1e9, 1.2e6, 4, 6, 4, 32, 384, 4)),
             Case("barely room for one request", (16e9 + 3e9, 7e9, 2, 32, 32, 128, 5000, 2))]
    return check_function("max_batch", fn, reference=reference_max_batch, cases=cases, rtol=0, atol=0,
                          hint="one request's KV cache = 2 (keys AND values) × n_layer × n_kv_heads × head_dim × "
                               "context × bytes_per_value; the memory left = memory_bytes - n_params × "
                               "bytes_per_param; the batch is how many whole requests fit: floor (//), not round.")


EXERCISES = {"serving_summary": check_serving_summary, "max_batch": check_max_batch}
