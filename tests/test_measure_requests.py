"""lifecycle.measure.requests and .speed: the seeded request stream, the summary of a serving run, decode timing."""
import math

import pytest
import torch

from lifecycle.batching import Record, ServeConfig, ServeResult, Step
from lifecycle.measure.requests import LengthDist, RequestStreamConfig, make_stream, percentiles, summarize, wide_stream
from lifecycle.measure.speed import decode_step_seconds, decode_sweep, measure_decode, prefix_ttft
from lifecycle.model import GPT, preset


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(preset("test")).eval()


def test_stream_is_reproducible_from_its_seed():
    cfg = RequestStreamConfig(30, 5.0, LengthDist(4, 20), LengthDist(2, 50, "loguniform"), seed=7)
    a, b = make_stream(cfg, vocab_size=32), make_stream(cfg, vocab_size=32)
    assert a == b and a != make_stream(RequestStreamConfig(30, 5.0, cfg.prompt_len, cfg.output_len, 8), vocab_size=32)
    assert a[0].arrival == 0.0 and all(x.arrival <= y.arrival for x, y in zip(a, a[1:]))
    assert all(4 <= len(r.prompt) <= 20 and 2 <= r.max_new_tokens <= 50 for r in a)
    text = torch.arange(1000) % 32
    for r in make_stream(cfg, tokens=text):  # prompts are slices of the given text
        assert list(r.prompt) == [(r.prompt[0] + i) % 32 for i in range(len(r.prompt))]


def test_poisson_arrivals_have_the_requested_rate():
    reqs = make_stream(RequestStreamConfig(4000, 20.0, seed=1), vocab_size=32)
    assert reqs[-1].arrival / (len(reqs) - 1) == pytest.approx(1 / 20.0, rel=0.05)
    assert {r.arrival for r in make_stream(RequestStreamConfig(5, math.inf), vocab_size=32)} == {0.0}


@pytest.mark.parametrize("make, match", [
    (lambda: RequestStreamConfig(rate=0), "rate"),
    (lambda: RequestStreamConfig(rate=float("nan")), "rate"),
    (lambda: RequestStreamConfig(n_requests=0), "n_requests"),
    (lambda: LengthDist(0, 5), "low"),
    (lambda: LengthDist(9, 5), "low"),
    (lambda: LengthDist(1, 5, "normal"), "kind"),
    (lambda: make_stream(RequestStreamConfig(output_len=LengthDist(1, 500)), vocab_size=32, block_size=512), "context"),
    (lambda: make_stream(RequestStreamConfig()), "vocab_size"),
    (lambda: make_stream(wide_stream(128), vocab_size=32, block_size=64), "context"),
])
def test_invalid_streams_are_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wide_stream_fills_the_window_it_is_made_for():
    cfg = wide_stream(256, n_requests=200, rate=50.0, seed=3)
    reqs = make_stream(cfg, vocab_size=32, block_size=256)
    assert len(reqs) == 200 and all(16 <= len(r.prompt) <= 64 and 4 <= r.max_new_tokens <= 192 for r in reqs)
    assert all(len(r.prompt) + r.max_new_tokens <= 256 for r in reqs)


def test_percentiles_by_hand():
    assert percentiles([1.0, 2.0, 3.0, 4.0, 5.0], (50, 100)) == {"p50": 3.0, "p100": 5.0}


def test_summary_by_hand():
    records = [Record(0, 0.0, 4, 0.0, 1.0, 3.0, [1, 2, 3]), Record(1, 1.0, 2, 1.0, 2.0, 5.0, [4])]
    steps = [Step("prefill", 0.0, 1.0, 2, 8, 6), Step("decode", 1.0, 2.0, 2, 2, 1), Step("decode", 3.0, 2.0, 2, 2, 2)]
    s = summarize(ServeResult(ServeConfig(slots=4), records, steps))
    assert s["throughput_tok_s"] == pytest.approx(4 / 5.0)  # 4 tokens from t=0 to t=5
    assert s["ttft_p50_s"] == pytest.approx(1.0) and s["latency_p50_s"] == pytest.approx(3.5)
    assert s["slot_utilization"] == pytest.approx((2 * 1 + 2 * 2) / (4 * 4.0))
    assert s["padding_waste"] == pytest.approx(1 - 9 / 12)
    assert s["busy_fraction"] == pytest.approx(1.0)


def test_measure_decode_reports_a_rate(model):
    row = measure_decode(model, 3, context=8, steps=4, repeats=1)
    assert row["batch_size"] == 3 and row["tokens_per_s"] > 0
    with pytest.raises(ValueError, match="batch_size"):
        measure_decode(model, 0)


def test_decode_sweep_has_one_row_per_batch_size(model):
    rows = decode_sweep(model, batch_sizes=(1, 2), context=8, steps=4, repeats=1)
    assert [r["batch_size"] for r in rows] == [1, 2]
    assert all(r["tokens_per_s"] == pytest.approx(r["batch_size"] / (r["ms_per_step"] / 1e3)) for r in rows)


def test_prefix_ttft_counts_the_cached_tokens(model):
    t = prefix_ttft(model, list(range(1, 21)), list(range(1, 13)), repeats=2)
    assert t["prompt_tokens"] == 20 and t["prefix_tokens"] == 12
    assert t["speedup"] == pytest.approx(t["full_ms"] / t["cached_ms"])


def test_decode_step_seconds_times_one_step_at_a_fixed_context(model):
    assert decode_step_seconds(model, 16, batch=2, steps=3, repeats=1) > 0
    for bad, match in (({"batch": 0}, "batch"), ({"context": 1}, "context"), ({"context": 10_000}, "context window")):
        with pytest.raises(ValueError, match=match):
            decode_step_seconds(model, **({"context": 8} | bad))
