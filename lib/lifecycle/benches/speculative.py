"""`python -m lifecycle.bench speculative`: the teacher alone vs speculative decoding with the distilled student.

How gamma is chosen: before anything is timed, on a separate calibration run (other prompts, not reused):
  c      = the per-step cost ratio at one token: the median time of one cached draft forward pass over one new
           token ÷ the same for the teacher (`step_cost_ratio`, interleaved, after a 200-token context);
  alpha  = the greedy acceptance rate of the draft's proposals on the calibration prompts (at gamma 4);
  gamma* = the gamma in 1..8 that Leviathan et al. (2023)'s formula predicts fastest at that alpha and c
           (`lifecycle.speculative.best_gamma`).
The headline is the run at gamma*, whatever the sweep around it shows.

The timed run: greedy decoding of 256 new tokens after each prompt of a fixed set (slices of the validation text, one
long enough that generation crosses the teacher's context window), every variant timed by
`lifecycle.measure.timing.interleaved` (one warm-up round, then rounds with one call of each variant, the order
reversed every round):

    teacher    lifecycle.generate.generate(teacher): one decode step per token
    draft      generate(student): the draft alone (its decode time ÷ the teacher's is reported as c_decode)
    spec_gG    lifecycle.speculative.speculative_generate(teacher, student, gamma=G), for gamma* and a sweep around it

measured = median teacher time ÷ median spec_gG time, with the spread of the per-round paired ratios (min, max).
predicted = (1 - alpha^(G+1)) / ((1 - alpha)(G c + 1)), the paper's formula, with alpha measured on the timed run at
that G and c measured at one token as above. The paper prices the target's pass over G + 1 tokens as one decode step;
on a CPU at this size it costs more, so each row also gives that pass's measured cost (`forward_costs`) and the
prediction that uses it. Every speculative run's tokens are checked against the teacher's own: they must be identical.

The peer: Hugging Face transformers' assisted generation (`generate(assistant_model=...)`) with the same two models
ported to GPT2LMHeadModel, gamma* drafts per round (constant schedule, no confidence stop), against its own plain
greedy `generate`, on the prompts that fit the context window (Hugging Face's GPT-2 does not slide it). Both must give
the teacher's tokens.

Beyond greedy continuations: speculative sampling at temperature 0.8 against the teacher's own sampling at 0.8
(`sampled_speed`, at gamma*, two prompts, medians), and the expected acceptance rate along held-out validation text
that neither model wrote (`heldout_acceptance`, greedy and at 0.8).

Ratios: speedup = measured at gamma*; measured_vs_predicted = that ÷ the formula's prediction; sampled_speedup = the
same for sampling at 0.8; hf_assisted_speedup = Hugging Face plain ÷ Hugging Face assisted; ours_vs_hf = Hugging
Face assisted time ÷ our speculative time on the same prompts. The sweep's best row is in the figures only (the best
of several noisy ratios is biased upward).
--quick: 128 new tokens, two prompts, G in {2, 4, 6} and gamma*, and random weights when a model is not cached (said
in the notes; alpha is then meaningless but the code path and the timing harness are exercised).
"""
from __future__ import annotations

import torch

from .. import zoo
from ..bench import Report
from ..device import pick_device
from ..generate import generate, logits_to_probs
from ..measure.standin import cached_or_standin
from ..measure.timing import Timing, interleaved, paired_ratios
from ..model import GPT, KVCache
from ..speculative import SpecStats, acceptance_probability, best_gamma, expected_speedup, speculative_generate, \
    speedup_from_counts

MAX_GAMMA = 8  # gamma* is chosen in 1..MAX_GAMMA
CALIBRATION_GAMMA = 4  # the gamma at which the calibration run measures alpha
CALIBRATION_OFFSET = 200_000  # calibration prompts start here in the validation text, far from the timed ones


def prompt_set(n_prompts: int = 4, device: torch.device | str = "cpu", offset: int = 1000) -> list[torch.Tensor]:
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


def hf_peer(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gamma: int, confidence: float = 0.0,
            repeats: int = 3, device: torch.device | str = "cpu") -> dict | None:
    """Hugging Face assisted generation vs its plain greedy generate, next to ours, on the prompts that fit the window.

    None when transformers is not installed or no prompt fits. Returns the median seconds of each variant, the
    ratios of medians, and whether every output equals the teacher's own greedy tokens.
    """
    try:
        from ..model import to_hf_gpt2
        hf_target, hf_draft = to_hf_gpt2(target), to_hf_gpt2(draft)
    except ImportError:
        return None
    fit = [p for p in prompts if len(p) + n_new <= target.config.block_size]
    if not fit:
        return None
    for m in (hf_target, hf_draft):
        m.generation_config.eos_token_id = None  # token 0 is ordinary text here: never stop at it
        m.generation_config.pad_token_id = 0
    hf_draft.generation_config.num_assistant_tokens = gamma  # gamma drafts per round, as ours
    hf_draft.generation_config.num_assistant_tokens_schedule = "constant"
    hf_draft.generation_config.assistant_confidence_threshold = confidence

    def hf(p, assisted: bool):
        with torch.inference_mode():
            out = hf_target.generate(p.view(1, -1), attention_mask=torch.ones(1, len(p), dtype=torch.long,
                                                                               device=p.device),
                                     do_sample=False, max_new_tokens=n_new,
                                     assistant_model=hf_draft if assisted else None)
        return out[:, len(p):]

    references = [generate(target, p, n_new) for p in fit]
    identical = all(torch.equal(hf(p, a), r) for p, r in zip(fit, references) for a in (False, True))
    variants = {"teacher": lambda: [generate(target, p, n_new) for p in fit],
                "speculative": lambda: [speculative_generate(target, draft, p, n_new, gamma=gamma,
                                                             confidence=confidence) for p in fit],
                "hf_teacher": lambda: [hf(p, False) for p in fit],
                "hf_assisted": lambda: [hf(p, True) for p in fit]}
    # every variant already ran above (the identity check, the sweep), so no warm-up run is needed
    med = {name: t.median for name, t in interleaved(variants, repeats=repeats, warmup=0, device=device).items()}
    return {"prompt_lengths": [len(p) for p in fit], "identical_to_teacher": identical, "seconds": med,
            "speedup": med["teacher"] / med["speculative"],
            "hf_assisted_speedup": med["hf_teacher"] / med["hf_assisted"],
            "ours_vs_hf": med["hf_assisted"] / med["speculative"]}


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


def run(quick: bool = False) -> Report:
    device = pick_device()
    target, draft = (cached_or_standin(name, device, allow_stand_in=quick) for name in ("teacher", "student"))
    notes = [target.note, draft.note]
    target, draft = target.model, draft.model
    n_new, sweep_gammas = (128, [2, 4, 6]) if quick else (256, list(range(1, MAX_GAMMA + 1)))
    repeats = 3 if quick else 5
    # 1. calibration, before anything is timed: c at one token, alpha on other prompts, gamma* from the formula
    context = min(200, target.config.block_size - MAX_GAMMA - 2)
    c = step_cost_ratio(target, draft, context=context, device=device)
    choice = choose_gamma(target, draft, prompt_set(2, device, offset=CALIBRATION_OFFSET), n_new, c)
    gamma = choice["gamma"]
    # 2. the timed run: the teacher, the draft, gamma* and the sweep around it, all interleaved
    prompts = prompt_set(2 if quick else 4, device)
    gammas = sorted(set(sweep_gammas) | {gamma})
    rows, c, times = sweep(target, draft, prompts, n_new, gammas, repeats=repeats, device=device, c=c)
    head = next(r for r in rows if r["gamma"] == gamma)
    best = max(rows, key=lambda r: r["measured_speedup"])
    n_tokens = n_new * len(prompts)
    peer = hf_peer(target, draft, prompts, n_new, gamma, repeats=repeats, device=device)
    figures = {"n_new": n_new, "prompt_lengths": [len(p) for p in prompts], "c": c,
               "c_decode": times["draft"] / times["teacher"], "gamma_choice": choice,
               "teacher_ms_per_token": 1e3 * times["teacher"] / n_tokens,
               "draft_ms_per_token": 1e3 * times["draft"] / n_tokens,
               "gamma": gamma, "acceptance_rate": head["alpha"], "tokens_per_call": head["tokens_per_call"],
               "predicted_speedup": head["predicted_speedup"], "speedup_min": head["speedup_min"],
               "speedup_max": head["speedup_max"], "predicted_with_verify_cost": head["predicted_with_verify_cost"],
               "verify_cost": head["verify_cost"], "sweep_best_gamma": best["gamma"],
               "sweep_best_speedup": best["measured_speedup"],
               "all_identical_to_teacher": all(r["identical_to_teacher"] for r in rows),
               "seconds": times, "repeats": repeats, "hf_peer": peer}
    sampled = sampled_speed(target, draft, prompts[:2], n_new, gamma, c, repeats=repeats, device=device)
    val = zoo.corpus().val
    figures |= {"sampled": sampled, "heldout_alpha_greedy": heldout_acceptance(target, draft, val, 0.0),
                "heldout_alpha_sampled": heldout_acceptance(target, draft, val, sampled["temperature"])}
    ratios = {"speedup": head["measured_speedup"],
              "measured_vs_predicted": head["measured_speedup"] / head["predicted_speedup"],
              "sampled_speedup": sampled["measured_speedup"],
              "sampled_measured_vs_predicted": sampled["measured_speedup"] / sampled["predicted_speedup"]}
    notes.append(f"gamma* = {gamma}, fixed before the timed run: calibration alpha {choice['alpha']:.3f} (greedy, "
                 f"gamma {CALIBRATION_GAMMA}, other prompts) and c = {c:.3f} (one-token cached pass, draft ÷ teacher) "
                 "put into Leviathan's formula; the sweep's other gammas are in the table only")
    notes.append(f"at gamma*: alpha {head['alpha']:.3f}, {head['tokens_per_call']:.2f} tokens per teacher call, "
                 f"measured {head['measured_speedup']:.2f}x (paired rounds {head['speedup_min']:.2f}-"
                 f"{head['speedup_max']:.2f}), predicted {head['predicted_speedup']:.2f}x (with the measured verify "
                 f"cost {head['verify_cost']:.2f}: {head['predicted_with_verify_cost']:.2f}x); medians of {repeats} "
                 "interleaved rounds after one warm-up round")
    if head["speedup_max"] > 2 * head["speedup_min"]:
        notes.append(f"WARNING: at gamma* the paired rounds spread from {head['speedup_min']:.2f}x to "
                     f"{head['speedup_max']:.2f}x: the machine was busy (load average in `machine`), so the medians "
                     "are unreliable; rerun on a quieter machine, or with one torch thread (OMP_NUM_THREADS=1)")
    if peer is None:
        notes.append("Hugging Face peer skipped: transformers is not installed or no prompt fits the window")
    else:
        ratios |= {"hf_assisted_speedup": peer["hf_assisted_speedup"], "ours_vs_hf": peer["ours_vs_hf"]}
        notes.append(f"Hugging Face assisted generation (gamma* drafts per round) on prompts of "
                     f"{peer['prompt_lengths']} tokens: {peer['hf_assisted_speedup']:.2f}x its own plain generate; "
                     f"ours {peer['speedup']:.2f}x on the same prompts; same tokens as the teacher: "
                     f"{peer['identical_to_teacher']}")
    return Report(rows=rows, figures=figures, ratios=ratios, notes=notes)
