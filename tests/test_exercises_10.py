"""Lesson 10's code exercises: the reference solutions pass, blanks are "not attempted", plausible mistakes raise,
and the notebook defines each function and calls its check."""
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lifecycle.exercises import ExerciseError
from lifecycle.exercises.lesson10 import EXERCISES, check_max_batch, check_serving_summary
from test_exercises_01_05 import solution

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_serve_millions.ipynb"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_solution_passes(name):
    assert EXERCISES[name](getattr(solution("10"), name)) is True


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_blank_is_not_attempted(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError
    assert EXERCISES[name](blank) is None
    assert "not attempted" in capsys.readouterr().out


def _summary(tpot_divisor=lambda n: n - 1, span="run", keep_single=False):
    def fn(arrivals, first_tokens, finishes, n_tokens):
        a, f, e, n = (np.asarray(x, dtype=float) for x in (arrivals, first_tokens, finishes, n_tokens))
        many = n > 0 if keep_single else n > 1
        tpot = (e[many] - f[many]) / np.maximum(tpot_divisor(n[many]), 1)
        seconds = e.max() - a.min() if span == "run" else (e - a).sum()
        return {"throughput_tok_s": float(n.sum() / seconds), "latency_p95_s": float(np.percentile(e - a, 95)),
                "tpot_p50_s": float(np.percentile(tpot, 50))}
    return fn


@pytest.mark.parametrize("wrong", [_summary(tpot_divisor=lambda n: n),  # divides by every token, the first too
                                   _summary(span="sum of latencies"),  # throughput of one request at a time
                                   _summary(keep_single=True)],  # counts one-token answers as TPOT 0
                         ids=["tpot over n", "throughput over summed latencies", "one-token answers in TPOT"])
def test_wrong_serving_summaries_raise(wrong):
    with pytest.raises(ExerciseError):
        check_serving_summary(wrong)


def _batch(kv_factor=2, layers=True, rounding=int, weights=True):
    def fn(memory_bytes, n_params, bytes_per_param, n_layer, n_kv_heads, head_dim, context, bytes_per_value):
        kv = kv_factor * (n_layer if layers else 1) * n_kv_heads * head_dim * context * bytes_per_value
        free = memory_bytes - (n_params * bytes_per_param if weights else 0)
        return int(rounding(free / kv))
    return fn


@pytest.mark.parametrize("wrong", [_batch(kv_factor=1), _batch(layers=False), _batch(rounding=round),
                                   _batch(weights=False)],
                         ids=["keys only", "one layer", "rounded, not floored", "weights forgotten"])
def test_wrong_max_batch_raise(wrong):
    with pytest.raises(ExerciseError):
        check_max_batch(wrong)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_notebook_defines_the_function_and_calls_its_check(name):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    blanks = [s for s in code if s.lstrip().startswith(f"def {name}(")]
    assert len(blanks) == 1 and "raise NotImplementedError" in blanks[0]
    calling = [s for s in code if f"check_{name}({name})" in s]
    assert calling and "from lifecycle.exercises.lesson10 import" in calling[0]
    assert code.index(blanks[0]) < code.index(calling[0])
