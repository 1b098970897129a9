"""Micro-benchmarks of the two steps a server repeats: a decode step against batch size, and the time to the
first token with and without a cached prompt prefix.

- Decode (`decode_runner`, `measure_decode`, `decode_sweep`): a decode step reads every weight once whatever the
  batch size, so at small batches the step time hardly grows with the number of rows and tokens/s grows almost in
  proportion (lesson 05's first measurement, and part 1 of `python -m lifecycle.bench batching`). `decode_runner`
  prefills once and returns a function that rewinds the cache and decodes again, so the same work can be timed
  again and again. `decode_step_seconds` times one step at a fixed context (lesson 03: every step attends over
  the same number of positions, as a roofline point needs).
- Time to first token (`prefix_ttft`): prefill + one sample of a whole prompt against the same prompt whose system
  prefix comes from a `caching.PrefixCache` (lesson 07, and part 2 of `python -m lifecycle.bench caching`).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..batching import _check_fits
from ..caching import PrefixCache
from ..generate import decode_one_token, prefill, sample
from ..model import GPT, KVCache
from .timing import interleaved, timed

# ---- decode steps against batch size ----

def decode_runner(model: GPT, batch_size: int, context: int = 32, steps: int = 32) -> Callable[[], None]:
    """A function that runs `steps` greedy decode steps of `batch_size` rows after a `context`-token prefill
    (done once, here); each call rewinds the cache, so calls can be timed again and again."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_fits(context, steps, model.config.block_size, "a context")
    device = next(model.parameters()).device
    cache = KVCache.for_model(model, batch_size, max_len=context + steps)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, context), generator=gen).to(device)
    with torch.inference_mode():
        first = prefill(model, prompt, cache).argmax(-1)  # (B,)

    @torch.inference_mode()
    def run() -> None:
        cache.truncate(context)
        token = first
        for _ in range(steps):
            token = decode_one_token(model, token, cache).argmax(-1)
    return run


def measure_decode(model: GPT, batch_size: int, context: int = 32, steps: int = 32, repeats: int = 3) -> dict:
    """ms per decode step and tokens/s at one batch size (median of `repeats` timed runs after a warm-up)."""
    device = next(model.parameters()).device
    sec = timed(decode_runner(model, batch_size, context, steps), device, repeats=repeats).median / steps
    return {"batch_size": batch_size, "ms_per_step": 1e3 * sec, "tokens_per_s": batch_size / sec}


def decode_sweep(model: GPT, batch_sizes=(1, 8, 32, 64), context: int = 32, steps: int = 32,
                 repeats: int = 5) -> list[dict]:
    """Rows {batch_size, ms_per_step, tokens_per_s} at each batch size, all sizes timed interleaved (medians)."""
    device = next(model.parameters()).device
    runners = {B: decode_runner(model, B, context, steps) for B in batch_sizes}
    times = interleaved({str(B): fn for B, fn in runners.items()}, repeats=repeats, device=device)
    rows = []
    for B in batch_sizes:
        sec = times[str(B)].median / steps
        rows.append({"batch_size": B, "ms_per_step": 1e3 * sec, "tokens_per_s": B / sec})
    return rows



def decode_step_runner(model: GPT, context: int, batch: int = 1, steps: int = 40) -> Callable[[], None]:
    """A function that runs `steps` decode steps of `batch` rows, each attending over exactly `context` positions:
    context - 1 tokens prefilled once (here), plus the new one; the cache is rewound after every step."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    _check_fits(context, 0, model.config.block_size, "a context")
    if context < 2:
        raise ValueError(f"context must be at least 2 (one cached token and the new one), got {context!r}")
    device = next(model.parameters()).device
    cache = KVCache.for_model(model, batch)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, context), generator=gen).to(device)
    token = ids[:, -1]  # (B,)
    with torch.inference_mode():
        prefill(model, ids[:, :-1], cache)

    @torch.inference_mode()
    def run() -> None:
        for _ in range(steps):
            decode_one_token(model, token, cache)
            cache.truncate(context - 1)
    return run


def decode_step_seconds(model: GPT, context: int, batch: int = 1, steps: int = 40, repeats: int = 3) -> float:
    """Median seconds of one decode step at a fixed `context` (lesson 03's roofline point): `repeats` timed runs of
    `steps` steps after one warm-up run."""
    device = next(model.parameters()).device
    return timed(decode_step_runner(model, context, batch, steps), device, repeats=repeats, warmup=1).median / steps

# ---- time to first token, with and without a cached prefix ----

@torch.inference_mode()
def prefix_ttft(model: GPT, prompt_ids: list[int], prefix_ids: list[int], repeats: int = 15) -> dict[str, float]:
    """Median time to first token (prefill + one greedy sample), full prompt vs cached prefix, interleaved."""
    device = next(model.parameters()).device
    prefixes = PrefixCache(model, max_bytes=64 * 2**20)
    prefixes.add(prefix_ids)
    idx = torch.tensor([prompt_ids], device=device)

    def full():
        return sample(prefill(model, idx, KVCache.for_model(model, 1)))

    def cached():
        return sample(prefixes.prefill(prompt_ids)[0])

    t = interleaved({"full": full, "cached": cached}, repeats=repeats, warmup=2, device=device)
    full_s, cached_s = t["full"].median, t["cached"].median
    return {"full_ms": 1e3 * full_s, "cached_ms": 1e3 * cached_s, "speedup": full_s / cached_s,
            "prompt_tokens": len(prompt_ids), "prefix_tokens": len(prefix_ids)}
