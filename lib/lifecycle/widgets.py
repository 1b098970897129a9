"""Thin ipywidgets wiring: sliders, toggles and dropdowns in front of the pure functions of `lifecycle.costs`.

Two dashboards, both ipywidgets containers (display them, or leave one as a cell's last expression):
- `fleet_dashboard(...)`     lesson 02: GPUs × days × accelerator × MFU × $/GPU-hour -> FLOPs, GPU-hours, dollars
                             (`costs.fleet_summary`).
- `lifecycle_dashboard(...)` lesson 09: queries/day, tokens/query, price, training bill, lifetime, retraining and
                             optimization toggles -> cost per query, yearly spend, shares, break-even
                             (`costs.lifecycle_summary`).

Every change of a control recomputes the summary and redraws the figure. Nothing is computed here that a test
could not compute itself: `dash.inputs()` turns the controls into the keyword arguments of the pure function,
`dash.compute(**inputs)` is that function, `dash.summary` holds its last result. The summary table shows every
input and output as `<span class="lc-value" data-key="KEY" data-value="repr(float)">` (inputs keyed `input.NAME`),
so a browser test can read exact numbers; each control also carries the CSS class `lc-control-NAME` (NAME being
its key in `dash.controls`), the container the class `lc-dashboard`. Only APIs common to ipywidgets 7.7 (Colab)
and 8.x are used: the figure is a PNG in a `widgets.Image`, the table a `widgets.HTML`, callbacks
`observe(..., names="value")`.
"""
from __future__ import annotations

import html
import io
import math

import ipywidgets as widgets
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from . import costs
from .device import ACCELERATORS

_STYLE = {"description_width": "16em"}
_WIDTH = "36em"  # every control the same width, so the sliders line up


def _usd(x: float) -> str:
    """Dollars in a readable size: $0.0100, $10.0k, $3.65M, $1.20B."""
    if not math.isfinite(x):
        return "never"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"${x / size:.3g}{suffix}"
    return f"${x:.4g}"


def value_span(key: str, value: float, text: str) -> str:
    """One number as the browser test reads it: exact value in data-value, readable text inside."""
    return (f'<span class="lc-value" data-key="{html.escape(key)}" data-value="{float(value)!r}">'
            f"{html.escape(text)}</span>")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class Dashboard(widgets.VBox):
    """Controls, a summary table and a figure, recomputed on every change of any control.

    Subclasses define `compute` (a pure function of keyword arguments), `inputs()` (controls -> those
    arguments), `ROWS` (summary key, label, formatter) and `draw(fig, inputs, summary)`.
    """

    ROWS: tuple = ()

    def __init__(self, title: str, controls: dict[str, widgets.Widget]):
        self.controls = controls
        self.summary: dict[str, float] = {}
        self.summary_html = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", margin="0 0 0 1em"))
        self.figure = widgets.Image(format="png")
        for name, control in controls.items():
            control.add_class(f"lc-control-{name}")  # a stable CSS hook for browser tests
            control.observe(self._on_change, names="value")
        header = widgets.HTML(f"<b>{html.escape(title)}</b>")
        panel = widgets.VBox(list(controls.values()), layout=widgets.Layout(min_width="38em", flex="0 0 auto"))
        body = widgets.HBox([panel, self.summary_html])
        super().__init__([header, body, self.figure])
        self.add_class("lc-dashboard")
        self.refresh()

    def inputs(self) -> dict[str, float]:
        raise NotImplementedError

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        raise NotImplementedError

    def _on_change(self, change) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute the summary from the controls and redraw the table and the figure."""
        inputs = self.inputs()
        try:
            self.summary = self.compute(**inputs)
        except (ValueError, TypeError) as e:  # a bad combination: say why instead of breaking the dashboard
            self.summary = {}
            self.summary_html.value = f'<span class="lc-error">{html.escape(str(e))}</span>'.replace("$", "&#36;")
            return
        rows = "".join(f"<tr><td>{html.escape(label)}</td>"
                       f"<td>{value_span(key, self.summary[key], fmt(self.summary[key]))}</td></tr>"
                       for key, label, fmt in self.ROWS)
        given = ", ".join(f"{html.escape(k)} = {value_span('input.' + k, v, f'{v:.4g}')}" for k, v in inputs.items())
        # "&#36;" for "$": a front end that typesets maths must not read "$1 ... $2" as a formula
        self.summary_html.value = (f'<table class="lc-summary">{rows}</table>'
                                   f'<div class="lc-inputs" style="font-size:smaller">from: {given}</div>'
                                   ).replace("$", "&#36;")
        fig = Figure(figsize=(11, 3.4), layout="constrained")
        self.draw(fig, inputs, self.summary)
        self.figure.value = _png(fig)


def _slider(cls, description: str, value, lo, hi, **kw):
    """A slider whose range always includes `value`."""
    return cls(value=value, min=min(lo, value), max=max(hi, value), description=description,
               continuous_update=False, style=_STYLE, layout=widgets.Layout(width=_WIDTH), **kw)


def _log_slider(description: str, value: float, lo_exp: float, hi_exp: float, fmt: str = ".3g"):
    exp = math.log10(value)
    return widgets.FloatLogSlider(value=value, base=10, min=min(lo_exp, math.floor(exp)),
                                  max=max(hi_exp, math.ceil(exp)), step=0.05, description=description,
                                  readout_format=fmt, continuous_update=False, style=_STYLE,
                                  layout=widgets.Layout(width=_WIDTH))


# ---- lesson 02: what a training fleet delivers ----

class FleetDashboard(Dashboard):
    """GPUs × days × accelerator × MFU × $/GPU-hour -> FLOPs, GPU-hours, dollars, vs the published estimate."""

    compute = staticmethod(costs.fleet_summary)
    ROWS = (("flops", "total compute", lambda v: f"{v:.3g} FLOPs"),
            ("gpu_hours", "GPU-hours", lambda v: f"{v:,.0f}"),
            ("usd", "cost", _usd),
            ("vs_published", "÷ published ≈2e25", lambda v: f"{v:.2f}×"),
            ("days_for_published", "days to reach 2e25", lambda v: f"{v:.0f}"))

    def inputs(self) -> dict[str, float]:
        c = self.controls
        return {"n_gpus": c["n_gpus"].value, "days": c["days"].value,
                "peak_flops": costs.peak_of(c["accelerator"].value), "mfu": c["mfu"].value,
                "usd_per_gpu_hour": c["usd_per_gpu_hour"].value}

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        ax = fig.subplots()
        end = 1.2 * max(inputs["days"], summary["days_for_published"])
        per_day = summary["flops"] / inputs["days"]
        ax.plot([0, end], [0, per_day * end], label="FLOPs delivered so far")
        ax.axhline(costs.SEED.published_flops, color="grey", ls="--", label="published estimate ≈2e25")
        ax.plot([inputs["days"]], [summary["flops"]], "o", color="C3", label=f"after {inputs['days']:g} days")
        ax.set(xlabel="training day", ylabel="FLOPs", title="What the fleet computes")
        ax.legend(loc="upper left")


def fleet_dashboard(n_gpus: int = costs.SEED.n_gpus, days: int = int(costs.SEED.days),
                    accelerator: str = costs.SEED.accelerator, mfu: float = costs.SEED.mfu,
                    usd_per_gpu_hour: float = costs.SEED.usd_per_gpu_hour) -> FleetDashboard:
    """Sliders for GPUs, days, MFU and $/GPU-hour and an accelerator dropdown; shows FLOPs, GPU-hours and dollars."""
    costs.fleet_summary(n_gpus, days, costs.peak_of(accelerator), mfu, usd_per_gpu_hour)  # fail early on bad input
    controls = {
        "n_gpus": _slider(widgets.IntSlider, "GPUs", int(n_gpus), 1_000, 100_000, step=500),
        "days": _slider(widgets.IntSlider, "training days", int(days), 1, 365),
        "accelerator": widgets.Dropdown(options=list(ACCELERATORS), value=accelerator, description="accelerator",
                                        style=_STYLE, layout=widgets.Layout(width=_WIDTH)),
        "mfu": _slider(widgets.FloatSlider, "MFU (fraction of peak)", mfu, 0.05, 0.8, step=0.01),
        "usd_per_gpu_hour": _slider(widgets.FloatSlider, "USD per GPU-hour", usd_per_gpu_hour, 0.25, 10.0, step=0.05),
    }
    return FleetDashboard("Training fleet: what it computes and what it costs", controls)


# ---- lesson 09: the lifecycle what-if ----

class LifecycleDashboard(Dashboard):
    """The what-if: a deployment's inputs and optimization toggles -> its lifetime bill, shares and break-even."""

    compute = staticmethod(costs.lifecycle_summary)
    ROWS = (("usd_per_query", "$ per query", _usd),
            ("daily_inference_usd", "inference per day", _usd),
            ("yearly_inference_usd", "inference per year", _usd),
            ("training_runs", "training runs", lambda v: f"{v:.0f}"),
            ("training_usd_total", "training, lifetime", _usd),
            ("inference_usd_total", "inference, lifetime", _usd),
            ("lifetime_usd", "total, lifetime", _usd),
            ("training_share", "training share", lambda v: f"{v:.1%}"),
            ("inference_share", "inference share", lambda v: f"{v:.1%}"),
            ("break_even_day", "inference passes training on day",
             lambda v: f"{v:,.0f}" if math.isfinite(v) else "never"))

    def __init__(self, title: str, controls: dict, optimizations: dict[str, float]):
        self.optimizations = optimizations  # name -> measured value (speed factor or hit rate)
        super().__init__(title, controls)

    def inputs(self) -> dict[str, float]:
        c = self.controls
        enabled = [o.name for o in costs.OPTIMIZATIONS if c[_toggle_name(o)].value]
        return {"queries_per_day": c["queries_per_day"].value, "tokens_per_query": c["tokens_per_query"].value,
                "usd_per_million_tokens": c["usd_per_million_tokens"].value,
                "training_usd": c["training_musd"].value * 1e6, "lifetime_days": c["lifetime_days"].value,
                "retrain_every_days": c["retrain_every_days"].value,
                **costs.combine(self.optimizations, enabled)}

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        spend, shares = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
        scenario = costs.Scenario(**inputs)
        days = [inputs["lifetime_days"] * i / 400 for i in range(401)]
        train, infer = zip(*(scenario.cumulative(d) for d in days))
        spend.step(days, train, where="post", label="training (cumulative)")
        spend.plot(days, infer, label="inference (cumulative)")
        if summary["break_even_day"] <= inputs["lifetime_days"]:
            spend.axvline(summary["break_even_day"], color="grey", ls=":", label="break-even")
        spend.set(xlabel="day of service", ylabel="dollars spent", title="Where the money goes over the lifetime")
        spend.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _usd(v) if v else "$0"))
        spend.legend(loc="upper left")
        shares.bar(["training", "inference"], [summary["training_share"], summary["inference_share"]],
                   color=["C0", "C1"])
        shares.axhspan(0.2, 0.4, color="grey", alpha=0.25, zorder=0, label="seed: training 20–40%")
        shares.set(ylim=(0, 1), title="share of the lifetime bill")
        shares.legend(loc="upper center", fontsize="small")


def _toggle_name(o: costs.Optimization) -> str:
    return "use_" + o.key.split(".")[0]


def lifecycle_dashboard(optimizations: dict[str, float] | None = None, measured: dict[str, bool] | None = None,
                        scenario: costs.Scenario | None = None) -> LifecycleDashboard:
    """The lesson-09 what-if dashboard.

    optimizations: {Optimization.name: value} (speed factor, or hit rate for caching), e.g. from
        `{k: v for k, (v, _) in costs.optimization_values(results.entries()).items()}`; missing names use the
        labelled defaults of `costs.OPTIMIZATIONS`. measured: {name: True/False}, shown beside each toggle.
    scenario: the starting point (default: the seed's deployment with a GPT-4-class training bill).
    Expected figures for any state: `costs.lifecycle_summary(**dash.inputs())`.
    """
    s = scenario or costs.SEED.scenario()
    values = {o.name: o.default for o in costs.OPTIMIZATIONS} | dict(optimizations or {})
    measured = measured or {}
    costs.combine(values)  # fail early on a bad factor, naming its ledger key
    controls = {
        "queries_per_day": _log_slider("queries per day", s.queries_per_day or 1.0, 3, 9),
        "tokens_per_query": _log_slider("tokens per query", s.tokens_per_query, 1, 5),
        "usd_per_million_tokens": _log_slider("USD per million tokens", s.usd_per_million_tokens, -2, 3, ".3g"),
        "training_musd": _log_slider("training run (USD millions)", s.training_usd / 1e6, -1, 3),
        "lifetime_days": _slider(widgets.IntSlider, "lifetime (days)", int(s.lifetime_days), 30, 1825),
        "retrain_every_days": _slider(widgets.IntSlider, "retrain every (days; 0 = never)",
                                      int(s.retrain_every_days), 0, 730),
    }
    for o in costs.OPTIMIZATIONS:
        v = values[o.name]
        shown = f"{v:.0%} hits" if o.kind == "hit_rate" else f"{v:.2f}×"
        label = "measured" if measured.get(o.name) else "default"
        controls[_toggle_name(o)] = widgets.Checkbox(value=False, description=f"{o.name}: {shown} ({label})",
                                                     indent=False, layout=widgets.Layout(width=_WIDTH))
    return LifecycleDashboard("What if? The lifecycle bill of one model", controls, values)
