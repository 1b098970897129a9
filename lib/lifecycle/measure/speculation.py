"""Measuring speculative decoding: tokens identical to the target's, acceptance, the draft's cost, the speedup.

Lesson 08 and `python -m lifecycle.bench speculative` measure with these, every timing by `measure.timing.interleaved`
(a warm-up round, then rounds of one call of each variant with the order reversed every round; medians):
- `validation_prompts`: fixed prompts, slices of the validation text of growing length.
- `step_cost_ratio`: c, the per-step cost ratio at one token (a cached one-token pass of the draft ÷ the target's).
- `choose_gamma`: gamma* fixed before any timed run, from alpha measured on calibration prompts and c put into
  Leviathan et al. (2023)'s formula (`speculative.best_gamma`).
- `time_decoders`: the target alone, the draft alone and speculative decoding at each (gamma, confidence),
  decoding the same greedy tokens after every prompt, interleaved.
- `acceptance`: pooled acceptance rate alpha, tokens per target call and drafts per round of greedy speculative
  decoding, and whether every output equals the target's own.
- `sweep`: one row per setting with the measured speedup (ratio of medians, with the spread of the paired per-round
  ratios) and its prediction (`speculative.expected_speedup`) at c, and the prediction that uses the measured cost of
  the verify pass (`forward_costs`: one cached forward over k tokens).
- Beyond greedy continuations: `sampled_speed` (speculative sampling against the target's own sampling) and
  `heldout_acceptance` (expected acceptance along validation text that neither model wrote).
"""
from __future__ import annotations

import torch

from .. import zoo
from ..generate import generate, logits_to_probs
from ..model import GPT, KVCache
from ..speculative import SpecStats, acceptance_probability, best_gamma, expected_speedup, speculative_generate, \
    speedup_from_counts
from .timing import Timing, interleaved, paired_ratios

CALIBRATION_GAMMA = 4  # the gamma at which the calibration run measures alpha
MAX_GAMMA = 8  # gamma* is chosen in 1..MAX_GAMMA


def validation_prompts(n_prompts: int = 4, device: torch.device | str = "cpu",
                       offset: int = 1000) -> list[torch.Tensor]:
    """Fixed prompts: slices of the validation text from `offset` on, 24 to 24 * 4^(n-1) tokens long (capped below
    the window)."""
    val = zoo.corpus().val
    prompts = []
    for i in range(n_prompts):
        length = min(24 * 4 ** i, 320)
        start = offset + 7919 * i
        prompts.append(val[start:start + length].to(device))
    return prompts


def setting_name(gamma: int, confidence: float = 0.0) -> str:
    """The timed variant's name: spec_g4, or spec_g6_c0.4 when drafting stops below a confidence."""
    return f"spec_g{gamma}" + (f"_c{confidence:g}" if confidence else "")


def time_decoders(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int,
                  settings: list[tuple[int, float]], repeats: int = 3,
                  device: torch.device | str = "cpu") -> dict[str, Timing]:
    """Seconds to decode n_new greedy tokens after every prompt, per variant (interleaved, medians and spread).

    settings: (gamma, confidence) pairs, one speculative variant each.
    """
    def run_all(fn):
        return lambda: [fn(p) for p in prompts]

    variants = {"teacher": run_all(lambda p: generate(target, p, n_new)),
                "draft": run_all(lambda p: generate(draft, p, n_new))}
    for g, conf in settings:
        variants[setting_name(g, conf)] = run_all(
            lambda p, g=g, conf=conf: speculative_generate(target, draft, p, n_new, gamma=g, confidence=conf))
    return interleaved(variants, repeats=repeats, device=device)


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
          repeats: int = 3, device: torch.device | str = "cpu", early_stops: list[tuple[int, float]] = (),
          c: float | None = None) -> tuple[list[dict], float, dict[str, float]]:
    """One row per gamma (and per (gamma, confidence) in early_stops), the cost ratio c, and the median seconds of
    each timed variant.

    c is the per-step cost ratio at one token (`step_cost_ratio`), measured here unless given. A row holds alpha,
    tokens per target call, drafts per round, the measured speedup (ratio of medians) and the spread of the per-round
    paired ratios, the paper's prediction from (alpha, gamma, c) for a fixed gamma (for drafting that stops early,
    where the closed form does not apply, the same cost model fed the run's own counts, `speedup_from_counts`), the
    measured cost of the target's pass over the drafts + 1 tokens (in one-token passes), and the prediction that
    uses it instead of the paper's 1.
    """
    settings = [(g, 0.0) for g in gammas] + [(g, conf) for g, conf in early_stops]
    top = max(g for g, _ in settings)
    context = min(200, target.config.block_size - top - 1)
    if c is None:
        c = step_cost_ratio(target, draft, context=context, device=device)
    times = time_decoders(target, draft, prompts, n_new, settings, repeats, device)
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
        per_round = paired_ratios(times["teacher"], times[name])  # teacher ÷ speculative, round by round
        rows.append({"gamma": g, "confidence": conf, "alpha": stats["alpha"],
                     "tokens_per_call": stats["tokens_per_call"], "drafts_per_round": k,
                     "measured_speedup": times["teacher"].median / times[name].median,
                     "speedup_min": per_round.low, "speedup_max": per_round.high,
                     "predicted_speedup": predicted, "verify_cost": verify,
                     "predicted_with_verify_cost": with_verify,
                     "ms_per_token": 1e3 * times[name].median / (n_new * len(prompts)),
                     "identical_to_teacher": stats["identical"]})
    return rows, c, {name: t.median for name, t in times.items()}


@torch.inference_mode()
def step_cost_ratio(target: GPT, draft: GPT, context: int = 200, passes: int = 8, repeats: int = 15,
                    device: torch.device | str = "cpu") -> float:
    """c: the median time of one cached forward pass of the draft over one new token ÷ the same for the target.

    Each model first reads the same `context` random tokens into its cache; a timed call then runs `passes`
    one-token passes, truncating the cache back after each, so every pass sees the same context. The two models
    alternate (`interleaved`), so a busy stretch slows both alike.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, target.config.vocab_size, (1, context), generator=gen).to(device)  # (1, context)
    one = torch.randint(0, target.config.vocab_size, (1, 1), generator=gen).to(device)  # (1, 1)
    variants = {}
    for name, model in (("target", target), ("draft", draft)):
        cache = KVCache.for_model(model)
        model(x, cache=cache)

        def fn(model=model, cache=cache):
            for _ in range(passes):
                model(one, cache=cache)
                cache.truncate(context)
        variants[name] = fn
    t = interleaved(variants, repeats=repeats, device=device)
    return t["draft"].median / t["target"].median


def choose_gamma(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, c: float,
                 max_gamma: int = MAX_GAMMA) -> dict:
    """gamma* fixed before any timed run: alpha measured greedily on calibration `prompts` (at CALIBRATION_GAMMA),
    then the gamma in 1..max_gamma that the paper's formula predicts fastest at that alpha and the given c
    (max_gamma when every proposal was accepted, where the formula grows without bound)."""
    stats = acceptance(target, draft, prompts, n_new, CALIBRATION_GAMMA)
    alpha = stats["alpha"]
    gamma = best_gamma(alpha, c, max_gamma) if alpha < 1 else max_gamma
    return {"gamma": gamma, "alpha": alpha, "c": c, "calibration_gamma": CALIBRATION_GAMMA,
            "prompt_lengths": [len(p) for p in prompts], "n_new": n_new,
            "predicted_speedup": expected_speedup(alpha, gamma, c) if alpha < 1 else None}


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
    ratio of the medians. alpha and tokens per teacher call are pooled over the prompts, and `predicted` is the
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

    times = interleaved({"teacher": teacher_fn, "speculative": spec_fn}, repeats=repeats, device=device)
    total = SpecStats(gamma, **{field: sum(getattr(st, field) for _, st in runs)
                                for field in ("rounds", "proposed", "accepted", "rejected", "new_tokens")})
    return {"temperature": temperature, "gamma": gamma, "alpha": total.acceptance_rate,
            "tokens_per_call": total.tokens_per_target_call,
            "measured_speedup": times["teacher"].median / times["speculative"].median,
            "predicted_speedup": expected_speedup(total.acceptance_rate, gamma, c),
            "ms_per_token": 1e3 * times["speculative"].median / (n_new * len(prompts))}


@torch.inference_mode()
def forward_costs(model: GPT, n_tokens: list[int], context: int = 200, repeats: int = 30,
                  device: torch.device | str = "cpu") -> dict[int, float]:
    """Median milliseconds of one cached forward pass over k new tokens after `context` cached ones, per k.

    The passes alternate between the k values (`interleaved`, after a warm-up round) and the cache is truncated back
    after each, so every pass sees the same context.
    """
    if context + max(n_tokens) > model.config.block_size:
        raise ValueError(f"context + max(n_tokens) = {context + max(n_tokens)} exceeds the window of "
                         f"{model.config.block_size} tokens; use a shorter context")
    gen = torch.Generator().manual_seed(0)
    cache = KVCache.for_model(model)
    model(torch.randint(0, model.config.vocab_size, (1, context), generator=gen).to(device), cache=cache)
    inputs = {k: torch.randint(0, model.config.vocab_size, (1, k), generator=gen).to(device) for k in n_tokens}

    def one_pass(x: torch.Tensor):
        def fn():
            model(x, cache=cache)
            cache.truncate(context)
        return fn

    times = interleaved({str(k): one_pass(x) for k, x in inputs.items()}, repeats=repeats, device=device)
    return {k: 1e3 * times[str(k)].median for k in n_tokens}
