"""The cost model against hand-computed cases, monotonicity properties, and its input validation."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle import costs
from lifecycle.model import GPT, preset

# ---- hand-computed cases ----


def test_seed_daily_and_yearly_cost_are_exact():
    daily = costs.daily_inference_cost(1_000_000, 0.01)
    assert daily == 10_000
    assert costs.yearly(daily) == 3_650_000
    summary = costs.SEED.scenario().summary()
    assert summary["usd_per_query"] == pytest.approx(0.01, rel=1e-12)
    assert summary["yearly_inference_usd"] == pytest.approx(3.65e6, rel=1e-12)


def test_six_n_d_for_gpt3():
    # Brown et al. 2020: 175e9 parameters, 300e9 tokens, reported as 3.14e23 FLOPs
    assert costs.training_flops(175e9, 300e9) == 6 * 175e9 * 300e9
    assert costs.training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=0.01)


def test_attention_term_matches_the_course_model():
    model = GPT(preset("test"))
    c, tokens = model.config, 1_000
    ours = costs.training_flops(model.num_params(include_positions=False), tokens,
                                n_layer=c.n_layer, context=c.block_size, d_model=c.n_embd)
    assert ours == pytest.approx(model.flops_per_token(context=c.block_size, training=True) * tokens, rel=1e-12)


def test_fleet_gpu_hours_days_and_dollars_round_trip():
    peak = costs.peak_of("A100-SXM4-80GB")
    assert peak == 312e12
    flops = costs.fleet_flops(25_000, 100, peak, 0.35)
    assert flops == pytest.approx(25_000 * 100 * 86_400 * 312e12 * 0.35)
    assert costs.gpu_hours(flops, peak, 0.35) == pytest.approx(25_000 * 100 * 24)
    assert costs.training_days(flops, 25_000, peak, 0.35) == pytest.approx(100)
    assert costs.training_cost(60e6, 1.0) == 60e6


def test_seed_training_estimate():
    t = costs.SEED.training()
    assert t["gpu_hours"] == 60e6 and t["usd"] == 60e6
    assert t["implied_mfu"] == pytest.approx(2e25 / (25_000 * 100 * 86_400 * 312e12))
    assert t["vs_published"] == pytest.approx(0.35 / t["implied_mfu"])


def test_inference_prices():
    assert costs.inference_flops_per_token(7e9) == 14e9
    assert costs.cost_per_query(1000, 10.0) == pytest.approx(0.01)
    assert costs.usd_per_million_tokens(3.6, 1000) == pytest.approx(1.0)  # 3.6M tokens/hour for $3.60
    assert costs.tokens_per_s_from_flops(1e9, 2e12, 0.5) == pytest.approx(500)
    assert costs.decode_seconds_per_token(14e9, 2e12) == pytest.approx(7e-3)
    assert costs.gpus_to_hold(175e9, 2, 80e9) == 6  # 350 GB over 64 GB usable per GPU
    assert costs.gpus_to_hold(7e9, 2, 80e9) == 1


@pytest.mark.parametrize("life, every, runs",
                         [(730, 0, 1), (730, 365, 2), (730, 180, 5), (730, 1000, 1), (365, 365, 1)])
def test_training_runs(life, every, runs):
    assert costs.training_runs(life, every) == runs


def test_break_even_agrees_however_the_scenario_is_written():
    # issue 19: retraining every 730 days over a 730-day life is one training run, exactly as "no retraining"
    base = dict(queries_per_day=1e6, tokens_per_query=1000, usd_per_million_tokens=10, training_usd=60e6,
                lifetime_days=730)
    never = costs.lifecycle_summary(**base, retrain_every_days=0)
    for every in (730, 731, 5000):
        same = costs.lifecycle_summary(**base, retrain_every_days=every)
        assert same == never, every
    assert never["training_runs"] == 1 and never["break_even_day"] == 6000
    assert costs.break_even_text(6000, 730) == "day 6,000 (after the 730-day lifetime)"
    # a retraining inside the lifetime before inference catches up: never, as before
    assert costs.lifecycle_summary(**base, retrain_every_days=729)["break_even_day"] == math.inf
    assert costs.break_even_day(1e6, 1e4, 730, lifetime_days=730) == 100


def test_break_even_text_reads_as_days_of_service():
    assert costs.break_even_text(0.0) == "within the first day"  # never "day 0"
    assert costs.break_even_text(0.3) == "within the first day"
    assert costs.break_even_text(1.0) == "day 1"
    assert costs.break_even_text(5999.2) == "day 6,000"
    assert costs.break_even_text(100, 730) == "day 100"
    assert costs.break_even_text(math.inf) == "never"
    with pytest.raises(ValueError, match="break_even_day"):
        costs.break_even_text(math.nan)


def test_break_even_on_a_constructed_case():
    # $1M of training, $10k of inference a day: inference catches up on day 100
    assert costs.break_even_day(1e6, 1e4) == 100
    assert costs.break_even_day(1e6, 1e4, retrain_every_days=200) == 100
    assert costs.break_even_day(1e6, 1e4, retrain_every_days=100) == math.inf  # retrained just as it catches up
    assert costs.break_even_day(1e6, 0) == math.inf
    s = costs.Scenario(queries_per_day=1e6, tokens_per_query=1000, usd_per_million_tokens=10, training_usd=1e6,
                       lifetime_days=365)
    train, infer = s.cumulative(100)
    assert train == infer == 1e6
    assert s.summary()["break_even_day"] == 100


def test_cumulative_spend_steps_at_each_retraining():
    s = costs.Scenario(training_usd=5e6, lifetime_days=730, retrain_every_days=300)
    assert [s.cumulative(d)[0] for d in (0, 299, 300, 599, 600, 730)] == [5e6, 5e6, 10e6, 10e6, 15e6, 15e6]
    assert s.summary()["training_usd_total"] == 15e6


def test_queries_for_training_share_round_trips():
    s = costs.SEED.scenario()
    for share in (0.2, 0.4, 0.89):
        q = s.queries_for_training_share(share)
        assert costs.Scenario(**{**vars(s), "queries_per_day": q}).summary()["training_share"] == pytest.approx(share)


def test_seed_table_rows_carry_assumptions():
    rows = costs.seed_table()
    assert [r["aspect"] for r in rows] == ["Compute", "Time", "Cost per run", "Frequency", "Share of lifecycle"]
    assert all(r["assumptions"] and r["training (computed)"] and r["inference (computed)"] for r in rows)
    assert rows[2]["training (computed)"].startswith("$60 million")


def test_optimizations_default_and_measured():
    rows = costs.optimization_rows({})
    assert all("DEFAULT" in r["source"] for r in rows[:-1])
    ledger = {"quantize.int8_speedup": {"value": 2.5, "machine": "cpu"}, "caching.response_hit_rate": {"value": 0.25}}
    rows = {r["technique"]: r for r in costs.optimization_rows(ledger)}
    assert rows["quantization (int8)"]["$ per year"] == pytest.approx(3.65e6 / 2.5)
    assert "measured" in rows["quantization (int8)"]["source"]
    assert rows["caching (response hits)"]["$ saved per year"] == pytest.approx(0.25 * 3.65e6)
    assert rows["all of them (multiplied)"]["cost ×"] == pytest.approx(0.75 / 2.5)  # other defaults are 1×


def test_combine_multiplies_speedups_and_sets_hit_rate():
    values = {"quantization (int8)": 2.0, "speculative decoding": 1.5, "caching (response hits)": 0.3}
    assert costs.combine(values) == {"speedup": 3.0, "cache_hit_rate": 0.3}
    assert costs.combine(values, enabled=[]) == {"speedup": 1.0, "cache_hit_rate": 0.0}
    with pytest.raises(ValueError, match="enabled"):
        costs.combine(values, enabled=["pruning"])


# ---- properties ----

pos = st.floats(1e-3, 1e9, allow_nan=False, allow_infinity=False)
queries = st.floats(0, 1e10, allow_nan=False, allow_infinity=False)
speed = st.floats(0.01, 100, allow_nan=False, allow_infinity=False)
scenario_kw = st.fixed_dictionaries({
    "tokens_per_query": st.floats(1, 1e5), "usd_per_million_tokens": st.floats(0.01, 1e3),
    "training_usd": st.floats(1e3, 1e10), "lifetime_days": st.floats(1, 5000),
    "retrain_every_days": st.one_of(st.just(0.0), st.floats(1, 5000)), "speedup": speed,
    "cache_hit_rate": st.floats(0, 1)})


@settings(max_examples=200, deadline=None)
@given(scenario_kw, queries, queries)
def test_more_queries_never_cost_less(kw, q1, q2):
    lo, hi = sorted((q1, q2))
    a, b = costs.lifecycle_summary(queries_per_day=lo, **kw), costs.lifecycle_summary(queries_per_day=hi, **kw)
    assert b["lifetime_usd"] >= a["lifetime_usd"]
    assert b["daily_inference_usd"] >= a["daily_inference_usd"]
    assert b["training_share"] <= a["training_share"]


@settings(max_examples=200, deadline=None)
@given(scenario_kw, queries, speed, speed)
def test_a_speedup_never_raises_cost(kw, q, s1, s2):
    lo, hi = sorted((s1, s2))
    kw = {**kw, "queries_per_day": q}
    slow, fast = costs.lifecycle_summary(**{**kw, "speedup": lo}), costs.lifecycle_summary(**{**kw, "speedup": hi})
    assert fast["lifetime_usd"] <= slow["lifetime_usd"]
    assert fast["usd_per_query"] <= slow["usd_per_query"]


@settings(max_examples=200, deadline=None)
@given(scenario_kw, queries)
def test_shares_sum_to_one(kw, q):
    s = costs.lifecycle_summary(queries_per_day=q, **kw)
    assert s["training_share"] + s["inference_share"] == pytest.approx(1.0, abs=1e-12)
    assert 0 <= s["inference_share"] <= 1
    assert s["lifetime_usd"] == pytest.approx(s["training_usd_total"] + s["inference_usd_total"])


@settings(max_examples=100, deadline=None)
@given(pos, pos, st.floats(0.01, 1.0), pos)
def test_fleet_round_trip(n_gpus, days, mfu, peak):
    flops = costs.fleet_flops(n_gpus, days, peak * 1e9, mfu)
    assert costs.training_days(flops, n_gpus, peak * 1e9, mfu) == pytest.approx(days, rel=1e-9)


# ---- validation: every bad input names its parameter ----

GOOD = {  # function, valid keyword arguments, parameters for which 0 is meaningful
    "training_flops": (costs.training_flops, dict(n_params=1e9, n_tokens=1e10, n_layer=2, context=8, d_model=4),
                       {"n_layer", "context", "d_model"}),
    "fleet_flops": (costs.fleet_flops, dict(n_gpus=8, days=1, peak_flops=1e14, mfu=0.4), set()),
    "gpu_hours": (costs.gpu_hours, dict(flops=1e20, peak_flops=1e14, mfu=0.4), set()),
    "training_days": (costs.training_days, dict(flops=1e20, n_gpus=8, peak_flops=1e14, mfu=0.4), set()),
    "training_cost": (costs.training_cost, dict(gpu_hours=100, usd_per_gpu_hour=2.0), set()),
    "fleet_summary": (costs.fleet_summary, dict(n_gpus=8, days=1, peak_flops=1e14, mfu=0.4, usd_per_gpu_hour=2.0,
                                                published_flops=2e25), set()),
    "inference_flops_per_token": (costs.inference_flops_per_token, dict(n_params=1e9), set()),
    "tokens_per_s_from_flops": (costs.tokens_per_s_from_flops, dict(n_params=1e9, flops_per_s=1e14, utilization=0.5),
                                set()),
    "decode_seconds_per_token": (costs.decode_seconds_per_token, dict(weight_bytes=1e9, bandwidth=1e12, n_gpus=1),
                                 set()),
    "gpus_to_hold": (costs.gpus_to_hold, dict(n_params=1e9, bytes_per_param=2, memory_bytes=8e10, usable=0.8), set()),
    "usd_per_million_tokens": (costs.usd_per_million_tokens, dict(usd_per_hour=2.0, tokens_per_s=100), set()),
    "cost_per_query": (costs.cost_per_query, dict(tokens_per_query=500, usd_per_million_tokens=10), set()),
    "daily_inference_cost": (costs.daily_inference_cost, dict(queries_per_day=1e6, usd_per_query=0.01),
                             {"queries_per_day", "usd_per_query"}),
    "yearly": (costs.yearly, dict(per_day=1.0, days_per_year=365), {"per_day"}),
    "training_runs": (costs.training_runs, dict(lifetime_days=730, retrain_every_days=365), {"retrain_every_days"}),
    "break_even_day": (costs.break_even_day, dict(training_usd=1e6, daily_usd=1e4, retrain_every_days=0),
                       {"daily_usd", "retrain_every_days"}),
    "Scenario": (costs.Scenario, dict(queries_per_day=1e6, tokens_per_query=1000, usd_per_million_tokens=10,
                                      training_usd=1e7, lifetime_days=365, retrain_every_days=0, speedup=1.0,
                                      cache_hit_rate=0.0), {"queries_per_day", "retrain_every_days", "cache_hit_rate"}),
}
CASES = [(fn_name, param) for fn_name, (_, good, _) in GOOD.items() for param in good]


@pytest.mark.parametrize("fn_name, param", CASES)
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), float("-inf"), 0, "3", None, True, [1.0]])
def test_every_invalid_input_names_its_parameter(fn_name, param, bad):
    fn, good, zero_ok = GOOD[fn_name]
    fn(**good)  # the baseline call is valid
    if bad == 0 and not isinstance(bad, bool) and param in zero_ok:
        fn(**{**good, param: bad})
        return
    error = TypeError if isinstance(bad, (str, bool, list)) or bad is None else ValueError
    with pytest.raises(error, match=param):
        fn(**{**good, param: bad})


@pytest.mark.parametrize("call", [
    lambda: costs.fleet_flops(8, 1, 1e14, 35),  # a percentage given for a fraction
    lambda: costs.Scenario(cache_hit_rate=1.5),
    lambda: costs.gpus_to_hold(1e9, 2, 8e10, usable=80),
])
def test_fractions_reject_percentages_with_a_hint(call):
    with pytest.raises(ValueError, match="fraction"):
        call()


@pytest.mark.parametrize("call, name", [
    (lambda: costs.fleet_flops(8, 1, 312, 0.4), "peak_flops"),  # TFLOP/s given where FLOP/s are expected
    (lambda: costs.gpu_hours(1e20, 312, 0.4), "peak_flops"),
    (lambda: costs.tokens_per_s_from_flops(1e9, 312, 0.5), "flops_per_s"),
    (lambda: costs.decode_seconds_per_token(1e9, 2.0), "bandwidth"),  # TB/s
    (lambda: costs.gpus_to_hold(1e9, 2, 80), "memory_bytes"),  # GB
])
def test_rates_in_the_wrong_unit_are_caught(call, name):
    with pytest.raises(ValueError, match=f"{name}.*base units|{name}.*bytes"):
        call()


def test_all_hits_means_inference_is_free():
    s = costs.Scenario(cache_hit_rate=1.0)
    assert s.summary()["training_share"] == 1.0 and s.summary()["break_even_day"] == math.inf
    assert s.queries_for_training_share(0.3) == math.inf


def test_unknown_accelerator_and_bad_ledger_values():
    with pytest.raises(ValueError, match="accelerator"):
        costs.peak_of("A1000")
    with pytest.raises(ValueError, match="quantize.int8_speedup"):
        costs.optimization_rows({"quantize.int8_speedup": {"value": -2.0}})
    with pytest.raises(ValueError, match="caching.response_hit_rate"):
        costs.combine({"caching (response hits)": 1.2})
    with pytest.raises(ValueError, match="day"):
        costs.Scenario(lifetime_days=10).cumulative(11)
    with pytest.raises(ValueError, match="share"):
        costs.Scenario().queries_for_training_share(1.0)


# --- regression tests (issue 15): finite inputs whose product overflows ------------------------------------------

def test_finite_inputs_that_overflow_raise_instead_of_inf_or_nan():
    with pytest.raises(ValueError, match="cost per query overflows"):
        costs.cost_per_query(1000, 1e308)
    with pytest.raises(ValueError, match="overflows"):
        costs.Scenario(queries_per_day=1e308).summary()
    with pytest.raises(ValueError, match="overflows"):
        costs.daily_inference_cost(1e308, 10.0)
    with pytest.raises(ValueError, match="overflows"):
        costs.training_flops(1e300, 1e300)


def test_optimization_rows_use_the_measured_stack_when_lesson_10_has_run():
    ledger = {"batching.batch32_vs_batch1": {"value": 10.0}, "caching.response_hit_rate": {"value": 0.5}}
    rows = costs.optimization_rows(ledger, 1e6, 0.01)
    assert len(rows) == len(costs.OPTIMIZATIONS) + 1
    product = costs.combined_row(rows)
    defaults = math.prod(o.default for o in costs.OPTIMIZATIONS
                         if o.kind == "speedup" and o.key != "batching.batch32_vs_batch1")
    assert product["technique"].endswith("(multiplied)") and product["cost ×"] == pytest.approx(0.5 / (10 * defaults))
    ledger[costs.STACK_KEY] = {"value": 4.0, "machine": "cpu"}
    rows = costs.optimization_rows(ledger, 1e6, 0.01)
    stack = costs.combined_row(rows)
    assert stack["ledger key"] == costs.STACK_KEY and stack["cost ×"] == pytest.approx(0.25)
    assert stack["$ saved per year"] == pytest.approx(3.65e6 * 0.75)
    ledger[costs.STACK_KEY] = {"value": 0.0}
    with pytest.raises(ValueError):
        costs.optimization_rows(ledger, 1e6, 0.01)
