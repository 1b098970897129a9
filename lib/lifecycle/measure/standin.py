"""The model a benchmark or a lesson times: the trained one from the zoo if it is cached, else a stand-in.

Speed depends on a model's shape, not on its weights' values, so a benchmark need not wait for training: when the
zoo has no cached copy, `cached_or_standin` builds the same architecture with random weights (seeded, so every run
times the same model) and says so in one sentence that the benchmark puts in its notes. Anything that depends on
the weights (loss, agreement, a draft's acceptance rate) is meaningless on a stand-in, and the sentence says that too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import zoo
from ..device import pick_device
from ..model import GPT, preset

STANDIN_NAMES = ("teacher", "student")  # the models a stand-in can replace (a student's shape is the `student` preset)


@dataclass
class BenchModel:
    """A model to time, whether it is the trained one, and one sentence saying which it is."""

    model: GPT
    trained: bool
    note: str


def standin(name: str, device: torch.device | str | None = None, seed: int = 0) -> GPT:
    """Model `name`'s architecture with random weights (seeded), in eval mode on `device`.

    The teacher has the zoo's teacher preset for this device; a student has the `student` preset with the
    teacher's window (block_size), since a draft and its target read the same context.
    """
    if name not in STANDIN_NAMES:
        raise ValueError(f"no stand-in shape for {name!r}; choose one of {', '.join(STANDIN_NAMES)}")
    device = torch.device(device) if device is not None else pick_device()
    vocab = zoo.corpus().tokenizer.vocab_size
    teacher = preset(zoo.teacher_preset(device), vocab_size=vocab)
    config = teacher if name == "teacher" else preset("student", vocab_size=vocab, block_size=teacher.block_size)
    torch.manual_seed(seed)
    return GPT(config).to(device).eval()


def cached_or_standin(name: str, device: torch.device | str | None = None,
                      allow_stand_in: bool = True) -> BenchModel:
    """The trained model `name` from the zoo if it is cached; else (allow_stand_in) a random-weight stand-in of its
    shape, or (not allowed) the zoo trains it once and caches it. `.note` says which one it is."""
    device = torch.device(device) if device is not None else pick_device()
    if zoo.is_cached(name, device) or not allow_stand_in:
        return BenchModel(zoo.get(name, device, progress=False), True, f"{name}: the trained model from the zoo")
    return BenchModel(standin(name, device), False,
                      f"{name}: not cached, so a stand-in of its shape with random weights was timed (speed does not "
                      "depend on the weights' values; loss, agreement and acceptance rates do, and mean nothing here)")
