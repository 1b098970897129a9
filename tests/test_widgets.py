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


# --- regression tests (issue 15): dashboards must not change their inputs silently ----------------------------------

@pytest.mark.parametrize("field, value, message", [("retrain_every_days", 0.5, "whole numbers"),
                                                   ("lifetime_days", 365.5, "whole numbers"),
                                                   ("queries_per_day", 0, "cannot show 0")])
def test_lifecycle_dashboard_refuses_inputs_its_sliders_would_change(field, value, message):
    scenario = costs.Scenario(**{field: value})
    with pytest.raises(ValueError, match=f"{field}=.*{message}"):
        lifecycle_dashboard(scenario=scenario)
    if field == "retrain_every_days":  # the model itself computes such a scenario correctly
        assert costs.Scenario(retrain_every_days=0.5, lifetime_days=730).summary()["training_runs"] == 1460


def test_fleet_dashboard_refuses_fractional_days():
    with pytest.raises(ValueError, match="days=0.5.*whole numbers"):
        fleet_dashboard(days=0.5)


# ---- lessons 03, 04 and 08 (engineer H4b), and the static picture every dashboard saves ----

import base64  # noqa: E402

import torch  # noqa: E402

from lifecycle import generate, quantize, speculative  # noqa: E402
from lifecycle.measure import quality  # noqa: E402
from lifecycle.model import GPT, GPTConfig  # noqa: E402
from lifecycle.widgets import (quantization_dashboard, sampling_dashboard, snapshot_bundle,  # noqa: E402
                               speculative_dashboard)


def assert_shows(dash, pure):
    """The summary table shows the pure function of the shown inputs, and the figure is a PNG."""
    inputs, outputs = shown(dash)
    assert inputs == pytest.approx(dash.inputs(), rel=0)  # shown exactly (as floats: ints are compared by value)
    expected = pure(**dash.inputs())
    assert dash.summary == expected
    assert outputs == pytest.approx({key: expected[key] for key, _, _ in dash.ROWS}, rel=1e-12)
    assert bytes(dash.figure.value).startswith(b"\x89PNG")


def test_sampling_dashboard_follows_temperature_top_k_top_p_and_seed():
    logits = torch.linspace(3.0, -3.0, 12)  # token 0 the favourite
    labels = list("abcdefghijkl")
    dash = sampling_dashboard(logits, labels, prompt="x")
    pure = lambda **kw: generate.sampling_summary(logits, **kw)  # noqa: E731
    assert_shows(dash, pure)
    assert dash.summary["kept"] == 12
    warm = dash.summary["top_prob"]
    dash.controls["temperature"].value = 0.5
    assert dash.summary["top_prob"] > warm  # colder: the favourite gains
    dash.controls["top_k"].value = 3
    assert dash.summary["kept"] == 3 and dash.summary["sample"] in (0, 1, 2)
    dash.controls["top_k"].value = 0
    dash.controls["top_p"].value = 0.5
    assert 1 <= dash.summary["kept"] < 12
    dash.controls["temperature"].value = 0.0  # greedy: one token, always the favourite
    assert dash.summary == pure(temperature=0.0, top_k=0, top_p=0.5, seed=0)
    assert dash.summary["kept"] == 1 and dash.summary["sample"] == 0 and dash.summary["entropy_bits"] == 0
    dash.controls["temperature"].value = 1.5
    dash.controls["top_p"].value = 1.0
    draws = set()
    for seed in range(20):
        dash.controls["seed"].value = seed
        draws.add(dash.summary["sample"])
    assert len(draws) > 2  # a warm, unfiltered distribution: different seeds draw different tokens
    assert_shows(dash, pure)


def test_sampling_dashboard_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="one label per token"):
        sampling_dashboard(torch.zeros(5), list("abcd"))
    with pytest.raises(ValueError, match="top_p"):
        sampling_dashboard(torch.zeros(4), list("abcd"), top_p=0.0)


@pytest.fixture(scope="module")
def tiny_grid():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=32, n_layer=1, n_head=2, n_embd=32)).eval()
    data = torch.randint(0, 20, (2_000,))
    return model, data, quality.precision_grid(model, data, bits=(8, 4, 2), group_sizes=(16, None), batches=1)


def test_precision_grid_agrees_with_the_librarys_int8_and_int4(tiny_grid):
    model, data, grid = tiny_grid
    w = model.transformer.h[0].mlp.c_fc.weight.detach()
    assert torch.equal(quantize.fake_quantize(w, 8), quantize.dequantize_int8(*quantize.quantize_int8(w)))
    assert torch.equal(quantize.fake_quantize(w, 4, 16), quantize.dequantize_int4(*quantize.quantize_int4(w, 16)))
    for cfg, (bits, group) in [("int8", (8, 0)), (quantize.QuantConfig("int4", group_size=16), (4, 16))]:
        q = quantize.quantize_model(model, cfg)
        row = quality.grid_point(grid, bits, group)
        assert row["bytes"] == quantize.nbytes(q)
        assert row["val_loss"] == pytest.approx(quality.val_loss(q, data, 1, 4, 32), rel=1e-5)
    assert quality.grid_point(grid, 2, 0)["bytes"] < quality.grid_point(grid, 4, 0)["bytes"]
    with pytest.raises(ValueError, match="no grid row"):
        quality.grid_point(grid, 3, 16)


def test_quantization_dashboard_looks_up_the_grid(tiny_grid):
    grid = tiny_grid[2]
    dash = quantization_dashboard(grid, bits=4, group_size=16)
    pure = lambda **kw: quality.grid_point(grid, **kw)  # noqa: E731
    assert_shows(dash, pure)
    assert [v for _, v in dash.controls["bits"].options] == [8, 4, 2]
    assert [v for _, v in dash.controls["group_size"].options] == [16, 0]
    dash.controls["bits"].value = 2
    dash.controls["group_size"].value = 0
    assert dash.summary == pure(bits=2, group_size=0)
    assert dash.summary["bytes_vs_fp32"] < 0.2
    assert_shows(dash, pure)
    with pytest.raises(ValueError, match="no grid row"):
        quantization_dashboard(grid, bits=3)


def test_speculative_dashboard_follows_alpha_gamma_and_c():
    dash = speculative_dashboard(alpha=0.8, c=0.1, gamma=4, measured=[(1, 1.2), (4, 1.9)])
    assert_shows(dash, speculative.speedup_summary)
    assert dash.summary["speedup"] == pytest.approx((1 - 0.8 ** 5) / 0.2 / 1.4)
    dash.controls["c"].value = 0.5
    dash.controls["alpha"].value = 0.5
    dash.controls["gamma"].value = 1
    assert dash.summary["speedup"] == pytest.approx(1.0)  # alpha 0.5, gamma 1, c 0.5: break-even
    dash.controls["alpha"].value = 1.0
    assert dash.summary["tokens_per_call"] == 2
    assert dash.summary["best_gamma"] == speculative.best_gamma(1.0, 0.5)
    assert_shows(dash, speculative.speedup_summary)
    with pytest.raises(ValueError, match="alpha"):
        speculative_dashboard(alpha=1.5, c=0.1)


def test_every_dashboard_saves_a_picture_beside_the_live_widget():
    for dash in (fleet_dashboard(), lifecycle_dashboard(), speculative_dashboard(0.7, 0.2)):
        bundle = snapshot_bundle(dash, dash.figure.value)
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.model_id
        assert base64.b64decode(bundle["image/png"]) == bytes(dash.figure.value)
        assert bundle["text/plain"]


def test_displaying_a_dashboard_publishes_widget_and_png_together(monkeypatch):
    import IPython.display
    published = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: published.append((objs, kw)))
    dash = speculative_dashboard(0.7, 0.2)
    dash._ipython_display_()
    (bundle,), kw = published[0]
    assert kw == {"raw": True} and {"image/png", "application/vnd.jupyter.widget-view+json"} <= set(bundle)



def test_a_table_widget_saves_html_beside_the_live_widget():
    import ipywidgets
    w = ipywidgets.IntSlider()
    bundle = snapshot_bundle(w, html="<table><tr><td>hit rate</td><td>41%</td></tr></table>")
    assert bundle["text/html"].startswith("<table>") and "image/png" not in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    with pytest.raises(ValueError, match="png bytes or html"):
        snapshot_bundle(w)
