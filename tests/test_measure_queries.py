"""lifecycle.measure.queries: the seeded query stream, Che's predicted hit rate against the real LRU cache, dollars."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lifecycle.measure import queries as Q


def test_hit_rate_sweep_rows_pair_the_simulation_with_the_prediction():
    rows = Q.hit_rate_sweep(catalogue_size=100, zipf_s=(0.8, 1.2), sizes=(5, 50), one_off_share=0.2, n_queries=4000,
                            warmup=1000)
    assert [(r["zipf_s"], r["cache_size"]) for r in rows] == [(0.8, 5), (0.8, 50), (1.2, 5), (1.2, 50)]
    cfg = Q.QueryStreamConfig(n_queries=4000, catalogue_size=100, zipf_s=1.2, one_off_share=0.2, seed=0)
    last = rows[-1]
    assert last["measured"] == Q.simulate_hit_rate(Q.query_ids(cfg), 50, warmup=1000)
    assert last["predicted"] == Q.che_hit_rate(Q.zipf_popularity(100, 1.2), 50, 0.2)
    assert math.isclose(last["error_pp"], 100 * (last["measured"] - last["predicted"]))


def test_query_stream_is_seeded_and_one_offs_never_repeat():
    cfg = Q.QueryStreamConfig(n_queries=3000, catalogue_size=50, zipf_s=1.1, one_off_share=0.3, seed=7)
    ids = Q.query_ids(cfg)
    assert np.array_equal(ids, Q.query_ids(cfg))
    once = ids[ids >= cfg.catalogue_size]
    assert len(np.unique(once)) == len(once)
    assert abs(len(once) / len(ids) - 0.3) < 0.05
    prompts = Q.query_stream(Q.QueryStreamConfig(n_queries=5))
    assert all(p.startswith(Q.SYSTEM_PROMPT) for p in prompts)


def test_question_texts_are_distinct():
    texts = [Q.question_text(i) for i in range(13_000)]
    assert len(set(texts)) == len(texts)


def test_che_approximation_tracks_the_simulated_lru():
    cfg = Q.QueryStreamConfig(n_queries=30_000, catalogue_size=300, zipf_s=0.9, one_off_share=0.2, seed=1)
    ids = Q.query_ids(cfg)
    p = Q.zipf_popularity(cfg.catalogue_size, cfg.zipf_s)
    for size in (5, 30, 150):
        measured = Q.simulate_hit_rate(ids, size, warmup=5_000)
        assert abs(measured - Q.che_hit_rate(p, size, 0.2)) < 0.02
    assert Q.che_hit_rate(p, 300) == 1.0  # everything fits and nothing is new
    rates = [Q.che_hit_rate(p, c, 0.2) for c in (1, 10, 100, 1000)]
    assert rates == sorted(rates) and rates[-1] < 0.8  # one-offs can never hit


def test_what_if_dollars_follow_from_the_hit_rate():
    r = Q.what_if(zipf_s=1.0, cache_size=1000, repeated_share=0.8)
    assert math.isclose(r["usd_saved_per_day"], 10_000 * r["hit_rate"])
    assert math.isclose(r["usd_saved_per_year"], 365 * r["usd_saved_per_day"])
    assert Q.what_if(zipf_s=1.0, cache_size=1000, repeated_share=0.0)["hit_rate"] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(zipf_s=-0.5), "zipf_s"), (dict(zipf_s=float("nan")), "zipf_s"), (dict(zipf_s=float("inf")), "zipf_s"),
    (dict(one_off_share=1.5), "one_off_share"), (dict(catalogue_size=0), "catalogue_size"),
    (dict(n_queries=2.0), "n_queries"),
])
def test_invalid_streams_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Q.QueryStreamConfig(**kwargs)


def test_invalid_hit_rate_questions_are_refused():
    with pytest.raises(ValueError, match="popularity"):
        Q.che_hit_rate([0.5, 0.2], 3)
    with pytest.raises(ValueError, match="cache_size"):
        Q.che_hit_rate([1.0], 0)
