"""Serving memory per request and a price per token split into amortized training and serving (costs + widget)."""
from __future__ import annotations

import math

import pytest

from lifecycle import costs, pricing
from lifecycle.widgets import pricing_dashboard


def test_kv_cache_bytes_by_hand():
    # GPT-3 175B at its 2,048-token context, 16-bit: 2 × 96 layers × 96 heads × 128 × 2048 × 2 bytes
    assert pricing.kv_cache_bytes(96, 96, 128, 2048) == 2 * 96 * 96 * 128 * 2048 * 2 == 9_663_676_416
    assert pricing.kv_cache_bytes(80, 8, 128, 4096, bytes_per_value=1, batch=3) == 3 * 2 * 80 * 8 * 128 * 4096
    with pytest.raises(ValueError, match="context"):
        pricing.kv_cache_bytes(2, 2, 64, 0)


def test_gpus_per_request_counts_weights_and_kv_cache():
    assert pricing.gpus_per_request(79e9, 0.5e9, 80e9) == 1
    assert pricing.gpus_per_request(79e9, 1.5e9, 80e9) == 2  # the KV cache tips it over
    assert pricing.gpus_per_request(1e3, 10, 16e9) == 1  # a tiny model still runs on a whole GPU
    gpt3 = pricing.SERVED_MODELS["GPT-3-175B"]
    assert pricing.gpus_per_request(gpt3.weight_bytes(), gpt3.kv_bytes(), 80e9) == math.ceil((350e9 + 9_663_676_416) / 80e9)
    with pytest.raises(ValueError, match="memory_bytes"):
        pricing.gpus_per_request(1e9, 0, 80)  # 80 bytes: meant 80 GB


def test_price_per_token_splits_by_hand():
    # $60M over 1M queries × 1,000 tokens × 730 days = 7.3e11 tokens -> $8.22e-5 a token
    # serving: 30 ms at $8/hour shared by 16 requests = 8 × 0.03/3600 / 16 $ a token
    r = pricing.price_per_token(60e6, 30.0, 8.0, 1e6, 1000, 730, batch=16)
    assert r["tokens_served"] == 7.3e11
    assert math.isclose(r["training_per_token"], 60e6 / 7.3e11)
    assert math.isclose(r["serving_per_token"], 8 * 0.03 / 3600 / 16)
    assert math.isclose(r["price_per_token"], r["training_per_token"] + r["serving_per_token"])
    assert math.isclose(r["usd_per_query"], 1000 * r["price_per_token"])
    assert math.isclose(r["training_share"] + r["serving_share"], 1.0)
    more = pricing.price_per_token(60e6, 30.0, 8.0, 1e8, 1000, 730, batch=16)
    assert more["training_per_token"] < r["training_per_token"] and more["serving_per_token"] == r["serving_per_token"]
    assert math.isclose(pricing.training_usd_per_token(60e6, 7.3e11, runs=2), 2 * 60e6 / 7.3e11)
    with pytest.raises(ValueError, match="tokens_served"):
        pricing.price_per_token(60e6, 30.0, 8.0, 0, 1000, 730)


def test_decode_ms_per_token_is_the_slower_roofline_limit():
    a100 = costs.ACCELERATORS["A100-SXM4-80GB"]
    memory_ms = 1e3 * 70e9 * 2 / (a100.bandwidth * 2)
    assert math.isclose(pricing.decode_ms_per_token(70e9, 2, 2, "A100-SXM4-80GB"), memory_ms)
    compute_ms = 1e3 * 4096 * 2 * 70e9 / (312e12 * 2 * 0.5)  # a batch big enough to be compute bound
    assert math.isclose(pricing.decode_ms_per_token(70e9, 2, 2, "A100-SXM4-80GB", batch=4096), compute_ms)
    with pytest.raises(ValueError, match="accelerator"):
        pricing.decode_ms_per_token(70e9, 2, 2, "A1000")


def test_pricing_dashboard_follows_its_sliders():
    dash = pricing_dashboard(60e6, 30.0, 8.0, batch=16)
    assert dash.summary == pricing.price_per_token(60e6, 30.0, 8.0, 1e6, 1000, 730, batch=16)
    dash.controls["queries_per_day"].value = 1e8
    dash.controls["lifetime_days"].value = 365
    assert dash.inputs()["queries_per_day"] == 1e8 and dash.inputs()["lifetime_days"] == 365
    assert dash.summary == pricing.price_per_token(**dash.inputs())
    assert 'data-key="training_share"' in dash.summary_html.value and dash.figure.value
    with pytest.raises(ValueError, match="ms_per_token"):
        pricing_dashboard(60e6, -1.0, 8.0)


def test_volume_to_cover_by_hand_and_at_the_boundary():
    # $1e-5 a token, $2e-6 of it serving: $8e-6 margin × 1,000 tokens × 730 days -> $60M needs 10,274 k queries/day
    q = pricing.volume_to_cover(1e-5, 60e6, 2e-6, 1000, 730)
    assert math.isclose(q, 60e6 / (8e-6 * 1000 * 730))
    at = pricing.price_per_token(60e6, 2e-6 * 3.6e6, 1.0, q, 1000, 730)  # 7.2 ms at $1/h = $2e-6 a token
    assert math.isclose(at["price_per_token"], 1e-5)
    assert pricing.volume_to_cover(1e-6, 60e6, 2e-6, 1000, 730) == math.inf
