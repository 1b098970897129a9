"""Training throughput: our GPT vs Hugging Face's GPT2LMHeadModel built from the identical config.

Both start from the same weights (ours ported with `to_hf_gpt2`), take the same batches, use the same AdamW
settings, and are timed step for step in alternation. Ratio `ours_vs_hf_tokens_per_s` > 1 means ours is faster.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..bench import Report, interleaved
from ..data import get_batch
from ..device import pick_device, seed_everything
from ..model import GPT, preset, to_hf_gpt2


def run(quick: bool = False) -> Report:
    device = pick_device()
    seed_everything(0)
    config = preset("cpu", vocab_size=84)
    ours = GPT(config).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = to_hf_gpt2(ours).train()
    ours.train()
    B, T = (8, 128) if quick else (8, 256)
    steps = 3 if quick else 5
    data = torch.randint(0, config.vocab_size, (100_000,))
    gen = torch.Generator().manual_seed(0)
    batches = [get_batch(data, B, T, gen, device) for _ in range(steps)]
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in (("ours", ours), ("hf", hf))}

    def ours_steps():
        for x, y in batches:
            _, loss = ours(x, y)
            opts["ours"].zero_grad(set_to_none=True)
            loss.backward()
            opts["ours"].step()

    def hf_steps():
        for x, y in batches:
            logits = hf(input_ids=x).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            opts["hf"].zero_grad(set_to_none=True)
            loss.backward()
            opts["hf"].step()

    timing = interleaved({"ours": ours_steps, "hf": hf_steps}, repeats=3 if quick else 5, device=device)
    tokens = steps * B * T
    tps = {name: tokens / t["median"] for name, t in timing.items()}
    rows = [{"model": name, "batch": f"{B}x{T}", "median_s": t["median"], "tokens_per_s": tps[name]}
            for name, t in timing.items()]
    return Report(rows=rows, figures={"tokens_per_s": tps, "n_params": ours.num_params(), "batch": [B, T]},
                  ratios={"ours_vs_hf_tokens_per_s": tps["ours"] / tps["hf"]},
                  notes=[f"{config.n_layer}-layer cpu preset, fp32, {steps} AdamW steps per timing, "
                         "median of interleaved repeats"])
