"""`python -m lifecycle.bench quantize`: the teacher at every precision, side by side.

For each variant (fp32, bf16, fp16, int8, int8 with fp32 embeddings, int4 with groups of 64 and 32, int4 g64 with
fp32 embeddings, and two library references: PyTorch's own int8, and torchao's int4 with groups of 64): bytes of
weights + scales, compression vs fp32, validation loss and its relative change, greedy-token agreement with fp32
over a fixed prompt set, ms/token at batch 1 and tokens/s at a larger batch. All variants are timed by
`lifecycle.measure.timing.interleaved` in one process (a warm-up round, then rounds with the order reversed each
time); medians are reported.

The int4 reference: torchao's `Int4WeightOnlyConfig` (packed int4 with fused kernels) does not run here (it needs
the `mslk` kernel package, not installed here), so the closest library reference that runs on a CPU is used:
`IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(64), mapping_type=SYMMETRIC)`: the same
scheme as ours (symmetric, one scale per group of 64 input columns), codes in [-8, 7] (ours [-7, 7]) kept one per
int8 byte, on the Linear layers of the blocks; compare it with "int4 g64 (fp32 tables)". Its bytes count the
unpacked codes (8 bits each).

The measuring is `lifecycle.measure.precisions` (`build`, `quality`, `speed`, `width_sweep`), which lesson 04
calls too, so the notebook and the benchmark measure the same way.
"""
from __future__ import annotations

import time

import torch

from .. import zoo
from ..bench import Report
from ..measure.precisions import (INT4_BLOCKS, INT4_REFERENCE, MeasureConfig, best_point, build, first_paying, quality,
                                   speed, table, width_sweep)
from ..quantize import nbytes

QUICK = MeasureConfig(val_batches=3, n_prompts=8, agree_tokens=16, speed_tokens=16, big_batch=8, repeats=2)


def ratios(rows: list[dict]) -> dict:
    """The ratios named in COURSE.md's bench table (speed = batch-1 decode throughput ÷ fp32's)."""
    by = {r["variant"]: r for r in rows}
    out = {"int8_bytes_vs_fp32": by["int8"]["vs fp32 bytes"], "int4_bytes_vs_fp32": by["int4 g64"]["vs fp32 bytes"],
           "int8_val_loss_increase": by["int8"]["val loss change"],
           "int4_val_loss_increase": by["int4 g64"]["val loss change"]}
    if "speed vs fp32 (B=1)" in by["int8"]:
        out |= {"int8_speed_vs_fp32": by["int8"]["speed vs fp32 (B=1)"],
                "int4_speed_vs_fp32": by["int4 g64"]["speed vs fp32 (B=1)"]}
    if INT4_REFERENCE in by:  # ours vs torchao's, both on the block layers only: relative val-loss increase of each
        out |= {"int4_val_loss_increase_blocks_only": by[INT4_BLOCKS[0]]["val loss change"],
                "int4_reference_val_loss_increase": by[INT4_REFERENCE]["val loss change"]}
    return out


def run(quick: bool = False) -> Report:
    m = QUICK if quick else MeasureConfig()
    t0 = time.perf_counter()
    teacher = zoo.get("teacher", progress=False)
    val = zoo.corpus().val
    models, notes = build(teacher, int4_reference=True)
    qual = quality(models, val, m)
    spd = speed(models, val, m)
    rows = table(models, qual, spd)
    notes.append(f"val loss over {m.val_batches}×{m.val_batch_size} windows of {m.val_block} tokens; agreement "
                 f"over {m.n_prompts} prompts × {m.agree_tokens} tokens; speed: {m.speed_tokens} new tokens after "
                 f"a {m.speed_prompt}-token prompt, batch 1 and {m.big_batch}, median of {m.repeats}, "
                 f"{torch.get_num_threads()} threads")
    sweep = width_sweep(repeats=5 if quick else 9)
    best = best_point(sweep)
    notes.append(f"width sweep (square Linear layers, CPU): fused int8 reaches {best['int8 fused (PyTorch) vs fp32']:.2f}× "
                 f"fp32 at width {best['width']}, batch {best['batch']}; it pays (>= 1×) from widths "
                 f"{first_paying(sweep)} (batch: width)")
    by = {r["variant"]: r for r in rows}
    if INT4_REFERENCE in by:
        ours4, ref4 = by[INT4_BLOCKS[0]]["val loss change"], by[INT4_REFERENCE]["val loss change"]
        notes.append(f"int4 g64 on the block layers only: ours raises the val loss by {ours4:.2%}, torchao's by "
                     f"{ref4:.2%}: " + ("ours is as good or better" if ours4 <= ref4 else
                                         "ours loses to the library reference here (its codes use 15 levels, "
                                         "[-7, 7], where torchao's use 16, [-8, 7], so its steps are coarser)"))
    figures = {"rows": {r["variant"]: {k: v for k, v in r.items() if k != "variant"} for r in rows},
               "fp32_bytes": nbytes(teacher), "width_sweep": sweep, "seconds": time.perf_counter() - t0}
    out = ratios(rows) | {"fused_int8_best_speed_vs_fp32": best["int8 fused (PyTorch) vs fp32"]}
    return Report(rows=rows, figures=figures, ratios=out, notes=notes)
