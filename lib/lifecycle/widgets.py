"""Thin ipywidgets wiring: sliders, toggles and dropdowns in front of the pure functions of `lifecycle.costs` etc.

Dashboards, all ipywidgets containers (display them, or leave one as a cell's last expression):
- `fleet_dashboard(...)`     lesson 02: GPUs × days × accelerator × MFU × $/GPU-hour -> FLOPs, GPU-hours, dollars
                             (`costs.fleet_summary`).
- `lifecycle_dashboard(...)` lesson 09: queries/day, tokens/query, price, training bill, lifetime, retraining and
                             optimization toggles -> cost per query, yearly spend, shares, break-even
                             (`costs.lifecycle_summary`).
- `pricing_dashboard(...)`   lesson 09: queries/day and lifetime -> a cost per token split into amortized training
                             and serving compute (`pricing.price_per_token`).
- `sampling_dashboard(...)`  lesson 03: temperature, top-k, top-p, seed -> the next-token distribution and a draw
                             (`generate.sampling_summary`).
- `quantization_dashboard(...)` lesson 04: bits × group size -> bytes and validation loss, looked up in a grid
                             computed once (`measure.quality.precision_grid`, `grid_point`).
- `speculative_dashboard(...)` lesson 08: alpha, gamma, c -> the formula's speedup, with the measured points
                             (`speculative.speedup_summary`).

Displayed, a dashboard publishes one output holding both the live widget and a PNG of its starting state
(`display_with_snapshot`): front ends that run widgets show the widget, static viewers such as GitHub the picture.

Every change of a control recomputes the summary and redraws the figure. Nothing is computed here that a test
could not compute itself: `dash.inputs()` turns the controls into the keyword arguments of the pure function,
`dash.compute(**inputs)` is that function, `dash.summary` holds its last result. The summary table shows every
input and output as `<span class="lc-value" data-key="KEY" data-value="repr(float)">` (inputs keyed `input.NAME`),
so a browser test can read exact numbers; each control also carries the CSS class `lc-control-NAME` (NAME being
its key in `dash.controls`), the container the class `lc-dashboard`. Only APIs common to ipywidgets 7.7 (Colab)
and 8.x are used: the figure is a PNG in a `widgets.Image`, the table a `widgets.HTML`, callbacks
`observe(..., names="value")`.

One concept, kept in one file although it is long: the `Dashboard` base class (controls -> pure function -> table
and figure, the snapshot, the CSS hooks) and six thin subclasses, one per lesson's sliders, each only wiring.
Splitting them per lesson would spread one pattern over six files.
"""
from __future__ import annotations

import base64
import html
import io
import math

import ipywidgets as widgets
from matplotlib.figure import Figure

from . import costs, money, pricing
from .device import ACCELERATORS
from .generate import logits_to_probs, sampling_summary
from .measure.quality import grid_point
from .speculative import expected_speedup, speedup_summary
from .plots import usd_formatter

_STYLE = {"description_width": "16em"}
_WIDTH = "36em"  # every control the same width, so the sliders line up


def _usd(x: float) -> str:
    """Dollars as people write them (`lifecycle.money.usd`): $0.01, $10,000, $3.65 million, $36.5 trillion."""
    return money.usd(x)


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

    def _ipython_display_(self, **kwargs) -> None:
        # the live widget where a widget manager runs, the figure of its starting state everywhere else (GitHub)
        display_with_snapshot(self, self.figure.value)

    def _on_change(self, change) -> None:
        self.refresh()

    def row_text(self, key: str, fmt, inputs: dict) -> str:
        """The summary's value `key` as shown; `fmt` is its formatter in ROWS (a subclass may use the inputs too)."""
        return fmt(self.summary[key])

    def refresh(self) -> None:
        """Recompute the summary from the controls and redraw the table and the figure."""
        inputs = self.inputs()
        try:
            self.summary = self.compute(**inputs)
        except (ValueError, TypeError) as e:  # a bad combination: say why instead of breaking the dashboard
            self.summary = {}
            self.summary_html.value = money.markdown(f'<span class="lc-error">{html.escape(str(e))}</span>')
            return
        rows = "".join(f'<tr><td style="padding-right:1.5em">{html.escape(label)}</td>'
                       f"<td>{value_span(key, self.summary[key], self.row_text(key, fmt, inputs))}</td></tr>"
                       for key, label, fmt in self.ROWS)
        given = ", ".join(f"{html.escape(k)} = {value_span('input.' + k, v, money.fixed(v, 4))}"
                          for k, v in inputs.items())
        # "$" as `money.DOLLAR_MARKDOWN`: a front end that typesets maths must not read "$1 ... $2" as a formula
        inputs_html = f'<div class="lc-inputs" style="font-size:smaller">from: {given}</div>'
        self.summary_html.value = money.markdown(f'<table class="lc-summary">{rows}</table>{inputs_html}')
        fig = Figure(figsize=(11, 3.4), layout="constrained")
        self.draw(fig, inputs, self.summary)
        self.figure.value = _png(fig)


def _slider(cls, description: str, value, lo, hi, **kw):
    """A slider whose range always includes `value`."""
    return cls(value=value, min=min(lo, value), max=max(hi, value), description=description,
               continuous_update=False, style=_STYLE, layout=widgets.Layout(width=_WIDTH), **kw)


def _shown_as_is(name: str, value, *, whole: bool = False, positive: bool = False) -> None:
    """Refuse a starting value a control cannot show unchanged (an IntSlider would truncate 0.5 to 0, a log slider
    has no 0), instead of silently computing a different scenario."""
    if whole and value != int(value):
        raise ValueError(f"{name}={value!r}: this dashboard's slider takes whole numbers; give a whole number, or "
                         f"compute the scenario directly with costs.Scenario({name}={value!r}).summary()")
    if positive and not value > 0:
        raise ValueError(f"{name}={value!r}: this dashboard's slider is logarithmic and cannot show 0; give a "
                         f"positive value, or compute the scenario directly with costs.Scenario({name}={value!r})")


def _log_slider(description: str, value: float, lo_exp: float, hi_exp: float, fmt: str = ",.3r"):
    # readouts are d3-format strings: ",.3r" is 3 significant digits in fixed point ("1,000", "0.0100"), never "1e+3"
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
            ("days_for_published", "days to reach 2e25", lambda v: f"{v:,.0f}"))

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
        days = inputs["days"]
        ax.plot([days], [summary["flops"]], "o", color="C3", label=f"after {days:,g} day{'' if days == 1 else 's'}")
        ax.set(xlabel="training day", ylabel="FLOPs", title="What the fleet computes")
        ax.legend(loc="upper left")


def fleet_dashboard(n_gpus: int = costs.SEED.n_gpus, days: int = int(costs.SEED.days),
                    accelerator: str = costs.SEED.accelerator, mfu: float = costs.SEED.mfu,
                    usd_per_gpu_hour: float = costs.SEED.usd_per_gpu_hour) -> FleetDashboard:
    """Sliders for GPUs, days, MFU and $/GPU-hour and an accelerator dropdown; shows FLOPs, GPU-hours and dollars."""
    costs.fleet_summary(n_gpus, days, costs.peak_of(accelerator), mfu, usd_per_gpu_hour)  # fail early on bad input
    _shown_as_is("n_gpus", n_gpus, whole=True)
    _shown_as_is("days", days, whole=True)
    controls = {
        "n_gpus": _slider(widgets.IntSlider, "GPUs", int(n_gpus), 1_000, 100_000, step=500, readout_format=",d"),
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
    ROWS = (("usd_per_query", "cost per query", money.per_query),
            ("daily_inference_usd", "inference per day", _usd),
            ("yearly_inference_usd", "inference per year", _usd),
            ("training_runs", "training runs", lambda v: f"{v:.0f}"),
            ("training_usd_total", "training, lifetime", _usd),
            ("inference_usd_total", "inference, lifetime", _usd),
            ("lifetime_usd", "total, lifetime", _usd),
            ("training_share", "training share", lambda v: f"{v:.1%}"),
            ("inference_share", "inference share", lambda v: f"{v:.1%}"),
            ("break_even_day", "inference overtakes training", costs.break_even_text))

    def __init__(self, title: str, controls: dict, optimizations: dict[str, float]):
        self.optimizations = optimizations  # name -> measured value (speed factor or hit rate)
        super().__init__(title, controls)

    def row_text(self, key: str, fmt, inputs: dict) -> str:
        if key == "break_even_day":  # "day 6,000 (after the 730-day lifetime)" needs the lifetime
            return costs.break_even_text(self.summary[key], inputs["lifetime_days"])
        return super().row_text(key, fmt, inputs)

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
        spend.set_ylim(bottom=0)  # spending starts at $0: no negative ticks
        spend.yaxis.set_major_formatter(usd_formatter())
        spend.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize="small")  # below, off the data
        shares.bar(["training", "inference"], [summary["training_share"], summary["inference_share"]],
                   color=["C0", "C1"])
        shares.axhspan(0.2, 0.4, color="grey", alpha=0.25, zorder=0, label="seed: training 20–40%")
        shares.set(ylim=(0, 1), title="share of the lifetime bill")
        shares.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small")  # below, off the bars


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
    for name in ("queries_per_day", "tokens_per_query", "usd_per_million_tokens", "training_usd"):
        _shown_as_is(name, getattr(s, name), positive=True)
    for name in ("lifetime_days", "retrain_every_days"):
        _shown_as_is(name, getattr(s, name), whole=True)
    controls = {
        "queries_per_day": _log_slider("queries per day", s.queries_per_day, 3, 9, ",.0f"),
        "tokens_per_query": _log_slider("tokens per query", s.tokens_per_query, 1, 5, ",.0f"),
        "usd_per_million_tokens": _log_slider("USD per million tokens", s.usd_per_million_tokens, -2, 3),
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


# ---- lesson 09: a price per token, split into amortized training and serving compute ----

class PricingDashboard(Dashboard):
    """Queries/day and lifetime -> a provider's cost per token: training ÷ tokens served, plus serving compute."""

    compute = staticmethod(pricing.price_per_token)
    ROWS = (("tokens_served", "tokens served over the life", lambda v: f"{money.fixed(v / 1e9, 3)} billion"),
            ("training_per_token", "training, per million tokens", lambda v: _usd(v * 1e6)),
            ("serving_per_token", "serving, per million tokens", lambda v: _usd(v * 1e6)),
            ("usd_per_million_tokens", "cost per million tokens", _usd),
            ("usd_per_query", "cost per query", money.per_query),
            ("training_share", "training share of the price", lambda v: f"{v:.1%}"))

    def __init__(self, title: str, controls: dict, fixed: dict[str, float]):
        self.fixed = fixed  # training_usd, ms_per_token, usd_per_hour, tokens_per_query, batch: not on sliders
        super().__init__(title, controls)

    def inputs(self) -> dict[str, float]:
        c = self.controls
        return {**self.fixed, "queries_per_day": c["queries_per_day"].value, "lifetime_days": c["lifetime_days"].value}

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        ax = fig.subplots()
        q0 = inputs["queries_per_day"]
        volumes = [q0 * 10 ** (k / 10) for k in range(-30, 31)]  # three decades either side
        split = [pricing.price_per_token(**{**inputs, "queries_per_day": q}) for q in volumes]
        train = [1e6 * r["training_per_token"] for r in split]
        serve = [1e6 * r["serving_per_token"] for r in split]
        ax.stackplot(volumes, serve, train, labels=["serving compute", "amortized training"], colors=["C1", "C0"])
        ax.plot([q0], [summary["usd_per_million_tokens"]], "o", color="C3", label="this setting")
        ax.set(xscale="log", yscale="log", xlabel="queries per day", ylabel="dollars per million tokens",
               title=f"Cost per million tokens over a {inputs['lifetime_days']:,}-day life")
        ax.yaxis.set_major_formatter(usd_formatter())
        ax.legend(loc="upper right", fontsize="small")


def pricing_dashboard(training_usd: float, ms_per_token: float, usd_per_hour: float, *,
                      tokens_per_query: float = costs.SEED.tokens_per_query, batch: int = 1,
                      queries_per_day: float = costs.SEED.queries_per_day,
                      lifetime_days: int = int(costs.SEED.lifetime_days)) -> PricingDashboard:
    """Sliders for queries/day and lifetime in front of `pricing.price_per_token`; the other inputs stay fixed.

    Expected figures for any state: `pricing.price_per_token(**dash.inputs())`.
    """
    fixed = {"training_usd": training_usd, "ms_per_token": ms_per_token, "usd_per_hour": usd_per_hour,
             "tokens_per_query": tokens_per_query, "batch": batch}
    pricing.price_per_token(queries_per_day=queries_per_day, lifetime_days=lifetime_days, **fixed)  # fail early
    _shown_as_is("queries_per_day", queries_per_day, positive=True)
    _shown_as_is("lifetime_days", lifetime_days, whole=True)
    controls = {"queries_per_day": _log_slider("queries per day", queries_per_day, 3, 10, ",.0f"),
                "lifetime_days": _slider(widgets.IntSlider, "lifetime (days)", int(lifetime_days), 30, 1825)}
    return PricingDashboard("Price per token: amortized training + serving compute", controls, fixed)


# ---- a static picture beside the live widget (engineer H4b) ----

def snapshot_bundle(widget: widgets.Widget, png: bytes | None = None, text: str = "", html: str = "") -> dict:
    """One display bundle: the live widget (for front ends with a widget manager) and a static picture of its
    starting state for every other: a PNG, or HTML where the widget shows a table rather than a plot.

    A front end shows the richest type it can render: JupyterLab, Notebook, VS Code and Colab the widget; GitHub's
    and nbviewer's static pages, which cannot run widgets, the picture saved in the notebook.
    """
    if png is None and not html:
        raise ValueError("a snapshot needs a picture of the widget's starting state: png bytes or html")
    bundle = {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                           "model_id": widget.model_id}}
    if html:
        bundle["text/html"] = html
    if png is not None:
        bundle["image/png"] = base64.b64encode(bytes(png)).decode("ascii")
    bundle["text/plain"] = text or f"{type(widget).__name__} (a live widget; run the notebook to use it)"
    return bundle


def display_with_snapshot(widget: widgets.Widget, png: bytes | None = None, text: str = "", html: str = "") -> None:
    """Display `widget`, saving a picture of its starting state (`png`, or `html`) in the same output for static
    viewers."""
    from IPython.display import display
    display(snapshot_bundle(widget, png, text, html), raw=True)
    if hasattr(widget, "_handle_displayed"):  # ipywidgets 7 (Colab) runs its on_displayed callbacks here
        widget._handle_displayed()


def figure_png(fig: Figure) -> bytes:
    """A matplotlib figure as PNG bytes, as the dashboards draw theirs."""
    return _png(fig)


# ---- lesson 03: temperature, top-k and top-p on the teacher's next-token distribution ----

class SamplingDashboard(Dashboard):
    """Temperature, top-k, top-p and a seed -> the distribution a token is drawn from, and one draw."""

    def __init__(self, title: str, controls: dict, logits, labels: list[str], prompt: str):
        self.logits, self.labels, self.prompt = logits.detach().float().cpu(), list(labels), prompt  # logits (V,)
        V = self.logits.numel()
        self.ROWS = (("top_prob", "probability of the favourite", lambda v: f"{v:.1%}"),
                     ("kept", "tokens that can be drawn", lambda v: f"{v:.0f} of {V}"),
                     ("entropy_bits", "entropy", lambda v: f"{v:.2f} bits"),
                     ("sample", "the token drawn with this seed", lambda v: repr(self.labels[int(v)])))
        super().__init__(title, controls)

    def compute(self, **inputs) -> dict[str, float]:
        return sampling_summary(self.logits, **inputs)

    def inputs(self) -> dict[str, float]:
        return {name: self.controls[name].value for name in ("temperature", "top_k", "top_p", "seed")}

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        ax = fig.subplots()
        t = inputs["temperature"]
        plain = logits_to_probs(self.logits)  # (V,) the model's own distribution, T = 1
        now = logits_to_probs(self.logits, t if t > 0 else 1e-8, inputs["top_k"] or None, inputs["top_p"])
        top = plain.topk(min(24, plain.numel())).indices.tolist()
        picked = int(summary["sample"])
        if picked not in top:
            top[-1] = picked
        x = range(len(top))
        ax.bar([i - 0.2 for i in x], [float(plain[i]) for i in top], 0.4, color="lightgrey", label="the model (T=1)")
        ax.bar([i + 0.2 for i in x], [float(now[i]) for i in top], 0.4, color="C0", label="after your settings")
        k = top.index(picked)
        ax.bar([k + 0.2], [float(now[picked])], 0.4, color="C3", label=f"drawn: {self.labels[picked]!r}")
        ax.set_xticks(list(x), [repr(self.labels[i])[1:-1] or " " for i in top])
        ax.set(ylabel="probability", ylim=(0, 1),
               title=f"The next character after {self.prompt[-30:]!r}: its {len(top)} likeliest candidates")
        ax.legend(loc="upper right")


def sampling_dashboard(logits, labels: list[str], prompt: str = "", temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0, seed: int = 0) -> SamplingDashboard:
    """Lesson 03's sliders on one next-token distribution: logits (V,) from the model, labels[i] = token i's text.

    Expected figures for any state: `generate.sampling_summary(logits, **dash.inputs())`.
    """
    if logits.dim() != 1 or logits.numel() != len(labels):
        raise ValueError(f"need logits of shape (V,) and one label per token; got {tuple(logits.shape)} logits "
                         f"and {len(labels)} labels (pass model(ids)[0][0, -1] and tokenizer.chars)")
    sampling_summary(logits, temperature, top_k, top_p, seed)  # fail early on a bad setting
    V = len(labels)
    controls = {"temperature": _slider(widgets.FloatSlider, "temperature (0 = greedy)", temperature, 0.0, 2.0,
                                       step=0.05),
                "top_k": _slider(widgets.IntSlider, "top-k (0 = off)", top_k, 0, V),
                "top_p": _slider(widgets.FloatSlider, "top-p (1 = off)", top_p, 0.05, 1.0, step=0.05),
                "seed": _slider(widgets.IntSlider, "seed of the draw", seed, 0, 99)}
    return SamplingDashboard("Sampling: temperature, top-k and top-p", controls, logits, labels, prompt)


# ---- lesson 04: bits and group size against bytes and validation loss ----

def _group_label(g: int) -> str:
    return "per row" if g == 0 else str(g)


class QuantizationDashboard(Dashboard):
    """Bit width × group size -> the model's bytes and validation loss, looked up in a precomputed grid."""

    ROWS = (("bytes", "weights and tables", lambda v: f"{v / 1e6:.3f} MB"),
            ("bytes_vs_fp32", "size against fp32", lambda v: f"{v:.1%}"),
            ("val_loss", "validation loss", lambda v: f"{v:.4f}"),
            ("val_loss_change", "loss change against fp32", lambda v: f"{v:+.2%}"))

    def __init__(self, title: str, controls: dict, grid: list[dict]):
        self.grid = grid
        super().__init__(title, controls)

    def compute(self, **inputs) -> dict[str, float]:
        return grid_point(self.grid, **inputs)

    def inputs(self) -> dict[str, float]:
        return {"bits": self.controls["bits"].value, "group_size": self.controls["group_size"].value}

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        ax = fig.subplots()
        base = next(r for r in self.grid if r["bits"] == 32)
        ax.axhline(base["val_loss"], color="grey", ls="--", lw=1, label=f"fp32: {base['bytes'] / 1e6:.2f} MB")
        for k, g in enumerate(sorted({r["group_size"] for r in self.grid if r["bits"] != 32})):
            rows = sorted((r for r in self.grid if r["group_size"] == g and r["bits"] != 32), key=lambda r: r["bits"])
            ax.plot([r["bytes"] / 1e6 for r in rows], [r["val_loss"] for r in rows], "o-", color=f"C{k}",
                    label=f"group {_group_label(g)}")
            for r in rows:
                ax.annotate(f"{r['bits']}b", (r["bytes"] / 1e6, r["val_loss"]), textcoords="offset points",
                            xytext=(4, 4), fontsize="small")
        ax.plot([summary["bytes"] / 1e6], [summary["val_loss"]], "o", ms=16, mfc="none", mec="C3", mew=2,
                label=f"{inputs['bits']} bits, group {_group_label(inputs['group_size'])}")
        ax.set(xlabel="bytes of the quantized model (MB)", ylabel="validation loss",
               title="Every setting of the grid: bytes against validation loss")
        ax.legend(loc="upper right", fontsize="small")


def quantization_dashboard(grid: list[dict], bits: int = 4, group_size: int = 64) -> QuantizationDashboard:
    """Lesson 04's sliders over `measure.quality.precision_grid(...)` rows; moving them only looks rows up.

    Expected figures for any state: `measure.quality.grid_point(grid, **dash.inputs())`.
    """
    grid_point(grid, bits, group_size)  # fail early: that point must be in the grid
    widths = sorted({r["bits"] for r in grid if r["bits"] != 32}, reverse=True)
    groups = sorted({r["group_size"] for r in grid if r["bits"] != 32}, key=lambda g: g or math.inf)
    controls = {"bits": widgets.SelectionSlider(options=[(str(b), b) for b in widths], value=bits,
                                                description="bits per weight", continuous_update=False,
                                                style=_STYLE, layout=widgets.Layout(width=_WIDTH)),
                "group_size": widgets.SelectionSlider(options=[(_group_label(g), g) for g in groups],
                                                      value=group_size, description="weights per scale",
                                                      continuous_update=False, style=_STYLE,
                                                      layout=widgets.Layout(width=_WIDTH))}
    return QuantizationDashboard("Quantization: bits and group size against bytes and loss", controls, grid)


# ---- lesson 08: the speculative-decoding formula against the lesson's measurements ----

class SpeculativeDashboard(Dashboard):
    """Acceptance rate alpha, drafts per round gamma and cost ratio c -> the formula's speedup."""

    compute = staticmethod(speedup_summary)
    ROWS = (("tokens_per_call", "tokens per teacher call", lambda v: f"{v:.2f}"),
            ("speedup", "predicted speedup", lambda v: f"{v:.2f}×"),
            ("best_gamma", "best gamma at this alpha and c", lambda v: f"{v:.0f}"),
            ("best_speedup", "speedup at the best gamma", lambda v: f"{v:.2f}×"))

    def __init__(self, title: str, controls: dict, measured: list[tuple[int, float]]):
        self.measured = measured  # (gamma, measured speedup) pairs from the lesson
        super().__init__(title, controls)

    def inputs(self) -> dict[str, float]:
        return {name: self.controls[name].value for name in ("alpha", "gamma", "c")}

    def draw(self, fig: Figure, inputs: dict, summary: dict) -> None:
        ax = fig.subplots()
        gammas = list(range(1, 17))
        ax.plot(gammas, [expected_speedup(inputs["alpha"], g, inputs["c"]) for g in gammas], "-",
                label=f"formula: α = {inputs['alpha']:.2f}, c = {inputs['c']:.2f}")
        ax.plot([inputs["gamma"]], [summary["speedup"]], "o", ms=10, color="C0")
        if self.measured:
            ax.plot(*zip(*self.measured), "s", color="C3", label="measured in this lesson")
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="the teacher alone")
        ax.set(xlabel="γ (drafted tokens per round)", ylabel="speedup over the teacher alone",
               title="Speculative decoding: the formula and the measurements")
        ax.legend(loc="upper right")


def speculative_dashboard(alpha: float, c: float, gamma: int = 4,
                          measured: list[tuple[int, float]] = ()) -> SpeculativeDashboard:
    """Lesson 08's sliders, starting at the measured alpha and c; `measured` (gamma, speedup) points are drawn.

    Expected figures for any state: `speculative.speedup_summary(**dash.inputs())`.
    """
    speedup_summary(alpha, gamma, c)  # fail early on a bad alpha, gamma or c
    controls = {"alpha": _slider(widgets.FloatSlider, "α (acceptance rate)", round(alpha, 2), 0.0, 1.0, step=0.01),
                "gamma": _slider(widgets.IntSlider, "γ (drafts per round)", int(gamma), 1, 16),
                "c": _slider(widgets.FloatSlider, "c (draft step ÷ teacher step)", round(c, 2), 0.0, 1.0,
                             step=0.01)}
    return SpeculativeDashboard("Speculative decoding: what the formula predicts", controls,
                                [(int(g), float(s)) for g, s in measured])

