"""`python -m lifecycle.bench speculative`: the teacher alone vs speculative decoding with the distilled student.

Greedy decoding of 256 new tokens after each prompt of a fixed set (slices of the validation text, one long enough
that generation crosses the teacher's context window), timed interleaved in one process (A B C … A B C …):

    teacher    lifecycle.generate.generate(teacher): one decode step per token
    draft      generate(student): the draft alone, to measure the cost ratio c
    spec_gG    lifecycle.speculative.speculative_generate(teacher, student, gamma=G), for each G in the sweep

c = draft time ÷ teacher time for the same number of tokens (a draft step's cost in target steps, measured, since
at this size a step's cost follows depth and per-call overhead more than parameter count). The acceptance rate
alpha and tokens per target call come from the speculative runs themselves (greedy, so they are deterministic).
predicted = (1 - alpha^(G+1)) / ((1 - alpha)(G c + 1)) (Leviathan et al. 2023); measured = teacher time ÷
spec_gG time. Both c and the measured speedups are medians over repeats of the ratio within one repeat (variants
timed back to back see the same machine load). Every speculative run's tokens are checked against the teacher's own:
they must be identical.

The paper's model prices the target's pass over G + 1 tokens as one decode step; on a CPU at this size it costs more,
so each row also gives that pass's measured cost (forward_costs) and the prediction that uses it.

Ratios: speedup = measured speedup at the best G; measured_vs_predicted = that speedup ÷ the paper's prediction.
--quick: 128 new tokens, two prompts, G in {2, 4, 6}, and random weights when a model is not cached (said in the
notes; alpha is then meaningless but the code path and the timing harness are exercised).
"""
from __future__ import annotations

import statistics
import time

import torch

from .. import zoo
from ..bench import Report, interleaved
from ..device import pick_device, synchronize
from ..generate import generate
from ..model import GPT, KVCache, preset
from ..speculative import SpecStats, expected_speedup, speculative_generate
from ..train import CheckpointError, read_checkpoint_meta


def load(name: str, device: torch.device, train_if_missing: bool) -> tuple[GPT, str | None]:
    """Model `name` from the zoo, or (quick run, not cached) its architecture with random weights and a note."""
    try:
        read_checkpoint_meta(zoo.model_path(name, device))
    except CheckpointError:
        if not train_if_missing:
            torch.manual_seed(0)
            vocab = zoo.corpus().tokenizer.vocab_size
            base = preset(zoo.teacher_preset(device), vocab_size=vocab)
            cfg = base if name == "teacher" else preset("student", vocab_size=vocab, block_size=base.block_size)
            return GPT(cfg).to(device).eval(), f"{name} not cached: random weights (timing only, alpha meaningless)"
    return zoo.get(name, device, progress=False), None


def prompt_set(n_prompts: int = 4, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Fixed prompts: slices of the validation text, 24 to 24 * 4^(n-1) tokens long (capped below the window)."""
    val = zoo.corpus().val
    prompts = []
    for i in range(n_prompts):
        length = min(24 * 4 ** i, 320)
        start = 1000 + 7919 * i
        prompts.append(val[start:start + length].to(device))
    return prompts


def time_decoders(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gammas: list[int],
                  repeats: int = 3, device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds to decode n_new greedy tokens after every prompt, per variant and repeat (interleaved)."""
    def run_all(fn):
        return lambda: [fn(p) for p in prompts]

    variants = {"teacher": run_all(lambda p: generate(target, p, n_new)),
                "draft": run_all(lambda p: generate(draft, p, n_new))}
    for g in gammas:
        variants[f"spec_g{g}"] = run_all(lambda p, g=g: speculative_generate(target, draft, p, n_new, gamma=g))
    return {name: t["all"] for name, t in interleaved(variants, repeats=repeats, device=device).items()}


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over repeats of numerator[r] / denominator[r]: variants timed back to back share the machine's load,
    so their ratio within one repeat is steadier than a ratio of medians on a busy machine."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def acceptance(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gamma: int,
               references: list[torch.Tensor] | None = None) -> dict:
    """Pooled statistics of greedy speculative decoding over the prompts, and whether every output matched the
    target's own greedy output (`references`, one per prompt; computed here when not given)."""
    if references is None:
        references = [generate(target, p, n_new) for p in prompts]
    runs = [speculative_generate(target, draft, p, n_new, gamma=gamma) for p in prompts]
    identical = all(torch.equal(out, reference) for (out, _), reference in zip(runs, references))
    total = SpecStats(gamma, **{field: sum(getattr(st, field) for _, st in runs)
                                for field in ("rounds", "accepted", "rejected", "new_tokens")})
    return {"alpha": total.acceptance_rate, "tokens_per_call": total.tokens_per_target_call, "identical": identical}


def sweep(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gammas: list[int],
          repeats: int = 3, device: torch.device | str = "cpu") -> tuple[list[dict], float, dict[str, float]]:
    """One row per gamma, the measured c, and the median seconds of each timed variant.

    A row holds alpha, tokens per target call, the measured speedup, the paper's prediction from (alpha, gamma, c),
    the measured cost of the target's pass over gamma + 1 tokens (in one-token passes), and the prediction that
    uses it instead of the paper's 1.
    """
    times = time_decoders(target, draft, prompts, n_new, gammas, repeats, device)
    c = paired_ratio(times["draft"], times["teacher"])
    context = min(200, target.config.block_size - max(gammas) - 1)
    costs = forward_costs(target, sorted({1} | {g + 1 for g in gammas}), context=context, device=device)
    references = [generate(target, p, n_new) for p in prompts]  # the teacher's own output, once per prompt
    rows = []
    for g in gammas:
        stats = acceptance(target, draft, prompts, n_new, g, references)
        verify = costs[g + 1] / costs[1]
        rows.append({"gamma": g, "alpha": stats["alpha"], "tokens_per_call": stats["tokens_per_call"],
                     "measured_speedup": paired_ratio(times["teacher"], times[f"spec_g{g}"]),
                     "predicted_speedup": expected_speedup(stats["alpha"], g, c),
                     "verify_cost": verify,
                     "predicted_with_verify_cost": expected_speedup(stats["alpha"], g, c, verify),
                     "ms_per_token": 1e3 * statistics.median(times[f"spec_g{g}"]) / (n_new * len(prompts)),
                     "identical_to_teacher": stats["identical"]})
    return rows, c, {name: statistics.median(ts) for name, ts in times.items()}


@torch.inference_mode()
def forward_costs(model: GPT, n_tokens: list[int], context: int = 200, repeats: int = 30,
                  device: torch.device | str = "cpu") -> dict[int, float]:
    """Median milliseconds of one cached forward pass over k new tokens after `context` cached ones, per k.

    The passes alternate between the k values (k1 k2 … k1 k2 …) and the cache is truncated back after each, so every
    pass sees the same context.
    """
    if context + max(n_tokens) > model.config.block_size:
        raise ValueError(f"context + max(n_tokens) = {context + max(n_tokens)} exceeds the window of "
                         f"{model.config.block_size} tokens; use a shorter context")
    gen = torch.Generator().manual_seed(0)
    cache = KVCache.for_model(model)
    model(torch.randint(0, model.config.vocab_size, (1, context), generator=gen).to(device), cache=cache)
    inputs = {k: torch.randint(0, model.config.vocab_size, (1, k), generator=gen).to(device) for k in n_tokens}
    times: dict[int, list[float]] = {k: [] for k in n_tokens}
    for rep in range(repeats + 1):
        for k, x in inputs.items():
            synchronize(device)
            t0 = time.perf_counter()
            model(x, cache=cache)
            synchronize(device)
            if rep:  # the first pass of each size is a warm-up
                times[k].append(time.perf_counter() - t0)
            cache.truncate(context)
    return {k: 1e3 * statistics.median(ts) for k, ts in times.items()}


def run(quick: bool = False) -> Report:
    device = pick_device()
    target, note_t = load("teacher", device, train_if_missing=not quick)
    draft, note_d = load("student", device, train_if_missing=not quick)
    n_new, gammas = (128, [2, 4, 6]) if quick else (256, list(range(1, 9)))
    prompts = prompt_set(2 if quick else 4, device)
    rows, c, times = sweep(target, draft, prompts, n_new, gammas, repeats=2 if quick else 3, device=device)
    best = max(rows, key=lambda r: r["measured_speedup"])
    teacher_ms = 1e3 * times["teacher"] / (n_new * len(prompts))
    figures = {"n_new": n_new, "prompt_lengths": [len(p) for p in prompts], "c": c,
               "teacher_ms_per_token": teacher_ms, "draft_ms_per_token": teacher_ms * c,
               "best_gamma": best["gamma"], "acceptance_rate": best["alpha"],
               "tokens_per_call": best["tokens_per_call"], "predicted_speedup": best["predicted_speedup"],
               "predicted_with_verify_cost": best["predicted_with_verify_cost"], "verify_cost": best["verify_cost"],
               "all_identical_to_teacher": all(r["identical_to_teacher"] for r in rows),
               "seconds": times}
    ratios = {"speedup": best["measured_speedup"],
              "measured_vs_predicted": best["measured_speedup"] / best["predicted_speedup"]}
    notes = [n for n in (note_t, note_d) if n]
    notes.append(f"c = draft ÷ teacher time per token = {c:.3f}; best gamma {best['gamma']}: alpha "
                 f"{best['alpha']:.3f}, {best['tokens_per_call']:.2f} tokens per teacher call")
    return Report(rows=rows, figures=figures, ratios=ratios, notes=notes)
