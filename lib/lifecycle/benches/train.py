"""Training throughput: our GPT vs Hugging Face's GPT2LMHeadModel built from the identical config.

Both start from the same weights (ours ported with `to_hf_gpt2`), take the same batches, use the same AdamW
settings, and are timed in alternation by `lifecycle.measure.timing.interleaved` (one warm-up round, then rounds of
one timing of each, the order reversed every round; medians). The peer is configured as a user training it would:
`config.use_cache = False` (no key/value cache is built during training; with it on, every layer would also return
its keys and values) and an explicit attention implementation, both "sdpa" (PyTorch's fused
scaled_dot_product_attention) and "eager" (HF's matmul-softmax-matmul), each a separate copy with the same weights.
Ratio `ours_vs_hf_tokens_per_s` = ours ÷ the faster of the two (> 1 means ours is faster); each is in the table.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..bench import Report
from ..measure.timing import interleaved
from ..data import get_batch
from ..device import pick_device, seed_everything
from ..model import GPT, preset, to_hf_gpt2

HF_ATTENTION = ("sdpa", "eager")  # Hugging Face attention implementations that run on a CPU


def run(quick: bool = False) -> Report:
    device = pick_device()
    seed_everything(0)
    config = preset("cpu", vocab_size=84)
    ours = GPT(config).to(device)
    hfs = {}
    for impl in HF_ATTENTION:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = to_hf_gpt2(ours)
        hf.config.use_cache = False  # training: no key/value cache
        hf.set_attn_implementation(impl)
        hfs[f"hf_{impl}"] = hf.train()
    ours.train()
    B, T = (8, 128) if quick else (8, 256)
    steps = 3 if quick else 5
    data = torch.randint(0, config.vocab_size, (100_000,))
    gen = torch.Generator().manual_seed(0)
    batches = [get_batch(data, B, T, gen, device) for _ in range(steps)]
    variants = {"ours": ours_steps(ours, batches)} | {name: hf_steps(hf, batches) for name, hf in hfs.items()}
    timing = interleaved(variants, repeats=3 if quick else 5, device=device)
    tokens = steps * B * T
    tps = {name: tokens / t.median for name, t in timing.items()}
    best_hf = max(hfs, key=lambda name: tps[name])
    rows = [{"model": name, "batch": f"{B}x{T}", "median_s": t.median, "min_s": t.low, "max_s": t.high,
             "tokens_per_s": tps[name]} for name, t in timing.items()]
    figures = {"tokens_per_s": tps, "n_params": ours.num_params(), "batch": [B, T], "hf_best": best_hf,
               "hf_use_cache": False, "hf_attn_implementations": list(HF_ATTENTION)}
    return Report(rows=rows, figures=figures,
                  ratios={"ours_vs_hf_tokens_per_s": tps["ours"] / tps[best_hf]},
                  notes=[f"{config.n_layer}-layer cpu preset, fp32, {steps} AdamW steps per timing, median of "
                         f"{3 if quick else 5} interleaved rounds after one warm-up round",
                         f"peer: GPT2LMHeadModel, use_cache=False, attn_implementation in {list(HF_ATTENTION)}; "
                         f"the ratio is against the faster, {best_hf}"])


def ours_steps(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    """A no-argument function taking one AdamW step of our GPT per batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def fn():
        for x, y in batches:
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return fn


def hf_steps(hf, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    """The same for a Hugging Face GPT2LMHeadModel (the loss computed as ours is: cross-entropy of every position)."""
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def fn():
        for x, y in batches:
            logits = hf(input_ids=x, use_cache=False).logits  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return fn
