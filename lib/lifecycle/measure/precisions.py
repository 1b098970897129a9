"""The teacher at every precision, measured the same way by lesson 04 and `python -m lifecycle.bench quantize`.

- `build`: the variants of a model (`VARIANTS`: fp32, bf16, fp16, int8, int8 with fp32 tables, int4 in groups of 64
  and 32) plus PyTorch's own int8 (`REFERENCE`, torchao or torch.ao), skipping half formats the device lacks;
  on request torchao's int4 in groups of 64 (`INT4_REFERENCE`, `reference_int4`) next to ours on the same layers
  (`INT4_BLOCKS`), the check of our int4 against a library's.
- `quality`: validation loss over fixed windows and greedy agreement with fp32 on one fixed text
  (`measure.quality`); `speed`: greedy decoding at batch 1 and at a larger batch, every variant interleaved;
  `table`: one row per variant (bytes, compression, loss change, agreement, speed against fp32).
- The width sweep (`width_sweep`, `first_paying`, `best_point`): where, if anywhere, a fused int8 kernel beats
  fp32 on this CPU, one square Linear layer per width, the formats interleaved and paired round by round.
How much is measured is a `MeasureConfig`.
"""
from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import torch

from ..device import num_threads, supports_dtype
from ..generate import generate
from ..quantize import (FLOAT_DTYPES, QuantConfig, fused_int8_linear, nbytes, quantize_linear, quantize_model,
                        reference_int8)
from .quality import agreement_text, agreement_with, prompt_set, val_loss
from .timing import interleaved, paired_ratios, timed

VARIANTS: dict[str, QuantConfig] = {
    "fp32": QuantConfig("fp32"),
    "bf16": QuantConfig("bf16"),
    "fp16": QuantConfig("fp16"),
    "int8": QuantConfig("int8"),
    "int8 (fp32 tables)": QuantConfig("int8", embeddings=False),
    "int4 g64": QuantConfig("int4", group_size=64),
    "int4 g32": QuantConfig("int4", group_size=32),
}
INT4_BLOCKS = ("int4 g64 (fp32 tables)", QuantConfig("int4", group_size=64, embeddings=False))  # vs the reference
REFERENCE = "int8 reference"  # PyTorch's own (torchao or torch.ao), block layers only
INT4_REFERENCE = "int4 g64 reference"  # torchao's int4 weight-only with groups of 64, block layers only


@dataclass(frozen=True)
class MeasureConfig:
    """How much to measure: validation windows, prompts for agreement, and the decode runs that are timed."""

    val_batches: int = 8
    val_batch_size: int = 4
    val_block: int = 256
    n_prompts: int = 16
    prompt_len: int = 32
    agree_tokens: int = 32
    speed_prompt: int = 16
    speed_tokens: int = 32
    big_batch: int = 16
    repeats: int = 3


def build(model, names: list[str] | None = None, reference: bool = True,
          int4_reference: bool = False) -> tuple[dict, list[str]]:
    """The variants of `model` ({name: model}), skipping half formats this device lacks; plus notes saying so.

    reference: add PyTorch's int8 (REFERENCE). int4_reference: add torchao's int4 g64 (INT4_REFERENCE) and ours on
    the same layers (INT4_BLOCKS), the benchmark's check of our int4 against a library's.
    """
    device = next(model.parameters()).device
    models, notes = {}, []
    for name in names or list(VARIANTS):
        cfg = VARIANTS[name]
        if not supports_dtype(device, FLOAT_DTYPES.get(cfg.scheme, torch.float32)):
            notes.append(f"{name} skipped: {device} has no {cfg.scheme}")
            continue
        models[name] = model if cfg.scheme == "fp32" else quantize_model(model, cfg)
    if reference:
        try:
            models[REFERENCE], tool = reference_int8(model)
            notes.append(f"'{REFERENCE}' is {tool}, applied to the Linear layers of the blocks (tables, head fp32)")
        except RuntimeError as e:
            notes.append(f"'{REFERENCE}' skipped: {e}")
    if int4_reference:
        try:
            models[INT4_REFERENCE], tool = reference_int4(model)
            models[INT4_BLOCKS[0]] = quantize_model(model, INT4_BLOCKS[1])
            notes.append(f"'{INT4_REFERENCE}' is {tool} on the Linear layers of the blocks (tables, head fp32); the "
                         "closest int4 library reference that runs on a CPU (torchao's packed Int4WeightOnlyConfig "
                         "needs the mslk kernel package, not installed here)")
        except ImportError as e:
            notes.append(f"'{INT4_REFERENCE}' skipped: torchao's int4 weight-only config is not available ({e})")
    return models, notes


def reference_int4(model, group_size: int = 64):
    """A copy of `model` whose block Linear layers are int4 weight-only by torchao (symmetric, one scale per group of
    `group_size` input columns), as ours; returns (model, which tool). Raises ImportError without torchao."""
    import torchao
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    out = copy.deepcopy(model).eval()
    config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size),
                                  mapping_type=MappingType.SYMMETRIC)
    quantize_(out, config, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.startswith("transformer.h."))
    return out, f"torchao {torchao.__version__} IntxWeightOnlyConfig(int4, PerGroup({group_size}), SYMMETRIC)"


def quality(models: dict, val_data: torch.Tensor, m: MeasureConfig = MeasureConfig(), baseline: str = "fp32") -> dict:
    """{name: {val_loss, agreement}}: loss over fixed windows, greedy agreement with `baseline` on fixed prompts."""
    prompts = prompt_set(val_data, m.n_prompts, m.prompt_len)
    seq, base_choices = agreement_text(models[baseline], prompts, m.agree_tokens)  # one text for every variant
    out = {}
    for name, model in models.items():
        loss = val_loss(model, val_data, m.val_batches, m.val_batch_size, m.val_block)
        out[name] = {"val_loss": loss, "agreement": agreement_with(model, seq, base_choices)}
    return out


def _decode(model, prompt: torch.Tensor, n: int):
    return lambda: generate(model, prompt, n)


def speed(models: dict, val_data: torch.Tensor, m: MeasureConfig = MeasureConfig()) -> dict:
    """{name: {ms_per_token (batch 1), tokens_per_s (batch m.big_batch)}}: greedy decoding with the KV cache,
    a prompt of m.speed_prompt tokens then m.speed_tokens new ones, every variant interleaved with the others."""
    device = next(next(iter(models.values())).parameters()).device
    prompts = prompt_set(val_data, m.big_batch, m.speed_prompt, seed=1).to(device)
    one = interleaved({k: _decode(v, prompts[:1], m.speed_tokens) for k, v in models.items()}, m.repeats, device=device)
    many = interleaved({k: _decode(v, prompts, m.speed_tokens) for k, v in models.items()}, m.repeats, device=device)
    return {k: {"ms_per_token": 1e3 * one[k].median / m.speed_tokens,
                "tokens_per_s": m.big_batch * m.speed_tokens / many[k].median} for k in models}


def table(models: dict, qual: dict, spd: dict | None = None, baseline: str = "fp32") -> list[dict]:
    """One row per variant: bytes, compression, val loss and its change, agreement, (speed and its ratio)."""
    base_bytes, base_loss = nbytes(models[baseline]), qual[baseline]["val_loss"]
    rows = []
    for name, model in models.items():
        size = nbytes(model)
        row = {"variant": name, "bytes": size, "vs fp32 bytes": size / base_bytes,
               "val loss": qual[name]["val_loss"],
               "val loss change": qual[name]["val_loss"] / base_loss - 1,
               "greedy agreement": qual[name]["agreement"]}
        if spd is not None:
            row |= {"ms/token (B=1)": spd[name]["ms_per_token"],
                    "speed vs fp32 (B=1)": spd[baseline]["ms_per_token"] / spd[name]["ms_per_token"],
                    "tokens/s (big batch)": spd[name]["tokens_per_s"],
                    "speed vs fp32 (big batch)": spd[name]["tokens_per_s"] / spd[baseline]["tokens_per_s"]}
        rows.append(row)
    return rows


# ---- the width sweep: where, if anywhere, a fused int8 kernel beats fp32 on this CPU ----

SWEEP_WIDTHS = (128, 512, 1024, 2048, 4096)  # the cpu teacher's width (n_embd 128) up to a large model's
SWEEP_BATCHES = (1, 16)  # one token (decode at batch 1) and a batch of 16 rows
SWEEP_VARIANTS = ("fp32", "int8 fused (PyTorch)", "int8 ours (eager)")


def sweep_layers(width: int, seed: int = 0) -> dict[str, torch.nn.Module]:
    """One square `width` x `width` layer (bias on) in each format of the sweep, built from the same fp32 weights."""
    torch.manual_seed(seed)
    fp32 = torch.nn.Linear(width, width).eval().requires_grad_(False)
    return {"fp32": fp32, "int8 fused (PyTorch)": fused_int8_linear(fp32),
            "int8 ours (eager)": quantize_linear(fp32, QuantConfig("int8"))}


def width_sweep(widths=SWEEP_WIDTHS, batches=SWEEP_BATCHES, repeats: int = 7, target_s: float = 0.002,
                threads: int | None = 1) -> list[dict]:
    """Time `y = layer(x)` on the CPU for each width, batch and format of the sweep: one row per (width, batch).

    `threads`: torch's thread count while timing (1 by default: a per-core comparison, which a busy second core
    cannot decide; fbgemm's thread pool in particular loses badly on an oversubscribed machine; None leaves it).

    Each timed call runs the layer enough times for fp32 to take about `target_s` (the same count for every
    format); the formats alternate within each of `repeats` rounds (interleaved), and the row keeps the median
    time and, for each int8 format, the median speed vs fp32 with the interquartile range of the per-round ratios
    as its spread (the rounds are paired: both formats ran back to back, under the same load).
    """
    with num_threads(threads):
        return [row for width in widths for row in _sweep_width(width, batches, repeats, target_s)]


def _sweep_width(width: int, batches, repeats: int, target_s: float) -> list[dict]:
    """The rows of `width_sweep` for one width."""
    layers = sweep_layers(width)
    rows = []
    for batch in batches:
        x = torch.randn(batch, width)  # (B, width)
        with torch.inference_mode():
            once = timed(lambda: layers["fp32"](x), repeats=3, warmup=1).median
            reps = max(1, round(target_s / max(once, 1e-7)))  # the same number of calls for every format
            t = interleaved({k: (lambda m=m: [m(x) for _ in range(reps)]) for k, m in layers.items()}, repeats)
        row = {"width": width, "batch": batch, "weight MB (fp32)": 4 * width * width / 1e6}
        for k in layers:
            row[f"{k} µs"] = 1e6 * t[k].median / reps
        for k in SWEEP_VARIANTS[1:]:
            per_round = paired_ratios(t["fp32"], t[k]).all  # paired rounds
            q1, median, q3 = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
            row[f"{k} vs fp32"] = statistics.median(per_round)
            row[f"{k} vs fp32 spread"] = (min(q1, row[f"{k} vs fp32"]), max(q3, row[f"{k} vs fp32"]))
        rows.append(row)
    return rows


def first_paying(rows: list[dict], variant: str = "int8 fused (PyTorch)", at_least: float = 1.0) -> dict[int, int | None]:
    """{batch: the smallest width from which `variant` runs at least `at_least` × fp32's speed at that width and at
    every larger one in the sweep}, None where it never does. Rows as `width_sweep` returns them."""
    out = {}
    for batch in sorted({r["batch"] for r in rows}):
        mine = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["width"])
        out[batch] = None
        for i, r in enumerate(mine):
            if all(q[f"{variant} vs fp32"] >= at_least for q in mine[i:]):
                out[batch] = r["width"]
                break
    return out


def best_point(rows: list[dict], variant: str = "int8 fused (PyTorch)") -> dict:
    """The row where `variant` ran fastest relative to fp32."""
    return max(rows, key=lambda r: r[f"{variant} vs fp32"])
