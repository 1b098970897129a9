"""What serving a model needs and what a token costs: the memory one request takes, and a price per token split
into the training bill amortized over every token served and the serving compute of one decode step.

- memory     the KV cache of one request (`kv_cache_bytes`), the GPUs a replica needs to hold the weights plus it
             (`gpus_per_request`), and published models' serving shapes (`SERVED_MODELS`).
- per token  tokens served over a lifetime, training $ per token (the run ÷ those tokens), serving $ per token (a
             decode step's time × the hardware's $/hour ÷ the batch), a decode step from the accelerator table
             (`decode_ms_per_token`), the split (`price_per_token`) and the volume at which a price covers both
             (`volume_to_cover`). Lesson 09 shows them; `widgets.pricing_dashboard` puts sliders in front.

Pure functions on top of `lifecycle.costs` (its FLOP and bandwidth arithmetic); every input is checked with
`lifecycle.checks`, naming the parameter and the range it must lie in.
References: Kwon et al. 2023, "vLLM" (the KV cache as what limits a batch); Touvron et al. 2023, "Llama 2" and
Brown et al. 2020 (the published shapes, cited per model below).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import require_fraction, require_non_negative, require_number, require_positive
from .costs import decode_seconds_per_token, inference_flops_per_token, peak_of
from .device import ACCELERATORS


# ---- serving memory: what one request needs ----

def kv_cache_bytes(n_layer, n_kv_heads, head_dim, context, bytes_per_value=2.0, batch=1) -> float:
    """Bytes of the KV cache: keys and values (2) × layers × KV heads × head dim × tokens × bytes × requests."""
    layers, heads = require_positive("n_layer", n_layer), require_positive("n_kv_heads", n_kv_heads)
    dim, tokens = require_positive("head_dim", head_dim), require_positive("context", context)
    return 2 * layers * heads * dim * tokens * require_positive("bytes_per_value", bytes_per_value) * require_positive("batch", batch)


def gpus_per_request(weight_bytes, kv_bytes, memory_bytes) -> int:
    """Whole GPUs a request runs on: the smallest replica whose memory holds the weights plus this request's KV cache.

    Activations and the runtime's own memory are left out (a few percent at batch 1), so this is a lower bound.
    """
    need = require_positive("weight_bytes", weight_bytes) + require_non_negative("kv_bytes", kv_bytes)
    memory = float(require_number("memory_bytes", memory_bytes, low=1e6, hint="give bytes, e.g. 80e9 for 80 GB"))
    return max(1, math.ceil(need / memory))


@dataclass(frozen=True)
class ServedModel:
    """A published model's serving shape: parameter count and what sizes its KV cache, with the source."""

    name: str
    n_params: float
    n_layer: int
    n_embd: int  # the width d of the residual stream (attention costs 4·L·T·d FLOPs per token at context T)
    n_kv_heads: int  # fewer than the query heads with grouped-query attention (GQA)
    head_dim: int
    context: int  # tokens of one request the memory check uses: the model's context window
    source: str

    def weight_bytes(self, bytes_per_param=2.0) -> float:
        return require_positive("n_params", self.n_params) * require_positive("bytes_per_param", bytes_per_param)

    def kv_bytes(self, context=None, bytes_per_value=2.0) -> float:
        return kv_cache_bytes(self.n_layer, self.n_kv_heads, self.head_dim, context or self.context, bytes_per_value)


# The served sizes lesson 09 prices (SEED.served_params and its 70B example), with published architectures.
SERVED_MODELS: dict[str, ServedModel] = {m.name: m for m in (
    ServedModel("Llama-2-7B", 6.7e9, 32, 4096, 32, 128, 4096,
                "Touvron et al. 2023, Llama 2, Table 1 and model card: 32 layers, width 4,096, 32 heads of 128, 4k context"),
    ServedModel("Llama-2-70B", 69e9, 80, 8192, 8, 128, 4096,
                "Touvron et al. 2023, Llama 2, Table 1 and model card: 80 layers, width 8,192, GQA with 8 KV heads of 128, 4k context"),
    ServedModel("GPT-3-175B", 175e9, 96, 12288, 96, 128, 2048,
                "Brown et al. 2020, Table 2.1: 96 layers, width 12,288, 96 heads of 128, 2,048-token context"),
)}


# ---- a price per token, split into amortized training and serving ----

def lifetime_tokens(queries_per_day, tokens_per_query, lifetime_days) -> float:
    """Tokens a deployment serves over its life: queries/day × tokens/query × days."""
    return (require_non_negative("queries_per_day", queries_per_day) * require_positive("tokens_per_query", tokens_per_query)
            * require_positive("lifetime_days", lifetime_days))


def training_usd_per_token(training_usd, tokens_served, runs=1) -> float:
    """The training bill amortized over every token the model serves: runs × run cost ÷ tokens served."""
    return require_positive("training_usd", training_usd) * require_positive("runs", runs) / require_positive(
        "tokens_served", tokens_served, hint="a model that serves no tokens has no price per token")


def serving_usd_per_token(ms_per_token, usd_per_hour, batch=1) -> float:
    """Serving compute per token: one decode step of `ms_per_token` on hardware rented at `usd_per_hour`,
    shared by the `batch` requests that advance in that step."""
    hours = require_positive("ms_per_token", ms_per_token) / 3.6e6
    return hours * require_positive("usd_per_hour", usd_per_hour) / require_positive("batch", batch)


def decode_ms_per_token(n_params, bytes_per_param, n_gpus, accelerator, batch=1, utilization=0.5) -> float:
    """One decode step on a replica of `n_gpus` GPUs from the accelerator table, the slower of its two limits:
    reading every weight once (memory) and 2·N FLOPs per token for each of `batch` requests at `utilization`."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {sorted(ACCELERATORS)}, got {accelerator!r}")
    a = ACCELERATORS[accelerator]
    memory_s = decode_seconds_per_token(n_params * require_positive("bytes_per_param", bytes_per_param), a.bandwidth, n_gpus)
    compute_s = (require_positive("batch", batch) * inference_flops_per_token(n_params)
                 / (peak_of(accelerator) * n_gpus * require_fraction("utilization", utilization)))
    return 1e3 * max(memory_s, compute_s)


def price_per_token(training_usd, ms_per_token, usd_per_hour, queries_per_day, tokens_per_query, lifetime_days,
                    batch=1, runs=1) -> dict[str, float]:
    """A provider's cost per token, split into amortized training and serving compute (every token priced as a
    decode step: prompt tokens, processed together in the prefill, cost less, so serving is an upper bound)."""
    tokens = lifetime_tokens(queries_per_day, tokens_per_query, lifetime_days)
    train = training_usd_per_token(training_usd, tokens, runs)
    serve = serving_usd_per_token(ms_per_token, usd_per_hour, batch)
    total = train + serve
    return {"tokens_served": tokens, "training_per_token": train, "serving_per_token": serve,
            "price_per_token": total, "usd_per_million_tokens": total * 1e6, "usd_per_query": total * tokens_per_query,
            "training_share": train / total, "serving_share": serve / total}


def volume_to_cover(usd_per_token, training_usd, serving_per_token, tokens_per_query, lifetime_days, runs=1) -> float:
    """Queries/day at which a price per token pays for serving plus the amortized training (inf if it never does).

    price ≥ runs·T ÷ (q·k·L) + serving  <=>  q ≥ runs·T ÷ ((price − serving)·k·L).
    """
    margin = require_positive("usd_per_token", usd_per_token) - require_non_negative("serving_per_token", serving_per_token)
    if margin <= 0:
        return math.inf  # every token already costs more to serve than it earns
    return (require_positive("training_usd", training_usd) * require_positive("runs", runs)
            / (margin * require_positive("tokens_per_query", tokens_per_query) * require_positive("lifetime_days", lifetime_days)))
