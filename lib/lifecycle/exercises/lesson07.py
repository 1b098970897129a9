"""Lesson 07 exercises: an LRU response cache, and Che's prediction of its hit rate.

- `lru_hits(requests, capacity)`: replay a stream of request keys through an LRU cache of `capacity` entries and
  say, for each request, whether it was a hit (checked by replaying the same seeded streams through
  `caching.ResponseCache`).
- `che_hit_rate(popularity, cache_size, one_off_share)`: solve Che's equation for the characteristic time and
  return the predicted steady-state hit rate (checked against `measure.queries.che_hit_rate`).
"""
from __future__ import annotations

import numpy as np

from .. import caching
from ..measure import queries
from . import Case, check_function


def library_lru_hits(requests, capacity: int) -> list[bool]:
    """The reference: each request looked up in a `caching.ResponseCache`, stored after a miss."""
    cache = caching.ResponseCache(capacity=capacity)
    return [cache.get_or_compute(key, lambda: "answer")[1] for key in requests]


def _zipf_stream(n: int, catalogue: int, s: float, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(catalogue, size=n, p=queries.zipf_popularity(catalogue, s))]


def check_lru_hits(fn) -> bool | None:
    """`fn(requests: list, capacity: int) -> list[bool]`, one hit/miss per request, against ResponseCache."""
    cases = [Case("a, b, a with room for 2", (["a", "b", "a"], 2)),
             Case("capacity 1: only a repeat of the last key hits", (["x", "x", "y", "x", "x"], 1)),
             Case("a hit refreshes recency: a b a c a with capacity 2 (c must evict b, not a)",
                  (["a", "b", "a", "c", "a", "b"], 2)),
             Case("an empty stream", ([], 3)),
             Case("cache larger than the catalogue", (_zipf_stream(200, 20, 1.0, seed=0), 50)),
             Case("seeded Zipf stream: 2,000 requests, 300 items, capacity 30", (_zipf_stream(2000, 300, 0.9, 1), 30)),
             Case("seeded Zipf stream: capacity 7", (_zipf_stream(1000, 50, 1.2, seed=2), 7))]
    return check_function("lru_hits", fn, reference=library_lru_hits, cases=cases,
                          hint="on a hit, move the key to the most-recently-used end (an OrderedDict's "
                               "move_to_end); on a miss, insert it and, only if the cache now holds more than "
                               "`capacity` keys, evict the LEAST recently used one. Return one bool per request.")


def check_che_hit_rate(fn) -> bool | None:
    """`fn(popularity (n,), cache_size, one_off_share) -> float` against `queries.che_hit_rate`."""
    cases = [Case("Zipf s=1, 1,000 items, cache 100", (queries.zipf_popularity(1000, 1.0), 100, 0.0)),
             Case("Zipf s=0.8, 10,000 items, cache 1,000, 20% one-offs",
                  (queries.zipf_popularity(10_000, 0.8), 1000, 0.2)),
             Case("uniform popularity, 100 items, cache 25", (np.full(100, 0.01), 25, 0.0)),
             Case("cache of 1 entry", (queries.zipf_popularity(50, 1.5), 1, 0.1)),
             Case("cache of one fewer than the catalogue", (queries.zipf_popularity(40, 0.5), 39, 0.0)),
             Case("half the requests are one-offs", (queries.zipf_popularity(500, 1.1), 200, 0.5))]
    return check_function("che_hit_rate", fn, reference=queries.che_hit_rate, cases=cases, rtol=1e-4, atol=1e-6,
                          hint="each recurring item is requested at rate λ_i = (1 - one_off_share) * p_i; find t_C "
                               "with Σ(1 - exp(-λ_i t_C)) + one_off_share * t_C = cache_size (the left side grows "
                               "with t_C: bisect), then return Σ λ_i (1 - exp(-λ_i t_C)). One-offs take room but "
                               "never hit.")


EXERCISES = {"lru_hits": check_lru_hits, "che_hit_rate": check_che_hit_rate}
