"""Quality metrics: how close a changed model (quantized, distilled, ...) stays to a reference model.

- `val_loss`: mean cross-entropy on fixed validation windows, the same windows for every model.
- `greedy_agreement`: the share of positions where a model picks the reference's greedy next token, both reading
  the reference's own greedy continuation (`agreement_text`), so one early difference does not spoil the rest;
  `agreement_with` judges a model on a text computed once (lesson 06 judges a dozen students on one).
- `precision_grid` / `grid_point`: the validation loss and bytes of a model at every bit width × group size
  (lesson 04's sliders), by fake quantization (`quantize.fake_quantize`).

Lessons 04 (quantization) and 06 (distillation) judge their models with these, and so does
`python -m lifecycle.bench quantize`.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import get_batch
from ..generate import generate
from ..model import GPT
from ..quantize import fake_quantize, fake_quantized_bytes, grid_matrices


@torch.no_grad()
def val_loss(model: nn.Module, data: torch.Tensor, batches: int = 8, batch_size: int = 4, block_size: int = 256,
             seed: int = 0) -> float:
    """Mean cross-entropy (nats/token, computed in fp32) over fixed validation windows (the same for every model)."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(batches):
        x, y = get_batch(data, batch_size, block_size, gen, device)
        logits, _ = model(x)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).item()
    return total / batches


def prompt_set(data: torch.Tensor, n: int = 16, length: int = 32, seed: int = 0) -> torch.Tensor:
    """A fixed set of n prompts (n, length): windows of `data` at seeded positions."""
    starts = torch.randint(len(data) - length, (n,), generator=torch.Generator().manual_seed(seed))
    return data[starts[:, None] + torch.arange(length)]


@torch.no_grad()
def greedy_choices(model: nn.Module, seq: torch.Tensor, start: int) -> torch.Tensor:
    """The model's greedy next token at every position of seq (P, S) from `start` on: (P, S - start)."""
    logits, _ = model(seq.to(next(model.parameters()).device))
    return logits[:, start:].argmax(-1).cpu()


@torch.no_grad()
def agreement_text(reference: nn.Module, prompts: torch.Tensor, n_new: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed text every model is judged on: each prompt (P, T0) followed by the reference's greedy
    continuation, and the reference's own choices along it. Returns (seq (P, T0 + n_new - 1), choices (P, n_new))."""
    prompts = prompts.to(next(reference.parameters()).device)
    seq = torch.cat([prompts, generate(reference, prompts, n_new)], dim=1)[:, :-1]
    start = prompts.shape[1] - 1  # the position whose output predicts the first new token
    return seq, greedy_choices(reference, seq, start)


def agreement_with(model: nn.Module, seq: torch.Tensor, choices: torch.Tensor) -> float:
    """Share of positions where `model`'s greedy choice along `seq` (P, S) equals `choices` (P, n), the reference's
    choices at the last n positions (as `agreement_text` returns them: compute the text once, judge many models)."""
    return (greedy_choices(model, seq, seq.shape[1] - choices.shape[1]) == choices).float().mean().item()


def greedy_agreement(model: nn.Module, reference: nn.Module, prompts: torch.Tensor, n_new: int = 32) -> float:
    """Share of positions where `model` picks the same greedy next token as `reference`, both reading the
    reference's own greedy continuation of each prompt (so one early difference does not spoil the rest)."""
    return agreement_with(model, *agreement_text(reference, prompts, n_new))


# ---- a grid of bit widths × group sizes, for lesson 04's sliders ----

@torch.no_grad()
def precision_grid(model: GPT, data: torch.Tensor, bits=(8, 6, 4, 3), group_sizes=(16, 64, None), batches: int = 1,
                   batch_size: int = 4, block_size: int = 128, seed: int = 0) -> list[dict]:
    """Bytes and validation loss of `model` at every (bits, group size), plus the fp32 row (bits 32).

    Each row: {"bits", "group_size" (0 = one scale per row), "bytes", "val_loss"}; every row is scored on the same
    `batches` × `batch_size` validation windows of `block_size` tokens (`val_loss`): few and short by default, so
    that a grid costs seconds. The model itself is left unchanged.
    """
    work = copy.deepcopy(model).eval()
    mats = grid_matrices(work)
    originals = [w.detach().clone() for w in mats]
    ids = {id(w) for w in mats}
    rest = sum(p.numel() * p.element_size() for p in work.parameters() if id(p) not in ids)  # biases, LayerNorms
    block_size = min(block_size, work.config.block_size)
    score = lambda: val_loss(work, data, batches, batch_size, block_size, seed)  # noqa: E731
    rows = [{"bits": 32, "group_size": 0, "bytes": rest + sum(w.numel() * 4 for w in originals),
             "val_loss": score()}]
    for b in bits:
        for g in group_sizes:
            for w, w0 in zip(mats, originals):
                w.copy_(fake_quantize(w0, b, g))
            n_bytes = rest + sum(fake_quantized_bytes(tuple(w0.shape), b, g) for w0 in originals)
            rows.append({"bits": b, "group_size": g or 0, "bytes": n_bytes, "val_loss": score()})
    return rows


def grid_point(grid: list[dict], bits: int, group_size: int) -> dict[str, float]:
    """One row of `precision_grid` (group_size 0 = per row) with its bytes and loss against the fp32 row."""
    base = next((r for r in grid if r["bits"] == 32), None)
    row = next((r for r in grid if r["bits"] == bits and r["group_size"] == group_size), None)
    if base is None or row is None:
        raise ValueError(f"no grid row for bits={bits!r}, group_size={group_size!r}; the grid holds "
                         f"{sorted({(r['bits'], r['group_size']) for r in grid})}")
    return {"bytes": float(row["bytes"]), "bytes_vs_fp32": row["bytes"] / base["bytes"],
            "val_loss": float(row["val_loss"]), "val_loss_change": row["val_loss"] / base["val_loss"] - 1}
