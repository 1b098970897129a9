"""`python -m lifecycle.bench speculative`: the teacher alone vs speculative decoding with the distilled student.

Greedy decoding of 256 new tokens after each prompt of a fixed set (slices of the validation text, one long enough
that generation crosses the teacher's context window), timed interleaved in one process (medians):

    teacher    lifecycle.generate.generate(teacher): one decode step per token
    draft      generate(student): the draft alone, to measure the cost ratio c
    spec_gG    lifecycle.speculative.speculative_generate(teacher, student, gamma=G), for each G in the sweep

c = draft time ÷ teacher time for the same number of tokens (a draft step's cost in target steps, measured, since
at this size a step's cost follows depth and per-call overhead more than parameter count). The acceptance rate
alpha and tokens per target call come from the speculative runs themselves (greedy, so they are deterministic).
predicted = (1 - alpha^(G+1)) / ((1 - alpha)(G c + 1)) (Leviathan et al. 2023); measured = teacher time ÷
spec_gG time. Every speculative run's tokens are checked against the teacher's own: they must be identical.

Ratios: speedup = measured speedup at the best G; measured_vs_predicted = that speedup ÷ the formula's prediction.
--quick: 128 new tokens, two prompts, G in {2, 4, 6}, and random weights when a model is not cached (said in the
notes; alpha is then meaningless but the code path and the timing harness are exercised).
"""
from __future__ import annotations

import torch

from .. import zoo
from ..bench import Report, interleaved
from ..device import pick_device
from ..generate import generate
from ..model import GPT, preset
from ..speculative import expected_speedup, speculative_generate
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
                  repeats: int = 3, device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds to decode n_new greedy tokens after every prompt, per variant (interleaved)."""
    def run_all(fn):
        return lambda: [fn(p) for p in prompts]

    variants = {"teacher": run_all(lambda p: generate(target, p, n_new)),
                "draft": run_all(lambda p: generate(draft, p, n_new))}
    for g in gammas:
        variants[f"spec_g{g}"] = run_all(lambda p, g=g: speculative_generate(target, draft, p, n_new, gamma=g))
    times = interleaved(variants, repeats=repeats, device=device)
    return {name: t["median"] for name, t in times.items()}


def acceptance(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gamma: int) -> dict:
    """Pooled statistics of greedy speculative decoding over the prompts, and whether every output matched."""
    accepted = rejected = rounds = new = 0
    identical = True
    for p in prompts:
        out, st = speculative_generate(target, draft, p, n_new, gamma=gamma)
        identical &= bool(torch.equal(out, generate(target, p, n_new)))
        accepted, rejected, rounds, new = accepted + st.accepted, rejected + st.rejected, rounds + st.rounds, \
            new + st.new_tokens
    alpha = accepted / (accepted + rejected) if accepted + rejected else 0.0
    return {"alpha": alpha, "tokens_per_call": new / rounds, "identical": identical}


def sweep(target: GPT, draft: GPT, prompts: list[torch.Tensor], n_new: int, gammas: list[int],
          repeats: int = 3, device: torch.device | str = "cpu") -> tuple[list[dict], float, dict[str, float]]:
    """One row per gamma (alpha, tokens per call, measured and predicted speedup), the measured c, the times."""
    times = time_decoders(target, draft, prompts, n_new, gammas, repeats, device)
    c = times["draft"] / times["teacher"]
    rows = []
    for g in gammas:
        stats = acceptance(target, draft, prompts, n_new, g)
        rows.append({"gamma": g, "alpha": stats["alpha"], "tokens_per_call": stats["tokens_per_call"],
                     "measured_speedup": times["teacher"] / times[f"spec_g{g}"],
                     "predicted_speedup": expected_speedup(stats["alpha"], g, c),
                     "ms_per_token": 1e3 * times[f"spec_g{g}"] / (n_new * len(prompts)),
                     "identical_to_teacher": stats["identical"]})
    return rows, c, times


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
               "all_identical_to_teacher": all(r["identical_to_teacher"] for r in rows),
               "seconds": times}
    ratios = {"speedup": best["measured_speedup"],
              "measured_vs_predicted": best["measured_speedup"] / best["predicted_speedup"]}
    notes = [n for n in (note_t, note_d) if n]
    notes.append(f"c = draft ÷ teacher time per token = {c:.3f}; best gamma {best['gamma']}: alpha "
                 f"{best['alpha']:.3f}, {best['tokens_per_call']:.2f} tokens per teacher call")
    return Report(rows=rows, figures=figures, ratios=ratios, notes=notes)
