"""`python -m lifecycle.bench speculative`: the teacher alone vs speculative decoding with the distilled student.

How gamma is chosen: before anything is timed, on a separate calibration run (other prompts, not reused):
  c      = the per-step cost ratio at one token: the median time of one cached draft forward pass over one new
           token ÷ the same for the teacher (`step_cost_ratio`, interleaved, after a 200-token context);
  alpha  = the greedy acceptance rate of the draft's proposals on the calibration prompts (at gamma 4);
  gamma* = the gamma in 1..8 that Leviathan et al. (2023)'s formula predicts fastest at that alpha and c
           (`lifecycle.speculative.best_gamma`, via `lifecycle.measure.speculation.choose_gamma`).
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
The measuring itself is `lifecycle.measure.speculation`, which lesson 08 calls too.
--quick: 128 new tokens, two prompts, G in {2, 4, 6} and gamma*, and random weights when a model is not cached (said
in the notes; alpha is then meaningless but the code path and the timing harness are exercised).
"""
from __future__ import annotations

import torch

from .. import zoo
from ..bench import Report
from ..device import pick_device
from ..generate import generate
from ..measure.speculation import CALIBRATION_GAMMA, MAX_GAMMA, choose_gamma, heldout_acceptance, sampled_speed, \
    step_cost_ratio, sweep, validation_prompts
from ..measure.standin import cached_or_standin
from ..measure.timing import interleaved
from ..model import GPT
from ..speculative import speculative_generate

CALIBRATION_OFFSET = 200_000  # calibration prompts start here in the validation text, far from the timed ones


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
    choice = choose_gamma(target, draft, validation_prompts(2, device, offset=CALIBRATION_OFFSET), n_new, c)
    gamma = choice["gamma"]
    # 2. the timed run: the teacher, the draft, gamma* and the sweep around it, all interleaved
    prompts = validation_prompts(2 if quick else 4, device)
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
