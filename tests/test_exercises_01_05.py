"""Code exercises of lessons 01-05: every check passes its reference solution, reports a blank as not attempted
(None), and raises ExerciseError on plausibly wrong versions; each notebook defines the function and calls the
check. The last tests cover the registry of every lesson (01-09): each `EXERCISES` entry is in its notebook and
has a solution with the notebook's signature."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import math
import pkgutil
import warnings
from pathlib import Path

import nbformat
import pytest
import torch
import torch.distributed as dist

import lifecycle.exercises as exercises_pkg
from lifecycle.exercises import ExerciseError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"


def solution(lesson: str):
    """notebooks/solutions/lessonNN.py, loaded by path (it is not a package)."""
    path = SOLUTIONS / f"lesson{lesson}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_lesson{lesson}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blank(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError


def checks(lesson: str):
    return importlib.import_module(f"lifecycle.exercises.lesson{lesson}")


# ---- wrong versions, one plausible mistake each ----

def schedule_warmup_from_zero(step, lr, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return lr * step / warmup_iters  # off by one: step 0 gets a rate of 0
    return solution("01").lr_schedule(step, lr, min_lr, warmup_iters, max_iters)


def schedule_decays_to_zero(step, lr, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    progress = min(1.0, (step - warmup_iters) / max(1, max_iters - warmup_iters))
    return 0.5 * (1 + math.cos(math.pi * progress)) * lr


def schedule_not_capped(step, lr, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    progress = (step - warmup_iters) / max(1, max_iters - warmup_iters)  # past max_iters the cosine rises again
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def schedule_linear(step, lr, min_lr, warmup_iters, max_iters):
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    progress = min(1.0, (step - warmup_iters) / max(1, max_iters - warmup_iters))
    return lr - progress * (lr - min_lr)


def adamw_no_bias_correction(param, grad, exp_avg, exp_avg_sq, step, lr=2e-3, betas=(0.9, 0.95), eps=1e-8,
                             weight_decay=0.1):
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m, v = b1 * exp_avg + (1 - b1) * grad, b2 * exp_avg_sq + (1 - b2) * grad ** 2
    return param - lr * m / (v.sqrt() + eps), m, v


def adamw_l2(param, grad, exp_avg, exp_avg_sq, step, lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    b1, b2 = betas
    grad = grad + weight_decay * param  # Adam with L2 regularisation, not AdamW
    m, v = b1 * exp_avg + (1 - b1) * grad, b2 * exp_avg_sq + (1 - b2) * grad ** 2
    mh, vh = m / (1 - b1 ** step), v / (1 - b2 ** step)
    return param - lr * mh / (vh.sqrt() + eps), m, v


def adamw_eps_inside_sqrt(param, grad, exp_avg, exp_avg_sq, step, lr=2e-3, betas=(0.9, 0.95), eps=1e-8,
                          weight_decay=0.1):
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m, v = b1 * exp_avg + (1 - b1) * grad, b2 * exp_avg_sq + (1 - b2) * grad ** 2
    mh, vh = m / (1 - b1 ** step), v / (1 - b2 ** step)
    return param - lr * mh / (vh + eps).sqrt(), m, v


def adamw_fixed_betas(param, grad, exp_avg, exp_avg_sq, step, lr=2e-3, betas=(0.9, 0.95), eps=1e-8,
                      weight_decay=0.1):
    return solution("01").adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, (0.9, 0.95), eps, weight_decay)


def average_sum_only(model):
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def average_divides_by_rank(model):
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_rank() + 1


def average_weights_not_grads(model):
    for p in model.parameters():
        dist.all_reduce(p.data)
        p.data /= dist.get_world_size()


def average_flat_bucket(model):
    """Correct, the way DDP does it: one flat buffer (a bucket), one all-reduce."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    i = 0
    for g in grads:
        g.copy_(flat[i:i + g.numel()].view_as(g))
        i += g.numel()


def accumulate_unscaled(model, x, y, micro_batches):
    model.zero_grad()
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        model(xs, ys)[1].backward()


def accumulate_without_zeroing(model, x, y, micro_batches):
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        (model(xs, ys)[1] / micro_batches).backward()


def accumulate_zeroing_each_slice(model, x, y, micro_batches):
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        model.zero_grad()
        (model(xs, ys)[1] / micro_batches).backward()


def top_p_drops_crossing_token(logits, top_p):
    probs = logits.float().softmax(-1)
    sp, order = probs.sort(-1, descending=True)
    sp = sp.masked_fill(sp.cumsum(-1) > top_p, 0.0)  # also drops the token that crosses top_p
    kept = torch.zeros_like(probs).scatter(-1, order, sp)
    return kept / kept.sum(-1, keepdim=True).clamp(min=1e-12)


def top_p_not_renormalised(logits, top_p):
    probs = logits.float().softmax(-1)
    sp, order = probs.sort(-1, descending=True)
    sp = sp.masked_fill(sp.cumsum(-1) - sp >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sp)


def decode_attends_whole_cache(q, k_new, v_new, cache_k, cache_v, pos):
    cache_k[:, :, pos], cache_v[:, :, pos] = k_new[:, :, 0], v_new[:, :, 0]
    return (q @ cache_k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ cache_v


def decode_without_writing(q, k_new, v_new, cache_k, cache_v, pos):
    keys = torch.cat([cache_k[:, :, :pos], k_new], dim=2)  # right answer, but the cache is never written
    values = torch.cat([cache_v[:, :, :pos], v_new], dim=2)
    return (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ values


def decode_off_by_one(q, k_new, v_new, cache_k, cache_v, pos):
    cache_k[:, :, pos], cache_v[:, :, pos] = k_new[:, :, 0], v_new[:, :, 0]
    keys, values = cache_k[:, :, :max(pos, 1)], cache_v[:, :, :max(pos, 1)]  # forgets the new position
    return (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ values


def int4_codes_to_8(w, group_size):
    out_f, in_f = w.shape
    g = w.float().reshape(out_f, in_f // group_size, group_size)
    s = (g.abs().amax(-1) / 8).clamp(min=1e-30)  # divides by 8 instead of 7
    return torch.round(g / s[..., None]).clamp(-8, 7).to(torch.int8).reshape(out_f, in_f), s


def int4_per_row(w, group_size):
    s = (w.abs().amax(1, keepdim=True) / 7).clamp(min=1e-30)  # one scale per row, whatever group_size says
    q = torch.round(w / s).clamp(-7, 7).to(torch.int8)
    return q, s.expand(-1, w.shape[1] // group_size).contiguous()


def int4_nan_on_zero_group(w, group_size):
    out_f, in_f = w.shape
    g = w.float().reshape(out_f, in_f // group_size, group_size)
    s = g.abs().amax(-1) / 7  # 0 for an all-zero group: 0 / 0
    return torch.round(g / s[..., None]).clamp(-7, 7).to(torch.int8).reshape(out_f, in_f), s


def pack_swapped_nibbles(q):
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return (u[..., 0::2] << 4) | u[..., 1::2]


def pack_no_offset(q):
    u = q.to(torch.uint8) & 0x0F  # two's complement nibbles instead of q + 8
    return u[..., 0::2] | (u[..., 1::2] << 4)


def pack_wrong_dtype(q):
    u = (q.to(torch.int16) + 8)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).to(torch.int16)


def mask_without_self(key_mask):
    T = key_mask.shape[1]
    return torch.ones(T, T, dtype=torch.bool).tril()[None, None] & key_mask[:, None, None, :]


def mask_on_queries(key_mask):
    T = key_mask.shape[1]
    m = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & key_mask[:, None, :, None]
    return m | torch.eye(T, dtype=torch.bool)


def mask_transposed(key_mask):
    T = key_mask.shape[1]
    m = torch.ones(T, T, dtype=torch.bool).triu()[None, None] & key_mask[:, None, None, :]
    return m | torch.eye(T, dtype=torch.bool)


def admit_with_padding(model, prompts, slots):
    from lifecycle.batching import prefill_padded
    from lifecycle.model import KVCache

    T = max(len(p) for p in prompts)
    tmp = KVCache.for_model(model, len(prompts), max_len=T)
    first = prefill_padded(model, prompts, tmp).argmax(-1).tolist()
    for i in range(len(prompts)):
        slots.insert(tmp, i, T)  # copies the padding columns too
    return first


def admit_one_at_a_time(model, prompts, slots):
    """Correct too: prefill each prompt alone (no padding), then insert it."""
    from lifecycle.generate import prefill
    from lifecycle.model import KVCache

    first = []
    for p in prompts:
        tmp = KVCache.for_model(model, 1, max_len=len(p))
        first.append(int(prefill(model, torch.tensor([p]), tmp).argmax(-1)))
        slots.insert(tmp, 0, len(p))
    return first


def admit_first_column(model, prompts, slots):
    from lifecycle.batching import left_pad
    from lifecycle.model import KVCache

    tmp = KVCache.for_model(model, len(prompts), max_len=max(len(p) for p in prompts))
    idx, key_mask, positions = left_pad(prompts)
    logits, _ = model(idx, cache=tmp, positions=positions, key_mask=key_mask)
    first = logits[:, 0].argmax(-1).tolist()  # the first column's prediction, not the last
    for i, p in enumerate(prompts):
        slots.insert(tmp, i, len(p))
    return first


# lesson, exercise name, wrong versions that must raise, other right versions that must pass
EXERCISES = [
    ("01", "lr_schedule",
     [schedule_warmup_from_zero, schedule_decays_to_zero, schedule_not_capped, schedule_linear], []),
    ("01", "adamw_step", [adamw_no_bias_correction, adamw_l2, adamw_eps_inside_sqrt, adamw_fixed_betas], []),
    ("02", "average_gradients", [average_sum_only, average_divides_by_rank, average_weights_not_grads],
     [average_flat_bucket]),
    ("02", "accumulate_gradients", [accumulate_unscaled, accumulate_without_zeroing, accumulate_zeroing_each_slice],
     []),
    ("03", "top_p_probs", [top_p_drops_crossing_token, top_p_not_renormalised], []),
    ("03", "decode_attention", [decode_attends_whole_cache, decode_without_writing, decode_off_by_one], []),
    ("04", "quantize_int4_groups", [int4_codes_to_8, int4_per_row, int4_nan_on_zero_group], []),
    ("04", "pack_int4", [pack_swapped_nibbles, pack_no_offset, pack_wrong_dtype], []),
    ("05", "padded_causal_mask", [mask_without_self, mask_on_queries, mask_transposed], []),
    ("05", "admit", [admit_with_padding, admit_first_column], [admit_one_at_a_time]),
]
IDS = [f"{lesson}-{name}" for lesson, name, _, _ in EXERCISES]


@pytest.mark.parametrize("lesson,name,wrong,right", EXERCISES, ids=IDS)
def test_reference_solution_passes(lesson, name, wrong, right, capsys):
    check = getattr(checks(lesson), f"check_{name}")
    assert check(getattr(solution(lesson), name)) is True
    assert "correct" in capsys.readouterr().out
    for fn in right:
        assert check(fn) is True, fn.__name__


@pytest.mark.parametrize("lesson,name,wrong,right", EXERCISES, ids=IDS)
def test_blank_is_not_attempted(lesson, name, wrong, right, capsys):
    assert getattr(checks(lesson), f"check_{name}")(blank) is None
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("lesson,name,wrong,right", EXERCISES, ids=IDS)
def test_wrong_versions_raise_with_a_hint(lesson, name, wrong, right):
    check = getattr(checks(lesson), f"check_{name}")
    for fn in wrong:
        with pytest.raises(ExerciseError, match=rf"{name}: .*Hint: ") as info:
            check(fn)
        assert "case" in str(info.value), fn.__name__


@pytest.mark.parametrize("lesson,name", [(lesson, name) for lesson, name, _, _ in EXERCISES[:3]])
def test_not_a_function_is_refused(lesson, name):
    with pytest.raises(ExerciseError, match="pass your function itself"):
        getattr(checks(lesson), f"check_{name}")(None)


def test_simulated_ranks_leave_torch_distributed_as_it_was():
    from lifecycle.exercises.lesson02 import check_average_gradients

    before = (dist.all_reduce, dist.get_world_size, dist.get_rank, dist.is_initialized)
    with pytest.raises(ExerciseError):
        check_average_gradients(average_sum_only)
    assert (dist.all_reduce, dist.get_world_size, dist.get_rank, dist.is_initialized) == before


def test_ranks_that_disagree_are_reported_not_hung():
    from lifecycle.exercises import lesson02

    def rank_dependent(model):  # rank 0 all-reduces one tensor, the others none: a real run would hang
        if dist.get_rank() == 0:
            dist.all_reduce(next(model.parameters()).grad)

    lesson02._BARRIER_TIMEOUT_S, saved = 1.0, lesson02._BARRIER_TIMEOUT_S
    try:
        with pytest.raises(ExerciseError):
            lesson02.check_average_gradients(rank_dependent)
    finally:
        lesson02._BARRIER_TIMEOUT_S = saved


# ---- the notebooks ----

def notebook_of(lesson: str) -> nbformat.NotebookNode:
    paths = sorted(NOTEBOOKS.glob(f"{lesson}_*.ipynb"))
    assert len(paths) == 1, f"expected one notebook {lesson}_*.ipynb for exercises.lesson{lesson}, found {paths}"
    return nbformat.read(paths[0], as_version=4)


def defined_functions(nb) -> dict[str, tuple[ast.FunctionDef, str]]:
    """Top-level functions defined in the notebook's code cells: name → (definition, cell source)."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            with warnings.catch_warnings():  # a cell's own string escapes are not this test's business
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                out[node.name] = (node, cell.source)
    return out


def check_calls(nb) -> set[tuple[str, str]]:
    """(check function, argument name) of every `check_x(y)` call in the notebook's code cells."""
    calls = set()
    for cell in nb.cells:
        if cell.cell_type != "code" or "check_" not in cell.source:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("check_")
                    and len(node.args) == 1 and isinstance(node.args[0], ast.Name)):
                calls.add((node.func.id, node.args[0].id))
    return calls


@pytest.mark.parametrize("lesson,name", [(lesson, name) for lesson, name, _, _ in EXERCISES], ids=IDS)
def test_notebook_has_the_blank_and_calls_the_check(lesson, name):
    nb = notebook_of(lesson)
    fn, source = defined_functions(nb)[name]
    assert "raise NotImplementedError" in source and "YOUR CODE HERE" in source, "the committed cell keeps the blank"
    assert (f"check_{name}", name) in check_calls(nb)
    imports = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f"from lifecycle.exercises.lesson{lesson} import" in imports and f"check_{name}" in imports


# ---- every lesson's registry (01-09, whichever modules exist) ----

LESSON_MODULES = sorted(m.name for m in pkgutil.iter_modules(exercises_pkg.__path__) if m.name.startswith("lesson"))


def test_lessons_01_to_05_have_exercise_modules():
    assert {f"lesson0{n}" for n in range(1, 6)} <= set(LESSON_MODULES)


@pytest.mark.parametrize("module_name", LESSON_MODULES)
def test_registry_entries_are_in_the_notebook_and_solved(module_name):
    lesson = module_name.removeprefix("lesson")
    module = importlib.import_module(f"lifecycle.exercises.{module_name}")
    assert module.__doc__, f"{module_name} needs a docstring saying what its exercises are"
    assert len(module.EXERCISES) >= 2, f"lesson {lesson} needs at least two code exercises"
    nb = notebook_of(lesson)
    blanks, calls, sol = defined_functions(nb), check_calls(nb), solution(lesson)
    for name, check in module.EXERCISES.items():
        assert check is getattr(module, f"check_{name}"), f"EXERCISES[{name!r}] should be check_{name}"
        assert name in blanks, f"notebook {lesson} does not define {name}()"
        assert (f"check_{name}", name) in calls, f"notebook {lesson} never calls check_{name}({name})"
        assert callable(getattr(sol, name, None)), f"solutions/lesson{lesson}.py has no {name}()"
        blank_args = [a.arg for a in blanks[name][0].args.args]
        assert list(inspect.signature(getattr(sol, name)).parameters) == blank_args, \
            f"{name}: the solution's parameters differ from the notebook's"


@pytest.mark.parametrize("lesson,name", [("02", "average_gradients"), ("02", "accumulate_gradients"), ("05", "admit")])
def test_checks_leave_the_global_random_state_alone(lesson, name):
    state = torch.random.get_rng_state()
    getattr(checks(lesson), f"check_{name}")(getattr(solution(lesson), name))
    assert torch.equal(torch.random.get_rng_state(), state)
