"""Lesson 03 exercises: a decoding rule, and one decode step through the KV cache.

- `top_p_probs(logits, top_p)`: nucleus filtering: softmax, keep the most likely tokens until their probabilities
  add up to top_p (the one that crosses it included; the most likely token always stays), renormalise (checked
  against `generate.logits_to_probs(logits, temperature=1.0, top_p=top_p)`).
- `decode_attention(q, k_new, v_new, cache_k, cache_v, pos)`: write one new position's key and value into one
  layer's cache, in place, and attend over positions 0..pos (checked against `KVCache.write` followed by the
  attention call `CausalSelfAttention.forward` makes for a single query).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..generate import logits_to_probs
from ..model import KVCache
from . import Case, adapt, check_function


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- 1. top-p (nucleus) filtering ----

def reference_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    return logits_to_probs(logits, temperature=1.0, top_p=top_p)


def check_top_p_probs(fn) -> bool | None:
    """`fn(logits (..., V), top_p) -> probabilities (..., V)` against `logits_to_probs(..., top_p=top_p)`."""
    peaked = torch.tensor([4.0, 1.0, 0.5, 0.0, -1.0, -2.0])  # the favourite alone holds about 85%
    cases = [Case("V=6, top_p=0.9", (_randn(6, seed=0, scale=2.0), 0.9)),
             Case("a batch of 3 rows, V=20, top_p=0.5", (_randn(3, 20, seed=1, scale=2.0), 0.5)),
             Case("top_p=1.0 keeps every token", (_randn(2, 10, seed=2), 1.0)),
             Case("top_p=0.01 keeps only the most likely token", (_randn(2, 10, seed=3), 0.01)),
             Case("the favourite alone already passes top_p=0.8", (peaked, 0.8)),
             Case("(B=2, T=3, V=12), top_p=0.7", (_randn(2, 3, 12, seed=4, scale=1.5), 0.7))]
    return check_function("top_p_probs", fn, reference=reference_top_p, cases=cases, rtol=1e-5, atol=1e-6,
                          hint="sort the probabilities in descending order (probs.sort(dim=-1, descending=True)); "
                               "a token stays when the probability ranked ABOVE it (cumsum minus itself) is still "
                               "below top_p, so the token that crosses top_p stays; zero the others, put the kept "
                               "ones back in vocabulary order (scatter with the sort's indices) and divide by "
                               "their sum.")


# ---- 2. one decode step through the KV cache ----

def reference_decode_attention(q, k_new, v_new, cache_k, cache_v, pos):
    """KVCache.write into a one-layer view of the given tensors, then the model's single-query attention."""
    cache = KVCache(cache_k.unsqueeze(0), cache_v.unsqueeze(0), length=pos)  # (1, B, nh, max_len, hs): views
    keys, values = cache.write(0, pos, k_new, v_new)  # (B, nh, pos + 1, hs)
    y = F.scaled_dot_product_attention(q, keys, values)  # one query may see every cached key: no mask
    return {"output": y, "cache_k": cache_k, "cache_v": cache_v}


def _learner_decode(fn):
    def run(q, k_new, v_new, cache_k, cache_v, pos):
        y = fn(q, k_new, v_new, cache_k, cache_v, pos)
        return {"output": y, "cache_k": cache_k, "cache_v": cache_v}  # the cache must have been written in place
    return run


def check_decode_attention(fn) -> bool | None:
    """`fn(q, k_new, v_new, cache_k, cache_v, pos) -> (B, nh, 1, hs)`, writing the cache in place."""
    def case(B, nh, max_len, hs, pos, seed):
        new = tuple(_randn(B, nh, 1, hs, seed=seed + i) for i in range(3))
        # the whole cache is filled with numbers: positions after pos are leftovers of an earlier, longer sequence
        old = tuple(_randn(B, nh, max_len, hs, seed=seed + 3 + i) for i in range(2))
        return (*new, *old, pos)

    cases = [Case("the first token (pos=0: it attends to itself only)", case(1, 1, 8, 4, 0, seed=0)),
             Case("pos=5 in a cache of 16, positions 6.. hold stale numbers", case(1, 2, 16, 8, 5, seed=10)),
             Case("the teacher's shape: B=2, 4 heads, hs=32, pos=20", case(2, 4, 32, 32, 20, seed=20)),
             Case("the last slot of the cache (pos = max_len - 1)", case(1, 2, 12, 8, 11, seed=30))]
    return check_function("decode_attention", adapt(fn, _learner_decode), reference=reference_decode_attention,
                          cases=cases, rtol=1e-4, atol=1e-5,
                          hint="first store the new key and value: cache_k[:, :, pos] = k_new[:, :, 0] (same for v), "
                               "in place; then attend over keys = cache_k[:, :, :pos + 1] only (the positions after "
                               "pos are stale): softmax(q @ keys.transpose(-2, -1) / sqrt(hs)) @ values. A single "
                               "query needs no causal mask: every cached position is in its past.")


EXERCISES = {"top_p_probs": check_top_p_probs, "decode_attention": check_decode_attention}
