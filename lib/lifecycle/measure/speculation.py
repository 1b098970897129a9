"""Measuring speculative decoding: tokens identical to the target's, acceptance, the draft's cost, the speedup.

Lesson 08 and `python -m lifecycle.bench speculative` measure with these:
- `validation_prompts`: fixed prompts, slices of the validation text of growing length.
- `time_decoders`: the target alone, the draft alone and speculative decoding at each (gamma, confidence),
  decoding the same greedy tokens after every prompt, interleaved.
- `acceptance`: pooled acceptance rate alpha, tokens per target call and drafts per round of greedy speculative
  decoding, and whether every output equals the target's own.
- `sweep`: one row per setting with the measured speedup and its prediction (Leviathan et al. 2023,
  `speculative.expected_speedup`), with the cost ratio c = draft time ÷ target time measured here, and the
  prediction that uses the measured cost of the verify pass (`forward_costs`: one cached forward over k tokens).
- Beyond greedy continuations: `sampled_speed` (speculative sampling against the target's own sampling) and
  `heldout_acceptance` (expected acceptance along validation text that neither model wrote).
"""
from __future__ import annotations

import statistics
import time

import torch

from .. import zoo
from ..bench import interleaved
from ..device import synchronize
from ..generate import generate, logits_to_probs
from ..model import GPT, KVCache
from ..speculative import SpecStats, acceptance_probability, expected_speedup, speculative_generate, \
    speedup_from_counts


def validation_prompts(n_prompts: int = 4, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Fixed prompts: slices of the validation text, 24 to 24 * 4^(n-1) tokens long (capped below the window)."""
    val = zoo.corpus().val
    prompts = []
    for i in range(n_prompts):
        length = min(24 * 4 ** i, 320)
        start = 1000 + 7919 * i
        prompts.append(val[start:start + length].to(device))
    return prompts


def setting_name(gamma: int, confidence: float = 0.0) -> str:
    """The timed variant's name: spec_g4, or spec_g6_c0.4 when drafting stops below a confidence."""
    return f"spec_g{gamma}" + (f"_c{confidence:g}" if confidence else "")


def time_decoders(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int,
                  settings: list[tuple[int, float]], repeats: int = 3,
                  device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds to decode n_new greedy tokens after every prompt, per variant and repeat (interleaved).

    settings: (gamma, confidence) pairs, one speculative variant each.
    """
    def run_all(fn):
        return lambda: [fn(p) for p in prompts]

    variants = {"teacher": run_all(lambda p: generate(target, p, n_new)),
                "draft": run_all(lambda p: generate(draft, p, n_new))}
    for g, conf in settings:
        variants[setting_name(g, conf)] = run_all(
            lambda p, g=g, conf=conf: speculative_generate(target, draft, p, n_new, gamma=g, confidence=conf))
    return {name: t["all"] for name, t in interleaved(variants, repeats=repeats, device=device).items()}


def fastest_ratio(numerator: list[float], denominator: list[float]) -> float:
    """min(numerator) / min(denominator): the ratio of each variant's fastest repeat.

    A shared machine only ever adds time (another tenant, a throttled core), and on the course's small VMs a slow
    stretch can double one run; the fastest repeat of each variant is the least disturbed measurement of it.
    """
    return min(numerator) / min(denominator)


def acceptance(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gamma: int,
               references: list[torch.Tensor] | None = None, confidence: float = 0.0) -> dict:
    """Pooled statistics of greedy speculative decoding over the prompts, and whether every output matched the
    target's own greedy output (`references`, one per prompt; computed here when not given)."""
    if references is None:
        references = [generate(target, p, n_new) for p in prompts]
    runs = [speculative_generate(target, draft, p, n_new, gamma=gamma, confidence=confidence) for p in prompts]
    identical = all(torch.equal(out, reference) for (out, _), reference in zip(runs, references))
    total = SpecStats(gamma, **{field: sum(getattr(st, field) for _, st in runs)
                                for field in ("rounds", "proposed", "accepted", "rejected", "new_tokens")})
    return {"alpha": total.acceptance_rate, "tokens_per_call": total.tokens_per_target_call,
            "drafts_per_round": total.drafts_per_round, "identical": identical}


def sweep(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gammas: list[int],
          repeats: int = 3, device: torch.device | str = "cpu",
          early_stops: list[tuple[int, float]] = ()) -> tuple[list[dict], float, dict[str, float]]:
    """One row per gamma (and per (gamma, confidence) in early_stops), the measured c, and the fastest seconds of each
    timed variant.

    A row holds alpha, tokens per target call, drafts per round, the measured speedup, the prediction (the paper's
    formula from (alpha, gamma, c) for a fixed gamma; the cost model fed the counts when drafting stops early), the
    measured cost of the target's pass over the drafts + 1 tokens (in one-token passes), and the prediction that uses
    it instead of the paper's 1.
    """
    settings = [(g, 0.0) for g in gammas] + [(g, conf) for g, conf in early_stops]
    times = time_decoders(target, draft, prompts, n_new, settings, repeats, device)
    c = fastest_ratio(times["draft"], times["teacher"])
    top = max(g for g, _ in settings)
    context = min(200, target.config.block_size - top - 1)
    costs = forward_costs(target, list(range(1, top + 2)), context=context, device=device)
    references = [generate(target, p, n_new) for p in prompts]  # the teacher's own output, once per prompt
    rows = []
    for g, conf in settings:
        stats = acceptance(target, draft, prompts, n_new, g, references, confidence=conf)
        k = stats["drafts_per_round"]
        verify = costs[min(top + 1, max(1, round(k) + 1))] / costs[1]
        if conf:
            predicted = speedup_from_counts(stats["tokens_per_call"], k, c)
            with_verify = speedup_from_counts(stats["tokens_per_call"], k, c, verify)
        else:
            predicted = expected_speedup(stats["alpha"], g, c)
            with_verify = expected_speedup(stats["alpha"], g, c, verify)
        name = setting_name(g, conf)
        rows.append({"gamma": g, "confidence": conf, "alpha": stats["alpha"],
                     "tokens_per_call": stats["tokens_per_call"], "drafts_per_round": k,
                     "measured_speedup": fastest_ratio(times["teacher"], times[name]),
                     "predicted_speedup": predicted, "verify_cost": verify,
                     "predicted_with_verify_cost": with_verify,
                     "ms_per_token": 1e3 * min(times[name]) / (n_new * len(prompts)),
                     "identical_to_teacher": stats["identical"]})
    return rows, c, {name: min(ts) for name, ts in times.items()}


# ---- beyond greedy continuations: sampling, and acceptance along held-out text ----

@torch.inference_mode()
def heldout_acceptance(target: GPT, draft: GPT, data: torch.Tensor, temperature: float = 0.0, windows: int = 8,
                       length: int = 256, seed: int = 0) -> float:
    """The expected acceptance rate of a draft along held-out text (`data`, e.g. the validation split): at every
    position of `windows` random windows of `length` tokens, both models read the real text and the chance that the
    draft's proposal is accepted there is averaged (`acceptance_probability` of the two distributions at
    `temperature`; at temperature 0, whether their greedy picks agree).

    Unlike acceptance counted along the teacher's own greedy continuations (which tend to repeat themselves, and a
    draft distilled on such text predicts them well), this asks how the draft fares on text neither model wrote.
    """
    device = next(target.parameters()).device
    length = min(length, target.config.block_size)
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(data) - length, (windows,), generator=gen)
    x = data[starts[:, None] + torch.arange(length)].to(device)  # (windows, length)
    p_logits, q_logits = target(x)[0], draft(x)[0]  # (windows, length, V) each
    if temperature == 0:
        return (p_logits.argmax(-1) == q_logits.argmax(-1)).float().mean().item()
    p, q = logits_to_probs(p_logits, temperature), logits_to_probs(q_logits, temperature)
    return acceptance_probability(p, q).mean().item()


def sampled_speed(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gamma: int, c: float,
                  temperature: float = 0.8, repeats: int = 3, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict:
    """Speculative sampling at `temperature` against the teacher's own sampling at the same temperature, on `prompts`.

    Both are timed interleaved (each prompt with a fixed seed, so every repeat does the same work); the speedup is the
    ratio of the fastest repeats. alpha and tokens per teacher call are pooled over the prompts, and `predicted` is the
    paper's formula at that alpha and the given c. (Sampled output cannot be compared token for token; its
    distribution is checked separately, against the teacher's probabilities.)
    """
    teacher_fn = lambda: [generate(target, p, n_new, temperature=temperature, seed=seed + i)  # noqa: E731
                          for i, p in enumerate(prompts)]
    runs = []

    def spec_fn():
        runs.clear()
        runs.extend(speculative_generate(target, draft, p, n_new, gamma=gamma, temperature=temperature, seed=seed + i)
                    for i, p in enumerate(prompts))

    times = {k: t["all"] for k, t in interleaved({"teacher": teacher_fn, "speculative": spec_fn}, repeats=repeats,
                                                  device=device).items()}
    total = SpecStats(gamma, **{field: sum(getattr(st, field) for _, st in runs)
                                for field in ("rounds", "proposed", "accepted", "rejected", "new_tokens")})
    return {"temperature": temperature, "gamma": gamma, "alpha": total.acceptance_rate,
            "tokens_per_call": total.tokens_per_target_call,
            "measured_speedup": fastest_ratio(times["teacher"], times["speculative"]),
            "predicted_speedup": expected_speedup(total.acceptance_rate, gamma, c),
            "ms_per_token": 1e3 * min(times["speculative"]) / (n_new * len(prompts))}


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
