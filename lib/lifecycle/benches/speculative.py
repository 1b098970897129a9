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
spec_gG time. Both c and the measured speedups are ratios of each variant's fastest repeat (`fastest_ratio`: a busy
machine only adds time, so the fastest run is the least disturbed; the variants are interleaved, so a quiet stretch
is as likely to fall on any of them). Every speculative run's tokens are checked against the teacher's own: they
must be identical.

The paper's model prices the target's pass over G + 1 tokens as one decode step; on a CPU at this size it costs more,
so each row also gives that pass's measured cost (forward_costs) and the prediction that uses it.

Drafting that stops early (`confidence`: the draft ends its round after a proposal it gave less probability than
that) is timed too, as spec_gG_cP rows. The paper's closed form assumes G drafts every round, so those rows are priced
with the same cost model fed the run's own counts (`speedup_from_counts`: tokens per target call over drafts per
round times c plus the verify pass).

The peer: Hugging Face transformers' assisted generation (`generate(assistant_model=...)`, the library that does
speculative decoding for real) with the same two models ported to GPT2LMHeadModel, set to the best row's G and
confidence, against its own plain greedy `generate`, on the prompts that fit the context window (Hugging Face's GPT-2
does not slide it). Both must give the teacher's tokens.

Beyond greedy continuations (which tend to loop, and which the distilled draft was partly trained on): speculative
sampling at temperature 0.8 against the teacher's own sampling at 0.8 (`sampled_speed`, the best fixed G, two
prompts), and the expected acceptance rate along held-out validation text that neither model wrote
(`heldout_acceptance`, greedy and at 0.8: the mean of sum_x min(p, q) over every position).

Ratios: speedup = the best row's measured speedup; sampled_speedup = the same for sampling at 0.8; measured_vs_predicted = that speedup ÷ its prediction;
fixed_gamma_speedup and fixed_gamma_measured_vs_predicted = the same for the best row with a fixed G (the paper's
algorithm and formula as written); hf_assisted_speedup = Hugging Face plain ÷ Hugging Face assisted; ours_vs_hf =
Hugging Face assisted time ÷ our speculative time on the same prompts.
The measuring itself is `lifecycle.measure.speculation`, which lesson 08 calls too.
--quick: 128 new tokens, two prompts, G in {2, 4, 6} plus G 6 with confidence 0.4, and random weights when a model is
not cached (said in the notes; alpha is then meaningless but the code path and the timing harness are exercised).
"""
from __future__ import annotations

import torch

from .. import zoo
from ..bench import Report, interleaved
from ..device import pick_device
from ..generate import generate
from ..measure.speculation import fastest_ratio, heldout_acceptance, sampled_speed, sweep, validation_prompts
from ..model import GPT, preset
from ..speculative import speculative_generate
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


def hf_peer(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gamma: int, confidence: float = 0.0,
            repeats: int = 3, device: torch.device | str = "cpu") -> dict | None:
    """Hugging Face assisted generation vs its plain greedy generate, next to ours, on the prompts that fit the window.

    None when transformers is not installed or no prompt fits. Returns the fastest seconds of each variant and whether
    every output equals the teacher's own greedy tokens.
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
    times = {name: t["all"] for name, t in interleaved(variants, repeats=repeats, warmup=0, device=device).items()}
    return {"prompt_lengths": [len(p) for p in fit], "identical_to_teacher": identical,
            "seconds": {name: min(ts) for name, ts in times.items()},
            "speedup": fastest_ratio(times["teacher"], times["speculative"]),
            "hf_assisted_speedup": fastest_ratio(times["hf_teacher"], times["hf_assisted"]),
            "ours_vs_hf": fastest_ratio(times["hf_assisted"], times["speculative"])}


def run(quick: bool = False) -> Report:
    device = pick_device()
    target, note_t = load("teacher", device, train_if_missing=not quick)
    draft, note_d = load("student", device, train_if_missing=not quick)
    n_new, gammas = (128, [2, 4, 6]) if quick else (256, list(range(1, 9)))
    early_stops = [(6, 0.4)] if quick else [(6, 0.3), (6, 0.4), (6, 0.5)]
    prompts = validation_prompts(2 if quick else 4, device)
    rows, c, times = sweep(target, draft, prompts, n_new, gammas, repeats=2 if quick else 3, device=device,
                           early_stops=early_stops)
    best = max(rows, key=lambda r: r["measured_speedup"])
    fixed = max((r for r in rows if not r["confidence"]), key=lambda r: r["measured_speedup"])
    teacher_ms = 1e3 * times["teacher"] / (n_new * len(prompts))
    peer = hf_peer(target, draft, prompts, n_new, best["gamma"], best["confidence"], repeats=2 if quick else 3,
                   device=device)
    figures = {"n_new": n_new, "prompt_lengths": [len(p) for p in prompts], "c": c,
               "teacher_ms_per_token": teacher_ms, "draft_ms_per_token": teacher_ms * c,
               "best_gamma": best["gamma"], "best_confidence": best["confidence"], "acceptance_rate": best["alpha"],
               "tokens_per_call": best["tokens_per_call"], "drafts_per_round": best["drafts_per_round"],
               "predicted_speedup": best["predicted_speedup"],
               "predicted_with_verify_cost": best["predicted_with_verify_cost"], "verify_cost": best["verify_cost"],
               "best_fixed_gamma": fixed["gamma"], "fixed_gamma_acceptance_rate": fixed["alpha"],
               "fixed_gamma_predicted_speedup": fixed["predicted_speedup"],
               "all_identical_to_teacher": all(r["identical_to_teacher"] for r in rows),
               "seconds": times, "hf_peer": peer}
    sampled = sampled_speed(target, draft, prompts[:2], n_new, fixed["gamma"], c, repeats=2 if quick else 3,
                            device=device)
    val = zoo.corpus().val
    figures |= {"sampled": sampled, "heldout_alpha_greedy": heldout_acceptance(target, draft, val, 0.0),
                "heldout_alpha_sampled": heldout_acceptance(target, draft, val, sampled["temperature"])}
    ratios = {"speedup": best["measured_speedup"], "sampled_speedup": sampled["measured_speedup"],
              "measured_vs_predicted": best["measured_speedup"] / best["predicted_speedup"],
              "fixed_gamma_speedup": fixed["measured_speedup"],
              "fixed_gamma_measured_vs_predicted": fixed["measured_speedup"] / fixed["predicted_speedup"]}
    notes = [n for n in (note_t, note_d) if n]
    notes.append(f"c = draft ÷ teacher time per token = {c:.3f}; best: gamma {best['gamma']}"
                 + (f" stopping below confidence {best['confidence']:g}" if best["confidence"] else "")
                 + f", alpha {best['alpha']:.3f}, {best['tokens_per_call']:.2f} tokens per teacher call")
    if peer is None:
        notes.append("Hugging Face peer skipped: transformers is not installed or no prompt fits the window")
    else:
        ratios |= {"hf_assisted_speedup": peer["hf_assisted_speedup"], "ours_vs_hf": peer["ours_vs_hf"]}
        notes.append(f"Hugging Face assisted generation on prompts of {peer['prompt_lengths']} tokens: "
                     f"{peer['hf_assisted_speedup']:.2f}x its own plain generate; ours {peer['speedup']:.2f}x on the "
                     f"same prompts; same tokens as the teacher: {peer['identical_to_teacher']}")
    return Report(rows=rows, figures=figures, ratios=ratios, notes=notes)
