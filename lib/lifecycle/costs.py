"""The lifecycle cost model: a model is trained once (plus retraining) and then served every day; what does each cost?

Pure functions in four layers; none of them draws, prints or reads files.
- training   FLOPs from 6·N·D (+ the attention term), what a fleet delivers (GPUs × days × peak × MFU),
             GPU-hours, days and dollars at a $/GPU-hour.
- inference  2·N FLOPs per token; $ per query = tokens × $ per million tokens, where that price comes from an
             API price list or from hardware ($/hour ÷ tokens/s); daily and yearly spend.
- lifecycle  a `Scenario` (queries/day, tokens/query, price, training cost, lifetime, retraining cadence and the
             optimizations' combined effect) -> totals, the share of each phase, the break-even day.
- the seed   its figures and our stated assumptions (`SEED`), its comparison table rebuilt from the functions
             above (`seed_table`), and what the learner's measured optimizations are worth (`optimization_rows`).
             `python -m lifecycle.costs` prints the reproduction.
What one request needs in memory and how a price per token splits into training and serving are in
`lifecycle.pricing`, built on these functions.

Every input is checked: a wrong type raises TypeError, a NaN, infinite, negative or out-of-range value raises
ValueError; both name the parameter and the range it must lie in.

References: Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (training ≈ 6·N·D FLOPs, a forward
pass ≈ 2·N per token); Chowdhery et al. 2022, "PaLM", appendix B (MFU, and the 12·L·T·d attention term);
Brown et al. 2020, "Language Models are Few-Shot Learners" (GPT-3: 175e9 parameters, 300e9 tokens);
Epoch AI's database of notable AI models (public estimate of GPT-4's training compute, about 2e25 FLOP).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Mapping

from .checks import require_fraction, require_non_negative, require_number, require_positive
from .device import ACCELERATORS
from .money import usd

SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365


# ---- validation: the library's checks (lifecycle.checks), and two that only a cost model needs ----

def _check(name: str, value, *, low: float = 0.0, low_open: bool = True, high: float = math.inf,
           high_open: bool = False, hint: str = "") -> float:
    """`value` as a float if it is a finite real number in the range; else TypeError/ValueError naming `name`."""
    return float(require_number(name, value, low=low, high=None if high == math.inf else high, low_open=low_open,
                                high_open=high_open, hint=hint))


def _finite(name: str, value: float) -> float:
    """`value` if finite; else ValueError. Finite inputs can overflow float64 together (1000 × 1e308 = inf), and a
    cost model must say so rather than answer inf or NaN."""
    if not math.isfinite(value):
        raise ValueError(f"{name} overflows to {value}: the inputs are finite but their product exceeds the largest "
                         "float (about 1.8e308); use realistic magnitudes")
    return value


def _rate(name: str, value, example: str) -> float:
    """A per-second rate in base units; anything under 1e6 is almost surely in tera- or giga- units."""
    return _check(name, value, low=1e6, low_open=False, hint=f"give it in base units, e.g. {example}")


def peak_of(accelerator: str) -> float:
    """Dense 16-bit peak FLOP/s of an accelerator in `lifecycle.device.ACCELERATORS` (bf16, else fp16)."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {sorted(ACCELERATORS)}, got {accelerator!r}")
    a = ACCELERATORS[accelerator]
    return a.bf16_flops or a.fp16_flops


# ---- training ----

def training_flops(n_params, n_tokens, *, n_layer=0, context=0, d_model=0) -> float:
    """FLOPs to train on `n_tokens` tokens: 6·N·D, plus 12·L·T·d·D for attention when L, T, d are given.

    6 = 2 (a multiply-add per weight per token, forward) × 3 (backward costs twice the forward).
    """
    n, d = require_positive("n_params", n_params), require_positive("n_tokens", n_tokens)
    attention = (require_non_negative("n_layer", n_layer) * require_non_negative("context", context)
                 * require_non_negative("d_model", d_model))
    return _finite("training FLOPs", 6 * n * d + 12 * attention * d)


def fleet_flops(n_gpus, days, peak_flops, mfu) -> float:
    """FLOPs a fleet delivers: GPUs × seconds × peak FLOP/s × model FLOPs utilization."""
    return _finite("fleet FLOPs", require_positive("n_gpus", n_gpus) * require_positive("days", days) * SECONDS_PER_DAY
                   * _rate("peak_flops", peak_flops, "312e12 FLOP/s for an A100") * require_fraction("mfu", mfu))


def gpu_hours(flops, peak_flops, mfu) -> float:
    """GPU-hours needed for `flops` when each GPU sustains peak × MFU."""
    peak = _rate("peak_flops", peak_flops, "312e12 FLOP/s for an A100")
    return _finite("GPU-hours", require_positive("flops", flops) / (peak * require_fraction("mfu", mfu)) / 3600)


def training_days(flops, n_gpus, peak_flops, mfu) -> float:
    """Wall-clock days for `flops` on `n_gpus` GPUs (perfect scaling assumed: MFU absorbs the losses)."""
    return gpu_hours(flops, peak_flops, mfu) / 24 / require_positive("n_gpus", n_gpus)


def training_cost(gpu_hours, usd_per_gpu_hour) -> float:
    """Dollars for `gpu_hours` at a rental (or amortized ownership) price per GPU-hour."""
    return _finite("training cost", require_positive("gpu_hours", gpu_hours) * require_positive("usd_per_gpu_hour", usd_per_gpu_hour))


def fleet_summary(n_gpus, days, peak_flops, mfu, usd_per_gpu_hour, published_flops=2e25) -> dict[str, float]:
    """What a training fleet delivers and costs; the pure function behind `widgets.fleet_dashboard`."""
    flops = fleet_flops(n_gpus, days, peak_flops, mfu)
    hours = require_positive("n_gpus", n_gpus) * require_positive("days", days) * 24
    return {"flops": flops, "gpu_hours": hours, "usd": training_cost(hours, usd_per_gpu_hour),
            "vs_published": flops / require_positive("published_flops", published_flops),
            "days_for_published": training_days(published_flops, n_gpus, peak_flops, mfu)}


# ---- inference ----

def inference_flops_per_token(n_params) -> float:
    """Forward FLOPs per generated token: one multiply-add (2 FLOPs) per weight (attention left out)."""
    return 2 * require_positive("n_params", n_params)


def tokens_per_s_from_flops(n_params, flops_per_s, utilization) -> float:
    """Tokens/s a device sustains if compute bound at `utilization` of `flops_per_s` (large batches)."""
    rate = _rate("flops_per_s", flops_per_s, "312e12 FLOP/s for an A100")
    return rate * require_fraction("utilization", utilization) / inference_flops_per_token(n_params)


def decode_seconds_per_token(weight_bytes, bandwidth, n_gpus=1) -> float:
    """Lower bound on one decode step at batch 1: every weight byte is read once, spread over `n_gpus` GPUs."""
    bw = _rate("bandwidth", bandwidth, "2.039e12 bytes/s for an A100")
    return require_positive("weight_bytes", weight_bytes) / (bw * require_positive("n_gpus", n_gpus))


def gpus_to_hold(n_params, bytes_per_param, memory_bytes, usable=0.8) -> int:
    """GPUs needed to hold the weights, leaving 1 - `usable` of each GPU's memory for the KV cache."""
    need = require_positive("n_params", n_params) * require_positive("bytes_per_param", bytes_per_param)
    memory = _check("memory_bytes", memory_bytes, low=1e6, low_open=False, hint="give bytes, e.g. 80e9 for 80 GB")
    return math.ceil(need / (memory * require_fraction("usable", usable)))


def usd_per_million_tokens(usd_per_hour, tokens_per_s) -> float:
    """Hardware price per million tokens: what an hour costs ÷ how many million tokens it produces."""
    return _finite("usd per million tokens",
                   require_positive("usd_per_hour", usd_per_hour) / (require_positive("tokens_per_s", tokens_per_s) * 3600 / 1e6))


def cost_per_query(tokens_per_query, usd_per_million_tokens) -> float:
    """Dollars per query at a per-token price (API style: every token is a unit of inference compute)."""
    price = require_positive("usd_per_million_tokens", usd_per_million_tokens)
    return _finite("cost per query", require_positive("tokens_per_query", tokens_per_query) * price / 1e6)


def daily_inference_cost(queries_per_day, usd_per_query) -> float:
    """Dollars per day: queries/day × $ per query."""
    return _finite("daily inference cost",
                   require_non_negative("queries_per_day", queries_per_day) * require_non_negative("usd_per_query", usd_per_query))


def yearly(per_day, days_per_year=DAYS_PER_YEAR) -> float:
    """A daily figure over a year (365 days unless told)."""
    return _finite("yearly figure", require_non_negative("per_day", per_day) * require_positive("days_per_year", days_per_year))


# ---- the lifecycle: training runs + every day's inference ----

def training_runs(lifetime_days, retrain_every_days=0.0) -> int:
    """The first run plus one retraining every `retrain_every_days` (0 = never) that starts within the lifetime."""
    life, every = require_positive("lifetime_days", lifetime_days), require_non_negative("retrain_every_days", retrain_every_days)
    return 1 if every == 0 else math.ceil(life / every)  # retrains at every, 2·every, ... strictly before the end


def break_even_day(training_usd, daily_usd, retrain_every_days=0.0, lifetime_days=None) -> float:
    """First day on which cumulative inference spend reaches cumulative training spend (inf if never).

    With retraining every R days training spend steps up by `training_usd` at R, 2R, ...; inference catches up
    within the first period (day T/c < R) or, since every later period adds as much training as it can add
    inference, never. Given `lifetime_days`, a retraining that would start at or after the end of the lifetime
    never happens (`training_runs`), so that scenario is the one without retraining and gets its answer: the day
    may then lie beyond the lifetime (inference would pass training if the model were served that long).
    """
    t, c = require_positive("training_usd", training_usd), require_non_negative("daily_usd", daily_usd)
    every = require_non_negative("retrain_every_days", retrain_every_days)
    if lifetime_days is not None and training_runs(lifetime_days, every) == 1:
        every = 0.0  # the same single run as "never retrained": the same answer
    if c == 0:
        return math.inf
    day = t / c
    return day if every == 0 or day < every else math.inf


def break_even_text(day: float, lifetime_days: float | None = None) -> str:
    """A break-even day as a learner reads it: "within the first day", "day 1,234", "never".

    Day n is the n-th day of service, so a break-even 0.3 days in is "within the first day" and 5,999.2 days in
    is "day 6,000". With `lifetime_days`, a day after the lifetime says so.
    """
    d = require_non_negative("break_even_day", day) if not math.isinf(day) else day
    if math.isinf(d):
        return "never"
    if d < 1:
        return "within the first day"
    n = math.ceil(d)
    if lifetime_days is not None and d > require_positive("lifetime_days", lifetime_days):
        return f"day {n:,} (after the {lifetime_days:,.0f}-day lifetime)"
    return f"day {n:,}"


@dataclass(frozen=True)
class Scenario:
    """One deployment over its lifetime. Defaults: the seed's 1M queries/day at $0.01 and a GPT-4-class run."""

    queries_per_day: float = 1e6
    tokens_per_query: float = 1000.0  # prompt + reply; with the price below, $0.01 per query
    usd_per_million_tokens: float = 10.0
    training_usd: float = 60e6  # one run: 25,000 A100 × 100 days × 24 h × $1.00 (see SEED)
    lifetime_days: float = 730.0
    retrain_every_days: float = 0.0  # 0 = never retrained
    speedup: float = 1.0  # combined throughput factor of the optimizations in use (>1 = faster, so cheaper)
    cache_hit_rate: float = 0.0  # share of queries answered from a response cache at ~zero cost

    def __post_init__(self):
        require_non_negative("queries_per_day", self.queries_per_day)
        require_positive("tokens_per_query", self.tokens_per_query)
        require_positive("usd_per_million_tokens", self.usd_per_million_tokens)
        require_positive("training_usd", self.training_usd)
        require_positive("lifetime_days", self.lifetime_days)
        require_non_negative("retrain_every_days", self.retrain_every_days)
        require_positive("speedup", self.speedup, hint="a ratio, e.g. 2.0 for twice as fast")
        require_fraction("cache_hit_rate", self.cache_hit_rate, zero_ok=True)

    @property
    def usd_per_query(self) -> float:
        """$ per query after the optimizations: a cache hit is free, the rest runs `speedup`× cheaper."""
        base = cost_per_query(self.tokens_per_query, self.usd_per_million_tokens)
        return base * (1 - self.cache_hit_rate) / self.speedup

    def summary(self) -> dict[str, float]:
        """Every figure the dashboards show, as floats."""
        runs = training_runs(self.lifetime_days, self.retrain_every_days)
        daily = daily_inference_cost(self.queries_per_day, self.usd_per_query)
        train = _finite("training spend", self.training_usd * runs)
        infer = _finite("inference spend", daily * self.lifetime_days)
        _finite("lifetime spend", train + infer)
        return {"usd_per_query": self.usd_per_query, "daily_inference_usd": daily,
                "yearly_inference_usd": yearly(daily), "training_runs": float(runs), "training_usd_total": train,
                "inference_usd_total": infer,
                "lifetime_usd": train + infer, "training_share": train / (train + infer),
                "inference_share": infer / (train + infer),
                "break_even_day": break_even_day(self.training_usd, daily, self.retrain_every_days,
                                                 self.lifetime_days)}

    def cumulative(self, day: float) -> tuple[float, float]:
        """(training, inference) dollars spent by `day` (retrainings start at R, 2R, ... before the end)."""
        day = _check("day", day, low_open=False, high=self.lifetime_days)
        every = self.retrain_every_days
        runs = 1 if every == 0 else min(1 + int(day // every), training_runs(self.lifetime_days, every))
        return self.training_usd * runs, daily_inference_cost(self.queries_per_day, self.usd_per_query) * day

    def queries_for_training_share(self, share) -> float:
        """Queries/day at which training is `share` of the lifetime bill (other settings unchanged)."""
        s = require_fraction("share", share, one_ok=False)
        train = self.training_usd * training_runs(self.lifetime_days, self.retrain_every_days)
        if self.usd_per_query == 0:  # every query a cache hit: inference costs nothing, training is all of it
            return math.inf
        return train * (1 - s) / (s * self.usd_per_query * self.lifetime_days)


def lifecycle_summary(**scenario) -> dict[str, float]:
    """`Scenario(**scenario).summary()`: the pure function behind `widgets.lifecycle_dashboard`."""
    return Scenario(**scenario).summary()


# ---- the seed's figures and the assumptions we add to them ----

@dataclass(frozen=True)
class SeedFigures:
    """The seed's numbers (first block) and the assumptions this course states to turn them into arithmetic."""

    queries_per_day: float = 1e6  # the seed's example deployment: a million queries a day, a cent each
    usd_per_query: float = 0.01
    n_gpus: int = 25_000  # the seed's estimate for GPT-4: some 25,000 A100s for about 100 days
    days: float = 100.0
    accelerator: str = "A100-SXM4-80GB"
    # ---- assumptions (ours; change them and every derived figure follows) ----
    mfu: float = 0.35  # model FLOPs utilization of a large, well-run training job
    usd_per_gpu_hour: float = 1.00  # a long, bulk reservation; on-demand cloud prices are several times higher
    published_flops: float = 2e25  # public estimate of GPT-4's training compute (Epoch AI; OpenAI published none)
    tokens_per_query: float = 1000.0  # prompt + reply
    lifetime_days: float = 730.0  # two years of service, no retraining
    price_range: tuple[float, float] = (1.0, 100.0)  # API prices, $ per million tokens, cheap to frontier
    served_params: tuple[float, float] = (7e9, 175e9)  # a small open model to a GPT-3-sized one
    bytes_per_param: float = 2.0  # 16-bit weights
    memory_for_weights: float = 0.8  # share of each GPU's memory given to weights; the rest holds the KV cache
    reply_tokens: tuple[int, int] = (1, 500)  # a one-token answer to a long reply

    @property
    def usd_per_million_tokens(self) -> float:
        return self.usd_per_query / self.tokens_per_query * 1e6

    def training(self) -> dict[str, float]:
        """The GPT-4-class estimate: fleet FLOPs, GPU-hours, dollars, and how it compares with the published figure."""
        peak = peak_of(self.accelerator)
        out = fleet_summary(self.n_gpus, self.days, peak, self.mfu, self.usd_per_gpu_hour, self.published_flops)
        out["implied_mfu"] = self.published_flops / fleet_flops(self.n_gpus, self.days, peak, 1.0)
        return out

    def scenario(self, **overrides) -> Scenario:
        """The seed's deployment with a GPT-4-class training bill, as a `Scenario`."""
        base = Scenario(queries_per_day=self.queries_per_day, tokens_per_query=self.tokens_per_query,
                        usd_per_million_tokens=self.usd_per_million_tokens, training_usd=self.training()["usd"],
                        lifetime_days=self.lifetime_days)
        return replace(base, **overrides)


SEED = SeedFigures()


def seed_table(seed: SeedFigures = SEED) -> list[dict]:
    """The seed's training-vs-inference table rebuilt from computation, one row per aspect, assumptions visible."""
    t, s = seed.training(), seed.scenario()
    gpu = ACCELERATORS[seed.accelerator]
    small, large = seed.served_params
    gpus = [gpus_to_hold(n, seed.bytes_per_param, gpu.memory_gb * 1e9, seed.memory_for_weights) for n in (small, large)]
    # fastest request: one token from the small model; slowest: a long reply from the large one
    fast = seed.reply_tokens[0] * decode_seconds_per_token(small * seed.bytes_per_param, gpu.bandwidth, gpus[0])
    slow = seed.reply_tokens[1] * decode_seconds_per_token(large * seed.bytes_per_param, gpu.bandwidth, gpus[1])
    cheap, dear = (cost_per_query(seed.tokens_per_query, p) for p in seed.price_range)
    summary = s.summary()
    low, high = s.queries_for_training_share(0.4), s.queries_for_training_share(0.2)

    def row(aspect, training, seed_training, inference, seed_inference, assumptions):
        return {"aspect": aspect, "training (computed)": training, "seed: training": seed_training,
                "inference (computed)": inference, "seed: inference": seed_inference, "assumptions": assumptions}

    return [
        row("Compute", f"{seed.n_gpus:,} GPUs → {t['flops']:.2e} FLOPs", "thousands of GPUs",
            f"{gpus[0]}–{gpus[1]} GPUs per replica", "1–8 GPUs per request",
            f"{seed.accelerator}: {peak_of(seed.accelerator):.3g} FLOP/s peak × MFU {seed.mfu}; served models of "
            f"{small / 1e9:g}B–{large / 1e9:g}B parameters at {seed.bytes_per_param:g} bytes each, "
            f"{seed.memory_for_weights:.0%} of {gpu.memory_gb:g} GB per GPU for weights"),
        row("Time", f"{seed.days:g} days ({t['days_for_published']:.0f} for {seed.published_flops:.0e} FLOPs)",
            "weeks to months", f"{fast * 1e3:.0f} ms – {slow:.0f} s per request", "milliseconds to seconds",
            f"batch-1 decode reads every weight once per token at {gpu.bandwidth / 1e12:.2f} TB/s per GPU; "
            f"replies of {seed.reply_tokens[0]}–{seed.reply_tokens[1]} tokens"),
        row("Cost per run", f"{usd(t['usd'])} ({t['gpu_hours'] / 1e6:,.0f} million GPU-hours)", "$10M–$100M+",
            f"{usd(cheap)} – {usd(dear)} per query", "$0.001–$0.10 per query",
            f"{usd(seed.usd_per_gpu_hour)} per GPU-hour; {seed.tokens_per_query:,.0f} tokens per query at "
            f"{usd(seed.price_range[0])}–{usd(seed.price_range[1])} per million tokens"),
        row("Frequency", f"{summary['training_runs']:.0f} run in {seed.lifetime_days:g} days", "once (+ retraining)",
            f"{seed.queries_per_day:,.0f} queries per day", "millions of times daily",
            "no retraining in the base case (the dashboard adds it)"),
        row("Share of lifecycle", f"{summary['training_share']:.0%}", "20–40%",
            f"{summary['inference_share']:.0%}", "60–80%",
            f"{seed.lifetime_days:,.0f} days at {usd(seed.usd_per_query)} per query; the seed's split needs "
            f"{low / 1e6:.1f}M–{high / 1e6:.1f}M queries/day"),
    ]


# ---- what the learner's optimizations are worth ----

@dataclass(frozen=True)
class Optimization:
    """One inference optimization, the ledger key that holds its measured effect, and a labelled fallback."""

    name: str
    key: str
    lesson: str
    kind: str  # "speedup" (optimized ÷ baseline throughput, >1 = faster) or "hit_rate" (share of queries cached)
    default: float
    default_why: str

    def multiplier(self, value) -> float:
        """What this optimization multiplies the cost per query by."""
        if self.kind == "hit_rate":
            return 1 - require_fraction(self.key, value, zero_ok=True)
        return 1 / require_positive(self.key, value)


OPTIMIZATIONS: tuple[Optimization, ...] = (
    Optimization("quantization (int8)", "quantize.int8_speedup", "04_quantization", "speedup", 2.0,
                 "the low end of the seed's 2–4× claim"),
    Optimization("batching (32 vs 1)", "batching.batch32_vs_batch1", "05_batching", "speedup", 1.0, "no gain assumed"),
    Optimization("distillation (student)", "distill.student_speedup", "06_distillation", "speedup", 1.0,
                 "no gain assumed"),
    Optimization("caching (response hits)", "caching.response_hit_rate", "07_caching", "hit_rate", 0.0,
                 "no hits assumed"),
    Optimization("speculative decoding", "speculative.speedup", "08_speculative_decoding", "speedup", 1.0,
                 "no gain assumed"),
)


def optimization_values(entries: Mapping[str, Mapping]) -> dict[str, tuple[float, bool]]:
    """{name: (value, measured?)} from ledger entries (`lifecycle.results.entries()`), defaults where missing."""
    out = {}
    for o in OPTIMIZATIONS:
        e = entries.get(o.key)
        out[o.name] = (float(e["value"]), True) if e is not None else (o.default, False)
    return out


def combine(values: Mapping[str, float], enabled=None) -> dict[str, float]:
    """The `Scenario` fields for a set of optimizations: speed factors multiply, caching sets the hit rate.

    Multiplying assumes the techniques do not overlap; real ones partly do, so read it as an upper bound.
    """
    by_name = {o.name: o for o in OPTIMIZATIONS}
    speedup, hit = 1.0, 0.0
    for name in (values if enabled is None else enabled):
        if name not in by_name:
            raise ValueError(f"enabled must name optimizations among {list(by_name)}, got {name!r}")
        o = by_name[name]
        if o.kind == "hit_rate":
            hit = require_fraction(o.key, values[name], zero_ok=True)
        else:
            speedup *= require_positive(o.key, values[name])
    return {"speedup": speedup, "cache_hit_rate": hit}


def optimization_rows(entries: Mapping[str, Mapping], queries_per_day=1e6, usd_per_query=0.01) -> list[dict]:
    """Each optimization applied alone, then all together, to a deployment: $ per year and $ saved per year."""
    base = yearly(daily_inference_cost(queries_per_day, usd_per_query))
    vals = optimization_values(entries)
    rows = []
    for o in OPTIMIZATIONS:
        value, measured = vals[o.name]
        e = entries.get(o.key, {})
        source = (f"measured in {o.lesson} ({e.get('machine', 'this machine')})" if measured
                  else f"DEFAULT: {o.lesson} not run yet; {o.default_why}")
        m = o.multiplier(value)
        rows.append({"technique": o.name, "ledger key": o.key, "value": value, "source": source,
                     "cost ×": m, "$ per year": base * m, "$ saved per year": base * (1 - m)})
    both = combine({k: v for k, (v, _) in vals.items()})
    m = (1 - both["cache_hit_rate"]) / both["speedup"]
    rows.append({"technique": "all of them (multiplied)", "ledger key": "", "value": both["speedup"],
                 "source": "product of the rows above; an upper bound", "cost ×": m, "$ per year": base * m,
                 "$ saved per year": base * (1 - m)})
    stack = entries.get(STACK_KEY)
    if stack is not None:  # lesson 10 ran every exact technique in one server on one stream: no product needed
        m = 1 / require_positive(STACK_KEY, float(stack["value"]))
        rows.append({"technique": "all of them (measured together)", "ledger key": STACK_KEY,
                     "value": float(stack["value"]),
                     "source": f"measured in 10_serve_millions ({stack.get('machine', 'this machine')}): one server, "
                               "one request stream, throughput over the naive server's (its cache hits included)",
                     "cost ×": m, "$ per year": base * m, "$ saved per year": base * (1 - m)})
    return rows


# Lesson 10's measured stack: every exact technique switched on in one server, throughput over the naive server's.
STACK_KEY = "serve.stack_vs_naive_throughput"


def combined_row(rows: list[dict]) -> dict:
    """The row that stands for "all optimizations": the measured stack when lesson 10 has run, else the product."""
    return next((r for r in rows if r["ledger key"] == STACK_KEY), rows[len(OPTIMIZATIONS)])


def _main() -> None:
    from .course import markdown_table

    daily = daily_inference_cost(SEED.queries_per_day, SEED.usd_per_query)
    print(f"Seed example: {SEED.queries_per_day:,.0f} queries/day × ${SEED.usd_per_query} = ${daily:,.0f}/day "
          f"= ${yearly(daily):,.0f}/year\n")
    t = SEED.training()
    print(f"GPT-4-class run: {SEED.n_gpus:,} × {SEED.accelerator} × {SEED.days:g} days × MFU {SEED.mfu} = "
          f"{t['flops']:.3g} FLOPs ({t['vs_published']:.2f}× the public ≈{SEED.published_flops:.0e}; implied MFU "
          f"{t['implied_mfu']:.2f}); {t['gpu_hours']:,.0f} GPU-hours × ${SEED.usd_per_gpu_hour:.2f} "
          f"= ${t['usd']:,.0f}\n")
    print(markdown_table(seed_table()))
    print("\nAssumptions:", ", ".join(f"{f.name}={getattr(SEED, f.name)}" for f in fields(SEED)))


if __name__ == "__main__":
    _main()
