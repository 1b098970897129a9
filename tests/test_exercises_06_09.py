"""Lessons 06-09's code exercises: each check passes the reference solution, reports a blank as not attempted,
raises on plausibly wrong versions, and the notebook's cells define the function and call its check."""
import importlib
import importlib.util
import math
from collections import OrderedDict
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from lifecycle.exercises import ExerciseError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"06": "06_distillation", "07": "07_caching", "08": "08_speculative_decoding",
             "09": "09_lifecycle_costs"}


def solutions(lesson: str):
    spec = importlib.util.spec_from_file_location(f"solutions_{lesson}", ROOT / "notebooks" / "solutions"
                                                  / f"lesson{lesson}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks(lesson: str):
    return importlib.import_module(f"lifecycle.exercises.lesson{lesson}").EXERCISES


ALL = [(lesson, name) for lesson in NOTEBOOKS for name in checks(lesson)]


@pytest.mark.parametrize("lesson,name", ALL)
def test_reference_solution_passes(lesson, name):
    assert checks(lesson)[name](getattr(solutions(lesson), name)) is True


@pytest.mark.parametrize("lesson,name", ALL)
def test_blank_is_not_attempted(lesson, name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError
    assert checks(lesson)[name](blank) is None
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("lesson,name", ALL)
def test_notebook_defines_the_function_and_calls_its_check(lesson, name):
    nb = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOKS[lesson]}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    blanks = [s for s in code if s.lstrip().startswith(f"def {name}(")]
    assert len(blanks) == 1, f"one exercise cell should define {name}"
    assert "raise NotImplementedError" in blanks[0]
    call = f"check_{name}({name})"
    calling = [s for s in code if call in s]
    assert calling and f"from lifecycle.exercises.lesson{lesson} import" in calling[0]
    assert code.index(blanks[0]) < code.index(calling[0])  # the check runs after the learner's cell


def wrong(lesson: str, name: str, fn):
    with pytest.raises(ExerciseError, match=name):
        checks(lesson)[name](fn)


# ---- lesson 06 ----

def test_soften_catches_a_missing_temperature_and_the_wrong_axis_and_overflow():
    wrong("06", "soften", lambda z, T: torch.softmax(z, dim=-1))
    wrong("06", "soften", lambda z, T: torch.softmax(z / T, dim=0))
    wrong("06", "soften", lambda z, T: torch.exp(z / T) / torch.exp(z / T).sum(-1, keepdim=True))  # nan at ±1000


def test_distillation_loss_catches_a_missing_t_squared_a_reversed_kl_and_a_sum():
    sol = solutions("06")

    def no_t2(s, t, y, T, a):
        return sol.distillation_loss(s, t, y, T, a) - a * (T ** 2 - 1) * kl(s, t, T)

    def kl(s, t, T, reverse=False):
        V = s.size(-1)
        lq, lp = (torch.log_softmax(x.float().reshape(-1, V) / T, -1) for x in (s, t))
        if reverse:
            lq, lp = lp, lq
        return (lp.exp() * (lp - lq)).sum(-1).mean()

    def reversed_kl(s, t, y, T, a):
        return sol.distillation_loss(s, t, y, T, a) + a * T ** 2 * (kl(s, t, T, True) - kl(s, t, T))

    def summed_over_positions(s, t, y, T, a):
        n = s.numel() // s.size(-1)
        return sol.distillation_loss(s, t, y, T, a) + a * T ** 2 * (n - 1) * kl(s, t, T)

    def soft_labels(s, t, y, T, a):  # cross-entropy on the softened student
        return sol.distillation_loss(s / T, t / T, y, 1.0, a) * 1.0

    for fn in (no_t2, reversed_kl, summed_over_positions, soft_labels):
        wrong("06", "distillation_loss", fn)


# ---- lesson 07 ----

def fifo_hits(requests, capacity):  # forgets to refresh recency on a hit
    cache, hits = OrderedDict(), []
    for key in requests:
        hits.append(key in cache)
        if key not in cache:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits


def test_lru_hits_catches_fifo_off_by_one_and_mru_eviction():
    sol = solutions("07")
    wrong("07", "lru_hits", fifo_hits)
    wrong("07", "lru_hits", lambda r, c: sol.lru_hits(r, c - 1) if c > 1 else sol.lru_hits(r, c))  # evicts early
    wrong("07", "lru_hits", lambda r, c: sol.lru_hits(r, c + 1))

    def evicts_newest(requests, capacity):
        cache, hits = OrderedDict(), []
        for key in requests:
            hits.append(key in cache)
            if key in cache:
                cache.move_to_end(key)
            else:
                if len(cache) >= capacity:
                    cache.popitem(last=True)
                cache[key] = None
        return hits
    wrong("07", "lru_hits", evicts_newest)


def test_che_hit_rate_catches_ignored_one_offs_and_the_occupancy_as_the_answer():
    sol = solutions("07")
    wrong("07", "che_hit_rate", lambda p, C, o=0.0: sol.che_hit_rate(p, C, 0.0))
    wrong("07", "che_hit_rate", lambda p, C, o=0.0: (1 - o) * sol.che_hit_rate(p, C, 0.0))

    def share_of_items_cached(p, C, o=0.0):  # returns the average occupancy probability, not the hit rate
        return min(1.0, C / len(p))
    wrong("07", "che_hit_rate", share_of_items_cached)


# ---- lesson 08 ----

def test_verify_greedy_catches_off_by_one_the_rejected_draft_and_counting_all_matches():
    def returns_draft(logits, drafts):
        best = logits.argmax(-1).tolist()
        j = 0
        while j < len(drafts) and int(drafts[j]) == best[j]:
            j += 1
        return j, int(drafts[j]) if j < len(drafts) else best[j]

    def counts_every_match(logits, drafts):
        best = logits.argmax(-1)
        j = int((drafts == best[:len(drafts)]).sum())
        return j, int(best[j])

    def next_row(logits, drafts):
        best = logits.argmax(-1).tolist()
        j = 0
        while j < len(drafts) and int(drafts[j]) == best[j]:
            j += 1
        return j, best[min(j + 1, len(best) - 1)]

    for fn in (returns_draft, counts_every_match, next_row):
        wrong("08", "verify_greedy", fn)


def test_predicted_speedup_catches_a_wrong_exponent_a_missing_one_and_alpha_one():
    wrong("08", "predicted_speedup", lambda a, g, c: (1 - a ** g) / (1 - a) / (g * c + 1) if a < 1 else g / (g * c + 1))
    wrong("08", "predicted_speedup", lambda a, g, c: (1 - a ** (g + 1)) / (1 - a) / (g * c) if g else 1.0)
    wrong("08", "predicted_speedup", lambda a, g, c: (1 - a ** (g + 1)) / (1 - a) / (g * c + 1))  # 0/0 at alpha = 1


# ---- lesson 09 ----

def test_break_even_day_catches_ignored_retraining_and_zero_traffic():
    wrong("09", "break_even_day", lambda t, d, r=0.0: t / d if d else math.inf)
    wrong("09", "break_even_day", lambda t, d, r=0.0: t / d if d and (r == 0 or t / d < r) else 0.0)
    wrong("09", "break_even_day", lambda t, d, r=0.0: (t / d if r == 0 or t / d < r else math.inf) if d else 0.0)


def test_training_share_catches_miscounted_runs():
    def floor_runs(q, u, t, life, r=0.0):
        runs = 1 if r == 0 else life // r
        return runs * t / (runs * t + q * u * life)

    def one_run(q, u, t, life, r=0.0):
        return t / (t + q * u * life)

    def runs_plus_one(q, u, t, life, r=0.0):
        runs = 1 if r == 0 else life // r + 1
        return runs * t / (runs * t + q * u * life)

    for fn in (floor_runs, one_run, runs_plus_one):
        wrong("09", "training_share", fn)


def test_checks_reject_a_non_function():
    with pytest.raises(ExerciseError, match="pass your function"):
        checks("07")["lru_hits"]([True, False])


def test_every_case_label_is_readable():
    """A wrong answer names its case: each check's message carries the label of the first failing case."""
    with pytest.raises(ExerciseError, match="case 'alpha=1"):
        checks("08")["predicted_speedup"](lambda a, g, c: (1 - a ** (g + 1)) / (1 - a + 1e-300) / (g * c + 1))


@pytest.mark.parametrize("lesson,name", ALL)
def test_checks_leave_the_global_random_state_alone(lesson, name):
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    checks(lesson)[name](getattr(solutions(lesson), name))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
