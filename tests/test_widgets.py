"""The dashboards, driven as a browser test would: set a control's `.value`, read the numbers it shows."""
import math
import re

import pytest

from lifecycle import costs
from lifecycle.widgets import fleet_dashboard, lifecycle_dashboard

SPAN = re.compile(r'<span class="lc-value" data-key="([^"]+)" data-value="([^"]+)">')


def shown(dash) -> tuple[dict, dict]:
    """(inputs, outputs) as displayed in the summary HTML, parsed back to floats."""
    values = {k: float(v) for k, v in SPAN.findall(dash.summary_html.value)}
    inputs = {k.removeprefix("input."): v for k, v in values.items() if k.startswith("input.")}
    return inputs, {k: v for k, v in values.items() if not k.startswith("input.")}


def assert_consistent(dash, pure):
    """What the page shows equals the pure function applied to the inputs the page shows."""
    inputs, outputs = shown(dash)
    assert inputs == pytest.approx(dash.inputs(), rel=0)
    expected = pure(**inputs)
    assert set(outputs) == {key for key, _, _ in dash.ROWS}
    for key, value in outputs.items():
        assert value == expected[key] or (math.isinf(value) and math.isinf(expected[key])), key
    assert dash.summary == expected


def test_fleet_dashboard_starts_at_the_seed_and_follows_its_sliders():
    dash = fleet_dashboard()
    assert_consistent(dash, costs.fleet_summary)
    assert dash.summary["gpu_hours"] == 25_000 * 100 * 24
    png = dash.figure.value
    assert bytes(png).startswith(b"\x89PNG")
    dash.controls["n_gpus"].value = 10_000
    assert dash.summary["gpu_hours"] == 10_000 * 100 * 24
    assert bytes(dash.figure.value) != bytes(png)  # the figure was redrawn
    dash.controls["accelerator"].value = "H100-SXM5-80GB"
    assert dash.inputs()["peak_flops"] == costs.peak_of("H100-SXM5-80GB")
    dash.controls["mfu"].value = 0.5
    dash.controls["usd_per_gpu_hour"].value = 2.5
    assert dash.summary["usd"] == pytest.approx(10_000 * 100 * 24 * 2.5)
    assert_consistent(dash, costs.fleet_summary)


def test_fleet_dashboard_takes_lesson_02s_arguments_and_rejects_bad_ones():
    dash = fleet_dashboard(n_gpus=1024, days=30, accelerator="T4", mfu=0.4, usd_per_gpu_hour=0.35)
    assert dash.summary["flops"] == pytest.approx(1024 * 30 * 86_400 * 65e12 * 0.4)
    with pytest.raises(ValueError, match="mfu"):
        fleet_dashboard(mfu=35)
    with pytest.raises(ValueError, match="accelerator"):
        fleet_dashboard(accelerator="A1000")


def test_lifecycle_dashboard_sliders_update_the_summary():
    dash = lifecycle_dashboard()
    assert dash.summary["yearly_inference_usd"] == pytest.approx(3.65e6)
    assert_consistent(dash, costs.lifecycle_summary)
    share = dash.summary["training_share"]
    dash.controls["queries_per_day"].value = 2e7
    assert dash.summary["daily_inference_usd"] == pytest.approx(2e5)
    assert dash.summary["training_share"] < share
    dash.controls["lifetime_days"].value = 1095
    dash.controls["retrain_every_days"].value = 365
    assert dash.summary["training_runs"] == 3
    dash.controls["tokens_per_query"].value = 500
    dash.controls["usd_per_million_tokens"].value = 4.0
    dash.controls["training_musd"].value = 5.0
    assert dash.inputs()["training_usd"] == 5e6
    assert_consistent(dash, costs.lifecycle_summary)


def test_optimization_toggles_cut_the_cost_per_query():
    dash = lifecycle_dashboard({"quantization (int8)": 2.5, "caching (response hits)": 0.2},
                               measured={"quantization (int8)": True})
    base = dash.summary["usd_per_query"]
    assert "2.50× (measured)" in dash.controls["use_quantize"].description
    assert "(default)" in dash.controls["use_speculative"].description
    dash.controls["use_quantize"].value = True
    assert dash.summary["usd_per_query"] == pytest.approx(base / 2.5)
    dash.controls["use_caching"].value = True
    assert dash.summary["usd_per_query"] == pytest.approx(base * 0.8 / 2.5)
    assert dash.inputs()["cache_hit_rate"] == 0.2
    assert_consistent(dash, costs.lifecycle_summary)
    dash.controls["use_quantize"].value = False
    assert dash.summary["usd_per_query"] == pytest.approx(base * 0.8)


def test_never_breaking_even_shows_infinity():
    dash = lifecycle_dashboard(scenario=costs.Scenario(queries_per_day=1e3, lifetime_days=365, retrain_every_days=100))
    assert dash.summary["break_even_day"] == math.inf
    assert 'data-value="inf"' in dash.summary_html.value
    assert_consistent(dash, costs.lifecycle_summary)


def test_bad_optimization_factor_names_its_ledger_key():
    with pytest.raises(ValueError, match="speculative.speedup"):
        lifecycle_dashboard({"speculative decoding": 0.0})


def test_controls_have_descriptions_and_css_hooks():
    for dash in (fleet_dashboard(), lifecycle_dashboard()):
        for name, control in dash.controls.items():
            assert control.description
            assert f"lc-control-{name}" in control._dom_classes
        assert "lc-dashboard" in dash._dom_classes
