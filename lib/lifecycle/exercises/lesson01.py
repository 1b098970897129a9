"""Lesson 01 exercises: two pieces of the training loop that the lesson runs through library calls.

- `lr_schedule(step, lr, min_lr, warmup_iters, max_iters)`: the learning rate of step `step`, linear warmup then
  cosine decay to min_lr (checked at every step of several runs against `train.lr_at`, the schedule the loop uses).
- `adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay)`: one AdamW update of one
  tensor, returning the new weights and both moments (checked against `torch.optim.AdamW`, the optimizer
  `lifecycle.train.make_optimizer` builds).
"""
from __future__ import annotations

import torch

from ..train import TrainConfig, lr_at
from . import Case, adapt, check_function


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- 1. the learning-rate schedule ----

def _schedule(fn):
    """Run a schedule function at every step of a run (and a few after its end): {"lr at step s": value}."""
    def run(lr, min_lr, warmup_iters, max_iters):
        return {f"lr at step {s}": fn(s, lr, min_lr, warmup_iters, max_iters) for s in range(max_iters + 5)}
    return run


def _library_schedule(step, lr, min_lr, warmup_iters, max_iters):
    return lr_at(step, TrainConfig(lr=lr, min_lr=min_lr, warmup_iters=warmup_iters, max_iters=max_iters))


def check_lr_schedule(fn) -> bool | None:
    """`fn(step, lr, min_lr, warmup_iters, max_iters) -> float` at every step, against `train.lr_at`."""
    cases = [Case("lr=1e-3 to 1e-4, 10 warmup steps, 50 steps in all", (1e-3, 1e-4, 10, 50)),
             Case("the teacher's recipe: 2.5e-3 to 2e-4, 100 warmup steps, 2,600 steps", (2.5e-3, 2e-4, 100, 2600)),
             Case("one warmup step", (3e-4, 3e-5, 1, 20)),
             Case("no warmup at all (warmup_iters=0)", (1e-3, 1e-4, 0, 30)),
             Case("min_lr = lr (a constant rate after warmup)", (5e-4, 5e-4, 5, 20))]
    return check_function("lr_schedule", adapt(fn, _schedule), reference=_schedule(_library_schedule), cases=cases,
                          rtol=1e-9, atol=1e-12,
                          hint="warmup: at step s < warmup_iters the rate is lr * (s + 1) / warmup_iters (step 0 "
                               "already moves the weights); after it, progress = (s - warmup_iters) / (max_iters - "
                               "warmup_iters), capped at 1, and the rate is min_lr + 0.5 * (1 + cos(pi * progress)) "
                               "* (lr - min_lr): it ends at min_lr, not at 0, and stays there after max_iters.")


# ---- 2. one AdamW step ----

def reference_adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=2e-3, betas=(0.9, 0.95), eps=1e-8,
                         weight_decay=0.1):
    """One `torch.optim.AdamW` step from the given state; returns (new param, new exp_avg, new exp_avg_sq)."""
    p = torch.nn.Parameter(param.detach().clone())
    p.grad = grad.detach().clone()
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
    # `step` counts this update (1 for the first); the optimizer stores how many it has already done
    opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": exp_avg.clone(),
                    "exp_avg_sq": exp_avg_sq.clone()}
    opt.step()
    state = opt.state[p]
    return p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()


def _named(fn):
    """Call an AdamW step and name its three results, so a wrong one is reported by name."""
    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, (tuple, list)) and len(out) == 3:
            return dict(zip(("param", "exp_avg", "exp_avg_sq"), out))
        return out
    return run


def check_adamw_step(fn) -> bool | None:
    """`fn(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay) -> (param, exp_avg, exp_avg_sq)`."""
    zeros = torch.zeros(4, 3)
    w, g = _randn(4, 3, seed=0), _randn(4, 3, seed=1, scale=0.1)
    m, v = _randn(4, 3, seed=2, scale=0.05), _randn(4, 3, seed=3, scale=0.05) ** 2
    b, gb = _randn(8, seed=4), _randn(8, seed=5, scale=0.1)
    tiny = _randn(5, seed=6, scale=1e-6)
    cases = [Case("first step (step=1, moments start at zero), a 4×3 weight", (w, g, zeros, zeros, 1)),
             Case("step 10, moments carried over from earlier steps", (w, g, m, v, 10)),
             Case("a bias (weight_decay=0)", (b, gb, torch.zeros(8), torch.zeros(8), 1),
                  dict(weight_decay=0.0)),
             Case("other settings: lr=0.1, betas=(0.8, 0.99), weight_decay=0.5, step 3", (w, g, m, v, 3),
                  dict(lr=0.1, betas=(0.8, 0.99), weight_decay=0.5)),
             Case("tiny gradients (1e-6), where eps matters", (b[:5], tiny, torch.zeros(5), torch.zeros(5), 1),
                  dict(eps=1e-8))]
    return check_function("adamw_step", adapt(fn, _named), reference=_named(reference_adamw_step), cases=cases,
                          rtol=1e-5, atol=1e-7,
                          hint="in order: (1) decay the weights, param * (1 - lr * weight_decay), decoupled from the "
                               "gradient; (2) exp_avg = beta1 * exp_avg + (1 - beta1) * grad and exp_avg_sq = "
                               "beta2 * exp_avg_sq + (1 - beta2) * grad**2; (3) bias-correct both by 1 - beta**step; "
                               "(4) param -= lr * m_hat / (sqrt(v_hat) + eps), with eps OUTSIDE the square root. "
                               "Return the three new tensors.")


EXERCISES = {"lr_schedule": check_lr_schedule, "adamw_step": check_adamw_step}
