"""Matplotlib helpers shared by the lessons: a live loss plot, a few consistent figure styles, dollar axes."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from . import money


def usd_formatter(sig: int = 3) -> FuncFormatter:
    """Axis ticks as short dollars ("$0", "$250k", "$36.5T"), never "1e7": for `ax.yaxis.set_major_formatter`."""
    return FuncFormatter(lambda v, _pos: money.usd(v, sig, short=True))


class LiveLossPlot:
    """A training callback that redraws train/val loss after each evaluation (in a notebook, in place).

        plot = LiveLossPlot("teacher"); train(..., callback=plot); plot.close()
    """

    def __init__(self, title: str = "training", target: float | None = None):
        from IPython.display import display

        self.rows: list[dict] = []
        self.fig, self.ax = plt.subplots(figsize=(7, 3.5))
        self.title, self.target = title, target
        self.handle = display(self.fig, display_id=True)
        plt.close(self.fig)  # shown through the display handle only, not a second time at cell end

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        ax = self.ax
        ax.clear()
        steps = [r["step"] for r in self.rows]
        ax.plot(steps, [r["train"] for r in self.rows], "o-", label="train")
        ax.plot(steps, [r["val"] for r in self.rows], "s-", label="val")
        if self.target is not None:
            ax.axhline(self.target, color="grey", ls="--", lw=1, label=f"target {self.target}")
        ax.set(xlabel="step", ylabel="loss (nats/char)", title=self.title)
        ax.legend()
        ax.grid(alpha=0.3)
        if self.handle is not None:
            self.handle.update(self.fig)


def loss_curves(histories: dict[str, list[dict]], key: str = "val", ax=None, x: str = "tokens"):
    """Plot several runs' loss curves (rows with 'step'/'tokens' and `key`) on one axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for name, rows in histories.items():
        ax.plot([r[x] for r in rows], [r[key] for r in rows], "o-", label=name)
    ax.set(xlabel=x, ylabel=f"{key} loss (nats/char)")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax
