"""Lesson 08 exercises: greedy verification of a draft, and the expected speedup of speculative decoding.

- `verify_greedy(target_logits, drafts)`: keep the drafts while they equal the target's argmax, then add the
  target's own token; return (number accepted, next token) (checked against `speculative.verify_greedy`).
- `predicted_speedup(alpha, gamma, c)`: (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma*c + 1)), including alpha = 1
  (checked against `speculative.expected_speedup`).
"""
from __future__ import annotations

import torch

from .. import speculative
from . import Case, check_function


def _round(k: int, V: int, agree: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target logits (k+1, V) and k drafts of which exactly the first `agree` equal the target's argmax."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(k + 1, V, generator=g)
    best = logits.argmax(-1)
    drafts = best[:k].clone()
    if agree < k:
        drafts[agree] = (best[agree] + 1 + torch.randint(0, V - 1, (), generator=g)) % V  # any other token
        drafts[agree + 1:] = torch.randint(0, V, (k - agree - 1,), generator=g)
    return logits, drafts


def check_verify_greedy(fn) -> bool | None:
    """`fn(target_logits (k+1, V), drafts (k,)) -> (accepted: int, next_token: int)` against the library."""
    cases = [Case("k=4, the first 2 drafts agree", _round(4, 11, 2, seed=0)),
             Case("k=4, every draft agrees (the bonus token comes from the last row)", _round(4, 11, 4, seed=1)),
             Case("k=3, the first draft is already wrong", _round(3, 9, 0, seed=2)),
             Case("k=5, only the last draft is wrong", _round(5, 13, 4, seed=3)),
             Case("k=1, it agrees", _round(1, 7, 1, seed=4)),
             Case("k=0 (nothing drafted: the target's token alone)", _round(0, 7, 0, seed=5)),
             Case("k=6, a later draft matches by chance after a mismatch (it must not count)",
                  (lambda lg, d: (lg, torch.cat([d[:3], lg[3:6].argmax(-1)])))(*_round(6, 10, 2, seed=6)))]

    def same(got, want):
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return f"the result should be a pair (accepted, next_token), got {got!r}"
        got = tuple(int(x) if isinstance(x, torch.Tensor) and x.numel() == 1 else x for x in got)
        return None if tuple(got) == tuple(want) else f"(accepted, next_token) is {got}, expected {tuple(want)}"

    return check_function("verify_greedy", fn, reference=speculative.verify_greedy, cases=cases, compare=same,
                          hint="row i of target_logits is the target's prediction after the prefix plus drafts[:i]; "
                               "count drafts while drafts[i] == argmax of row i and stop at the first mismatch; the "
                               "next token is the TARGET's argmax of the row where you stopped (row k when all agree)"
                               ", never the rejected draft.")


def check_predicted_speedup(fn) -> bool | None:
    """`fn(alpha, gamma, c) -> float` against `speculative.expected_speedup`."""
    cases = [Case("alpha=0.8, gamma=4, c=0.1", (0.8, 4, 0.1)),
             Case("alpha=0.5, gamma=1, c=0.5 (break-even)", (0.5, 1, 0.5)),
             Case("alpha=0.6, gamma=3, c=0.25", (0.6, 3, 0.25)),
             Case("alpha=0 (every draft rejected)", (0.0, 4, 0.05)),
             Case("alpha=1 (every draft accepted: the formula's 0/0 needs its limit)", (1.0, 5, 0.1)),
             Case("gamma=0 (no drafting)", (0.7, 0, 0.3)),
             Case("free draft, c=0", (0.9, 8, 0.0))]
    return check_function("predicted_speedup", fn, reference=speculative.expected_speedup, cases=cases,
                          rtol=1e-9, atol=1e-12,
                          hint="tokens per round = 1 + alpha + ... + alpha^gamma = (1 - alpha^(gamma+1)) / (1 - alpha) "
                               "(gamma + 1 when alpha = 1); a round costs gamma draft steps at c each plus one target "
                               "pass: divide by (gamma * c + 1).")


EXERCISES = {"verify_greedy": check_verify_greedy, "predicted_speedup": check_predicted_speedup}
