"""Code exercises: the learner writes a function the lesson is about; a check runs it against the library's own.

Each lesson's module (`lesson01`, `lesson02`, ...) holds that lesson's checks as `check_<name>(fn)` plus a registry
`EXERCISES = {"<name>": check_<name>, ...}`; reference solutions live beside the notebooks in
`notebooks/solutions/lessonNN.py`, with one function per exercise under the same `<name>`.

A check has three outcomes, so a notebook committed with its blanks still runs top to bottom:
- the learner's function still raises `NotImplementedError` (the blank as handed out): "not attempted", returns None;
- it agrees with the reference on every case: "correct", returns True;
- it disagrees, or raises anything else: `ExerciseError`, whose message names the case and what differed
  (a shape, a dtype, the first value that is off) and gives a hint.

    check_function("causal attention", attention, reference=model_attention,
                   cases=[Case("one head, T=5", (q, k, v)), ...], hint="did you scale by 1/sqrt(hs)?")

An exercise whose function works by side effect (fills gradients, writes into a cache) passes
`adapt(learner, wrapper)`: the wrapper calls the learner's function and returns what to compare, usually a dict,
so that a wrong entry is reported by name.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..checks import is_number


class ExerciseError(AssertionError):
    """The learner's function gave a wrong answer (the message says where and how)."""


@dataclass(frozen=True)
class Case:
    """One input to try: a short label the learner can read, positional and keyword arguments."""
    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def difference(got: Any, want: Any, *, rtol: float = 1e-5, atol: float = 1e-6, where: str = "the result") -> str | None:
    """The first way `got` differs from `want` in words, or None when they agree (tensors, numbers, sequences, dicts)."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where} should be a tensor, got {type(got).__name__}"
        if got.shape != want.shape:
            return f"{where} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if want.dtype == torch.bool or not want.is_floating_point():
            if got.dtype != want.dtype:
                return f"{where} has dtype {got.dtype}, expected {want.dtype}"
            bad = (got != want).nonzero()
            if len(bad):
                i = tuple(bad[0].tolist())
                return f"{where}{list(i)} is {got[i].item()}, expected {want[i].item()} ({len(bad)} entries differ)"
            return None
        got_f, want_f = got.detach().double(), want.detach().double()
        close = torch.isclose(got_f, want_f, rtol=rtol, atol=atol, equal_nan=False)
        if not bool(close.all()):
            i = tuple((~close).nonzero()[0].tolist())
            n = int((~close).sum())
            return (f"{where}{list(i)} is {got_f[i].item():.6g}, expected {want_f[i].item():.6g} "
                    f"({n} of {want.numel()} entries off; largest gap {(got_f - want_f).abs().nan_to_num(math.inf).max().item():.3g})")
        return None
    if isinstance(want, bool) or want is None or isinstance(want, str):
        return None if got == want else f"{where} is {got!r}, expected {want!r}"
    if isinstance(want, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not is_number(got):
            return f"{where} should be a number, got {type(got).__name__}"
        return None if math.isclose(got, want, rel_tol=rtol, abs_tol=atol) else f"{where} is {got!r}, expected {want!r}"
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return f"{where} should be a dict with keys {sorted(want)}, got {sorted(got) if isinstance(got, dict) else type(got).__name__}"
        for k in want:
            d = difference(got[k], want[k], rtol=rtol, atol=atol, where=f"{where}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            n = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
            return f"{where} should be a sequence of length {len(want)}, got {n}"
        for i, (g, w) in enumerate(zip(got, want)):
            d = difference(g, w, rtol=rtol, atol=atol, where=f"{where}[{i}]")
            if d:
                return d
        return None
    return None if got == want else f"{where} is {got!r}, expected {want!r}"


def adapt(learner: Any, adapter: Callable[[Callable], Callable]) -> Any:
    """`adapter(learner)` when the learner passed a function, else `learner` itself, so that `check_function` still
    reports a non-function plainly. For exercises whose function works by side effect (fills gradients, writes a
    cache): the adapter runs it and returns what to compare."""
    return adapter(learner) if callable(learner) else learner


def check_function(name: str, learner: Callable, *, reference: Callable, cases: Sequence[Case], hint: str = "",
                   rtol: float = 1e-5, atol: float = 1e-6,
                   compare: Callable[[Any, Any], str | None] | None = None) -> bool | None:
    """Run `learner` and `reference` on every case (each on its own copy of the inputs) and compare the results.

    Returns None when the learner's function is still the blank (raises NotImplementedError), True when it agrees on
    every case; raises ExerciseError on the first case where it does not. `compare(got, want)` replaces the default
    comparison when an exercise needs its own (it returns a description of the difference, or None).
    """
    if not callable(learner):
        raise ExerciseError(f"{name}: pass your function itself (e.g. `check(my_fn)`), not {type(learner).__name__}")
    for case in cases:
        try:
            got = learner(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            print(f"{name}: not attempted yet. Fill in the function above, run its cell, then run this check again. "
                  "Until then the lesson uses the library's version.")
            return None
        except Exception as e:
            raise ExerciseError(f"{name}: your function raised {type(e).__name__}: {e} (case: {case.label})."
                                + (f" Hint: {hint}" if hint else "")) from e
        want = reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        diff = (compare or (lambda g, w: difference(g, w, rtol=rtol, atol=atol)))(got, want)
        if diff:
            raise ExerciseError(f"{name}: wrong on case '{case.label}': {diff}." + (f" Hint: {hint}" if hint else ""))
    print(f"{name}: correct on all {len(cases)} cases.")
    return True
