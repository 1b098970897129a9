"""What the dashboards write and draw (issue 19): readable money at the extremes, legends off the data, words that
agree with the numbers. The browser test checks the same in JupyterLab; these run in a second without one."""
import re

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lifecycle import costs, money, widgets

SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


def drawn(dash) -> Figure:
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    dash.draw(fig, dash.inputs(), dash.summary)
    fig.canvas.draw()
    return fig


def test_fleet_legend_counts_days_in_words():
    dash = widgets.fleet_dashboard(days=1)
    assert "after 1 day" in [t.get_text() for t in drawn(dash).axes[0].get_legend().get_texts()]
    dash.controls["days"].value = 2
    assert "after 2 days" in [t.get_text() for t in drawn(dash).axes[0].get_legend().get_texts()]


def test_lifecycle_dashboard_at_its_extremes_reads_as_money():
    # the most the sliders allow: 1e9 queries a day, 1e5 tokens each, $1,000 per million tokens, for 5 years
    dash = widgets.lifecycle_dashboard(scenario=costs.Scenario(queries_per_day=1e9, tokens_per_query=1e5,
                                                               usd_per_million_tokens=1e3, lifetime_days=1825))
    text = re.sub("<[^>]+>", " ", dash.summary_html.value.replace(money.DOLLAR_MARKDOWN, "$"))
    assert "trillion" in text and not SCIENTIFIC.search(text), text
    assert money.usd(dash.summary["yearly_inference_usd"]) in text  # "$36.5 trillion", not "$3.65e+04B"
    ticks = [t.get_text() for t in drawn(dash).axes[0].get_yticklabels()]
    assert ticks and all(t.startswith("$") and not SCIENTIFIC.search(t) for t in ticks), ticks
    # a tiny query price: per million queries, never "$4.447e-05"
    cheap = widgets.lifecycle_dashboard(scenario=costs.Scenario(tokens_per_query=10, usd_per_million_tokens=0.01))
    assert "per million queries" in cheap.summary_html.value


def test_break_even_under_a_day_and_beyond_the_lifetime():
    fast = widgets.lifecycle_dashboard(scenario=costs.Scenario(queries_per_day=1e9, training_usd=1e5))
    assert "within the first day" in fast.summary_html.value
    seed = widgets.lifecycle_dashboard()
    assert "day 6,000 (after the 730-day lifetime)" in seed.summary_html.value
    seed.controls["retrain_every_days"].value = 730  # one run either way: the same answer
    assert "day 6,000 (after the 730-day lifetime)" in seed.summary_html.value


def test_legends_sit_off_the_axes():
    fig = drawn(widgets.lifecycle_dashboard())
    for ax in fig.axes:
        legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.y1 <= box.y0 + 1, (ax.get_title(), legend, box)  # below the plotting area, not on it
