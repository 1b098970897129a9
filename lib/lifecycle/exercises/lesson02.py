"""Lesson 02 exercises: the gradient arithmetic of data parallelism.

- `average_gradients(model)`: what DDP does after every backward pass, by hand: all-reduce each parameter's
  gradient with `torch.distributed.all_reduce` and divide by the world size. The check runs the learner's function
  on W ranks at once, as threads of this process, with `torch.distributed`'s `all_reduce`, `get_world_size` and
  `get_rank` temporarily replaced by a simulated collective (a real sum over the ranks' tensors, met at a barrier,
  like gloo's). Each rank holds the gradient of its own shard (`distributed.shard_rows`); the result must be the
  gradient of the whole global batch, which is the lesson's claim.
- `accumulate_gradients(model, x, y, micro_batches)`: the same sum on one device: backward over equal slices of the
  batch, each loss divided by their number, gives the whole batch's gradient (checked against one backward pass on
  the whole batch).
"""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist

from ..distributed import shard_rows
from ..model import GPT, preset
from . import Case, ExerciseError, adapt, check_function

_BARRIER_TIMEOUT_S = 20.0


def _tiny_model(seed: int = 0) -> GPT:
    with torch.random.fork_rng(devices=[]):  # seeded without touching the notebook's own random state
        torch.manual_seed(seed)
        return GPT(preset("test"))  # 2 layers, width 32, vocabulary 32: a backward pass takes milliseconds


def _batch(rows: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 32, (rows, T + 1), generator=g)
    return data[:, :-1], data[:, 1:]


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    """Every parameter's gradient by name (so a wrong one is reported as, e.g., "the result['lm_head.weight']")."""
    return {f"{n}.grad": None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()}


def _full_batch_grads(model: GPT, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """The gradient of the mean loss over the whole batch, in one backward pass (what one process computes)."""
    model.zero_grad(set_to_none=True)
    model(x, y)[1].backward()
    return _grads(model)


# ---- 1. average_gradients: a simulated process group ----

class _World:
    """W simulated ranks: all_reduce meets every rank at a barrier and gives each the sum (or mean) of all."""

    def __init__(self, world_size: int):
        self.size = world_size
        self.barrier = threading.Barrier(world_size, timeout=_BARRIER_TIMEOUT_S)
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.local = threading.local()

    def rank(self, group=None) -> int:
        return self.local.rank

    def world_size(self, group=None) -> int:
        return self.size

    def all_reduce(self, tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"all_reduce needs a tensor, got {type(tensor).__name__}")
        if op not in (dist.ReduceOp.SUM, dist.ReduceOp.AVG):
            raise ValueError(f"this exercise sums gradients: use op=dist.ReduceOp.SUM (the default), not {op}")
        r = self.local.rank
        self.slots[r] = tensor.detach().clone()
        self.barrier.wait()  # every rank has deposited its tensor
        shapes = {tuple(t.shape) for t in self.slots}
        if len(shapes) != 1:
            raise RuntimeError(f"the ranks all-reduced tensors of different shapes {sorted(shapes)}: every rank must "
                               "call all_reduce on the same tensors in the same order")
        total = torch.stack(self.slots).sum(0)  # rank order, like a deterministic collective
        self.barrier.wait()  # every rank has read every slot
        with torch.no_grad():
            tensor.copy_(total / self.size if op == dist.ReduceOp.AVG else total)
        return _Done() if async_op else None


class _Done:
    def wait(self, *args, **kwargs) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


@contextmanager
def _simulated(world: _World):
    saved = {name: getattr(dist, name) for name in ("all_reduce", "get_world_size", "get_rank", "is_initialized")}
    dist.all_reduce, dist.get_world_size, dist.get_rank = world.all_reduce, world.world_size, world.rank
    dist.is_initialized = lambda: True
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)


def run_on_ranks(fn, models: list[torch.nn.Module]) -> None:
    """Call fn(models[r]) on every simulated rank r at once (one thread each); re-raise the first rank's error."""
    world = _World(len(models))
    errors: list[BaseException | None] = [None] * len(models)

    def rank_main(r: int) -> None:
        world.local.rank = r
        try:
            fn(models[r])
        except BaseException as e:  # noqa: BLE001 (handed to the caller below)
            errors[r] = e
            world.barrier.abort()  # release the other ranks instead of leaving them waiting

    with _simulated(world):
        threads = [threading.Thread(target=rank_main, args=(r,), daemon=True) for r in range(len(models))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * _BARRIER_TIMEOUT_S)
    real = [e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)]
    if real:
        raise real[0]
    if any(errors) or any(t.is_alive() for t in threads):
        raise ExerciseError("average_gradients: the ranks did not all make the same all_reduce calls (one rank "
                            "waited for the others in vain); every rank must all-reduce the same tensors in the "
                            "same order")


def _ranks_backward(model: GPT, x: torch.Tensor, y: torch.Tensor, world_size: int) -> list[GPT]:
    """One copy of the model per rank, each holding the gradient of its own shard of the global batch."""
    models = []
    for r in range(world_size):
        m = copy.deepcopy(model)
        rows = shard_rows(x.shape[0], r, world_size)
        m.zero_grad(set_to_none=True)
        m(x[rows], y[rows])[1].backward()
        models.append(m)
    return models


def _learner_average(fn):
    def run(model, x, y, world_size):
        models = _ranks_backward(model, x, y, world_size)
        run_on_ranks(fn, models)
        return _grads(models[0])  # after an all-reduce every rank holds the same gradients; rank 0's are checked
    return run


def _reference_average(model, x, y, world_size):
    return _full_batch_grads(model, x, y)


def check_average_gradients(fn) -> bool | None:
    """`fn(model) -> None`, run on every simulated rank; rank 0's gradients must be the global batch's."""
    model = _tiny_model(0)
    x8, y8 = _batch(8, 12, seed=1)
    x6, y6 = _batch(6, 12, seed=2)
    cases = [Case("1 rank (nothing to average)", (model, x8, y8, 1)),
             Case("2 ranks, 4 rows each", (model, x8, y8, 2)),
             Case("4 ranks, 2 rows each", (model, x8, y8, 4)),
             Case("3 ranks, 2 rows each", (model, x6, y6, 3))]
    return check_function("average_gradients", adapt(fn, _learner_average), reference=_reference_average,
                          cases=cases, rtol=1e-4, atol=1e-6,
                          hint="for every parameter p with a gradient: dist.all_reduce(p.grad) (it SUMS in place, "
                               "over all ranks), then p.grad /= dist.get_world_size(); all-reduce the gradients, not "
                               "the weights (p.data), and call it as dist.all_reduce so the course's process group "
                               "is the one used.")


# ---- 2. gradient accumulation ----

def _learner_accumulate(fn):
    def run(model, x, y, micro_batches, stale=None):
        if stale is not None:  # gradients left over from an earlier step (deepcopy does not copy .grad)
            for n, p in model.named_parameters():
                p.grad = stale[n].clone()
        fn(model, x, y, micro_batches)
        return _grads(model)
    return run


def _reference_accumulate(model, x, y, micro_batches, stale=None):
    return _full_batch_grads(model, x, y)


def check_accumulate_gradients(fn) -> bool | None:
    """`fn(model, x, y, micro_batches) -> None` must leave the whole batch's gradient in every p.grad."""
    model = _tiny_model(1)
    x, y = _batch(8, 12, seed=3)
    stale = {n: torch.full_like(p, 0.01) for n, p in model.named_parameters()}  # from an earlier step
    cases = [Case("1 micro-batch (the whole batch at once)", (model, x, y, 1)),
             Case("2 micro-batches of 4 rows", (model, x, y, 2)),
             Case("8 micro-batches of 1 row", (model, x, y, 8)),
             Case("4 micro-batches, the model arrives with stale gradients from an earlier step",
                  (model, x, y, 4, stale))]
    return check_function("accumulate_gradients", adapt(fn, _learner_accumulate),
                          reference=_reference_accumulate, cases=cases, rtol=1e-4, atol=1e-6,
                          hint="start with model.zero_grad(); split x and y into `micro_batches` equal slices "
                               "(x.chunk(micro_batches)); for each, loss = model(xs, ys)[1] / micro_batches, then "
                               "loss.backward() (backward ADDS into p.grad, so do not zero between slices).")


EXERCISES = {"average_gradients": check_average_gradients, "accumulate_gradients": check_accumulate_gradients}
