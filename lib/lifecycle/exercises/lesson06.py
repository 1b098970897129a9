"""Lesson 06 exercises: the teacher's softened distribution and the temperature-scaled distillation loss.

- `soften(logits, temperature)`: softmax(logits / T) over the last dimension, stable for large logits
  (checked against `distill.soft_targets`).
- `distillation_loss(student_logits, teacher_logits, targets, temperature, alpha)`:
  alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets), averaged over token positions
  (checked against `distill.distillation_loss`).
"""
from __future__ import annotations

import torch

from .. import distill
from . import Case, check_function


def _logits(*shape: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def check_soften(fn) -> bool | None:
    """`fn(logits (..., V), temperature) -> probabilities (..., V)` against `distill.soft_targets`."""
    cases = [Case("one position, V=5, T=1", (_logits(5, seed=0), 1.0)),
             Case("one position, V=5, T=4 (flatter)", (_logits(5, seed=0), 4.0)),
             Case("(B=2, T=3, V=7), temperature 2", (_logits(2, 3, 7, seed=1), 2.0)),
             Case("T=0.5 (sharper)", (_logits(4, 6, seed=2), 0.5)),
             Case("huge logits (±1000: exp overflows unless you subtract the max)",
                  (torch.tensor([[1000.0, 998.0, -1000.0], [0.0, 1000.0, 999.0]]), 2.0))]
    return check_function("soften", fn, reference=distill.soft_targets, cases=cases, rtol=1e-4, atol=1e-6,
                          hint="divide the logits by T before the softmax, over the LAST dimension; "
                               "torch.softmax (or subtracting the row's max before exp) keeps huge logits finite.")


def check_distillation_loss(fn) -> bool | None:
    """`fn(student_logits, teacher_logits, targets, temperature, alpha) -> scalar tensor` against the library."""
    s, t = _logits(6, 10, seed=3), _logits(6, 10, seed=4)
    y = torch.randint(0, 10, (6,), generator=torch.Generator().manual_seed(5))
    s3, t3 = _logits(2, 4, 8, seed=6), _logits(2, 4, 8, seed=7)
    y3 = torch.randint(0, 8, (2, 4), generator=torch.Generator().manual_seed(8))
    cases = [Case("6 positions, V=10, T=2, alpha=0.5", (s, t, y, 2.0, 0.5)),
             Case("T=1, alpha=0.5", (s, t, y, 1.0, 0.5)),
             Case("T=4, alpha=1 (soft term only)", (s, t, y, 4.0, 1.0)),
             Case("alpha=0 (the ordinary cross-entropy)", (s, t, y, 3.0, 0.0)),
             Case("student equals teacher (KL is 0), T=2, alpha=1", (t, t.clone(), y, 2.0, 1.0)),
             Case("(B=2, T=4, V=8) logits, (2, 4) targets, T=3, alpha=0.7", (s3, t3, y3, 3.0, 0.7))]
    return check_function("distillation_loss", fn, reference=distill.distillation_loss, cases=cases,
                          rtol=1e-4, atol=1e-6,
                          hint="KL(p||q) = sum p * (log p - log q) with p the TEACHER's softened distribution; average "
                               "it over positions (not over positions × vocabulary), multiply by T**2, and take "
                               "the cross-entropy of the student's UNSOFTENED logits (T=1). Flatten (B, T, V) to "
                               "(B*T, V) first.")


EXERCISES = {"soften": check_soften, "distillation_loss": check_distillation_loss}
