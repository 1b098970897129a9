"""A stream of repeated questions, the hit rate an LRU cache should see on it, and what that hit rate saves.

A seeded **query stream** (`QueryStreamConfig`, `query_ids`, `query_stream`) models chat traffic: a catalogue of
distinct questions with Zipf popularity p_i ∝ 1/i^s, a share of one-off questions seen once, all behind one system
prompt (`SYSTEM_PROMPT`). Lesson 07 serves it through `lifecycle.caching`; `lifecycle.loadtest` sends it over HTTP.

**Predicted hit rate** (`che_hit_rate`): Che's approximation for an LRU cache of C entries under the independent
reference model (each request drawn independently from fixed popularities). An item with request rate λ_i stays
cached for about a fixed "characteristic time" t_C after its last request, so it is in the cache with probability
1 - exp(-λ_i t_C), and t_C solves Σ_i (1 - exp(-λ_i t_C)) + λ_once · t_C = C (one-off items each occupy a slot for
t_C, then leave). The hit rate is Σ_i λ_i (1 - exp(-λ_i t_C)). The exact LRU formula needs a sum over every
ordered set of C items; this is a one-dimensional root-find and is known to be accurate for Zipf popularity.
`simulate_hit_rate` runs the real `ResponseCache` on the ids to check it; `what_if` turns a hit rate into dollars.

References: H. Che, Y. Tung, Z. Wang, "Hierarchical Web caching systems: modeling, design and experimental
results", IEEE JSAC 20(7), 2002; C. Fricker, P. Robert, J. Roberts, "A versatile and accurate approximation for
LRU cache performance", ITC 24, 2012 (why it is accurate); L. Breslau et al., "Web caching and Zipf-like
distributions", INFOCOM 1999.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..caching import CacheStats, ResponseCache, _is_count

# ---- the stream ----

SYSTEM_PROMPT = ("You are the keeper of the prompt book at the Globe. Answer each question in the voice of a player "
                 "on the stage: plain words, short lines, nothing modern. Keep to the matter asked, and if you know "
                 "not, say so. Speak as one who has read every play twice, and be kind to all of the groundlings who "
                 "ask.\n")
_OPENERS = ("Tell me of", "Speak of", "What news of", "Sing of", "Who keeps", "Where lies", "Why weeps", "How fares",
            "Who loves", "What ails", "Who fears", "Where sleeps", "Who mocks", "What became of", "Who serves",
            "Why flies")
_ADJECTIVES = ("old", "young", "proud", "gentle", "false", "honest", "weary", "merry", "bold", "jealous", "noble",
               "wretched", "fair", "cruel", "wise", "foolish", "silent", "banished", "royal", "poor", "wild", "sad",
               "crafty", "valiant")
_NOUNS = ("king", "queen", "fool", "ghost", "lady", "duke", "soldier", "witch", "prince", "nurse", "friar", "tailor",
          "shepherd", "player", "sailor", "father", "daughter", "brother", "knight", "bishop", "clown", "lover",
          "widow", "captain", "porter", "herald", "merchant", "jester", "page", "cook", "hermit", "steward")
_CAPACITY = len(_OPENERS) * len(_ADJECTIVES) * len(_NOUNS)  # 12,288 distinct questions before numbering


def question_text(i: int) -> str:
    """Distinct question number i (i >= 0), built from word lists; different i always give different text."""
    j = (i * 7919) % _CAPACITY  # 7919 is prime and coprime to the capacity: a scramble, not a pattern
    j, noun = divmod(j, len(_NOUNS))
    opener, adjective = divmod(j, len(_ADJECTIVES))
    text = f"{_OPENERS[opener]} the {_ADJECTIVES[adjective]} {_NOUNS[noun]}"
    return f"{text}, {i // _CAPACITY}?" if i >= _CAPACITY else f"{text}?"


@dataclass(frozen=True)
class QueryStreamConfig:
    n_queries: int = 1000
    catalogue_size: int = 200  # distinct questions that recur
    zipf_s: float = 1.0  # popularity exponent: question of rank i is asked with probability ∝ 1 / i^s
    one_off_share: float = 0.2  # share of requests that are questions nobody asks again
    seed: int = 0
    system_prompt: str = SYSTEM_PROMPT

    def __post_init__(self):
        for name in ("n_queries", "catalogue_size"):
            v = getattr(self, name)
            if not _is_count(v):
                raise ValueError(f"QueryStreamConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.zipf_s, (int, float)) and math.isfinite(self.zipf_s) and self.zipf_s >= 0):
            raise ValueError(f"zipf_s must be a finite number >= 0 (0 = every question equally popular), got {self.zipf_s!r}")
        if not (isinstance(self.one_off_share, (int, float)) and 0 <= self.one_off_share <= 1):
            raise ValueError(f"one_off_share must be a fraction in [0, 1] (20% is 0.2), got {self.one_off_share!r}")


def zipf_popularity(n: int, s: float) -> np.ndarray:
    """Request probabilities (n,) of ranks 1..n under Zipf's law with exponent s (they sum to 1)."""
    QueryStreamConfig(catalogue_size=n, zipf_s=s)  # the same checks, the same messages
    weights = np.arange(1, n + 1, dtype=np.float64) ** -float(s)
    return weights / weights.sum()


def query_ids(cfg: QueryStreamConfig) -> np.ndarray:
    """Question ids (n_queries,): ranks 0..catalogue_size-1 drawn by popularity; one-offs get fresh ids after them."""
    rng = np.random.default_rng(cfg.seed)
    ids = rng.choice(cfg.catalogue_size, size=cfg.n_queries, p=zipf_popularity(cfg.catalogue_size, cfg.zipf_s))
    once = rng.random(cfg.n_queries) < cfg.one_off_share
    ids[once] = cfg.catalogue_size + np.arange(int(once.sum()))  # each one-off is a question never seen before
    return ids


def query_stream(cfg: QueryStreamConfig) -> list[str]:
    """The stream's prompts: the shared system prompt, then the question, then a newline for the answer."""
    return [f"{cfg.system_prompt}{question_text(int(i))}\n" for i in query_ids(cfg)]


# ---- the hit rate an LRU cache should see, predicted and simulated ----

def che_hit_rate(popularity, cache_size: int, one_off_share: float = 0.0) -> float:
    """Steady-state hit rate of an LRU cache of `cache_size` entries (Che's approximation; see module docstring).

    popularity: probabilities of the recurring items (sum 1); one_off_share: requests for items never seen again.
    """
    if not _is_count(cache_size):
        raise ValueError(f"cache_size must be a positive integer (entries), got {cache_size!r}")
    p = np.asarray(popularity, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or (p < 0).any() or not math.isclose(p.sum(), 1.0, rel_tol=1e-6):
        raise ValueError("popularity must be a non-empty 1-D array of probabilities that sum to 1")
    QueryStreamConfig(one_off_share=one_off_share)  # checks the fraction
    rate = (1 - one_off_share) * p  # request rate of each recurring item, per request
    if rate.sum() == 0:
        return 0.0
    if one_off_share == 0 and cache_size >= np.count_nonzero(p):
        return 1.0  # everything that is ever asked fits: after warm-up, every request hits

    def occupancy(t):  # expected number of items requested within the last t requests (increases with t)
        return -np.expm1(-rate * t).sum() + one_off_share * t

    lo, hi = 0.0, 1.0
    while occupancy(hi) < cache_size:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if occupancy(mid) < cache_size else (lo, mid)
    return float((rate * -np.expm1(-rate * hi)).sum())


def simulate_hit_rate(ids, capacity: int, warmup: int = 0) -> float:
    """Hit rate of a ResponseCache of `capacity` entries on the id stream, counted after the first `warmup` requests.

    This runs the real cache on the keys alone (the answers are never generated): the hit rate depends only on
    which key comes when, not on what the model would say.
    """
    cache = ResponseCache(capacity=capacity)
    ids = [int(i) for i in ids]
    if not 0 <= warmup < len(ids):
        raise ValueError(f"warmup must be in [0, {len(ids)}), got {warmup!r}")
    for i in ids[:warmup]:
        cache.get_or_compute(i, lambda: "")
    cache.stats = CacheStats()
    for i in ids[warmup:]:
        cache.get_or_compute(i, lambda: "")
    return cache.stats.hit_rate


def hit_rate_sweep(catalogue_size: int, zipf_s: tuple[float, ...], sizes: tuple[int, ...], one_off_share: float,
                   n_queries: int, warmup: int, seed: int = 0) -> list[dict]:
    """Measured (the real cache on the key stream, after warm-up) vs predicted (Che) hit rate, per (s, size)."""
    rows = []
    for s in zipf_s:
        cfg = QueryStreamConfig(n_queries=n_queries, catalogue_size=catalogue_size, zipf_s=s,
                                one_off_share=one_off_share, seed=seed)
        ids = query_ids(cfg)
        p = zipf_popularity(catalogue_size, s)
        for size in sizes:
            measured = simulate_hit_rate(ids, size, warmup=warmup)
            predicted = che_hit_rate(p, size, one_off_share)
            rows.append({"zipf_s": s, "cache_size": size, "measured": measured, "predicted": predicted,
                         "error_pp": 100 * (measured - predicted)})
    return rows


# ---- what a hit rate is worth ----

def what_if(zipf_s: float, cache_size: int, repeated_share: float, catalogue_size: int = 10_000,
            queries_per_day: float = 1e6, usd_per_query: float = 0.01) -> dict[str, float]:
    """Predicted hit rate and the dollars it saves at a given scale, assuming a hit costs nothing to serve."""
    if not (isinstance(repeated_share, (int, float)) and 0 <= repeated_share <= 1):
        raise ValueError(f"repeated_share must be a fraction in [0, 1], got {repeated_share!r}")
    for name, v in (("queries_per_day", queries_per_day), ("usd_per_query", usd_per_query)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    hit = che_hit_rate(zipf_popularity(catalogue_size, zipf_s), cache_size, 1 - repeated_share)
    daily = queries_per_day * usd_per_query
    return {"hit_rate": hit, "usd_per_day_no_cache": daily, "usd_per_day_cached": daily * (1 - hit),
            "usd_saved_per_day": daily * hit, "usd_saved_per_year": daily * hit * 365}
