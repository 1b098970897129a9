"""The course's trained models, trained once and cached: `get("teacher")`, `get("student")`, `get("student-scratch")`,
`get("student-real-text")`, and the distillation seed study's shorter runs (`get("student-scratch-seed2")`, see
`lifecycle.distill.SEED_RUNS`).
The zoo imports `lifecycle.distill` and calls its trainers with the teacher; distill never imports the zoo.

Each model has a recipe (a training function in `TRAINERS`) and is trained deterministically
the first time it is asked for, then loaded from the course cache in a second. The teacher uses the `gpu`
preset on a CUDA machine and the `cpu` preset elsewhere; the cache keeps one file per (name, preset).

    python -m lifecycle.zoo teacher     # prints the model card as JSON, training the model first if needed
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import distill
from .data import Corpus, cache_dir, load_corpus
from .device import pick_device, seed_everything
from .model import GPT, preset
from .train import CheckpointError, TrainConfig, TrainResult, load_checkpoint, read_checkpoint_meta, \
    save_checkpoint, train

# Training recipes of the teacher, by preset. The cpu recipe is sized for about three minutes on two cores.
TEACHER_TRAINING: dict[str, TrainConfig] = {
    # 70% of the steps on 64-token windows (18 rows) placed at random positions of the 384-token window, the
    # rest on full 384-token windows (3 rows)
    "cpu": TrainConfig(max_iters=2600, batch_size=3, lr=2.5e-3, min_lr=2e-4, warmup_iters=100, betas=(0.9, 0.99),
                       short_block_size=64, short_fraction=0.7, random_offsets=True, eval_interval=200,
                       eval_iters=10),
    "gpu": TrainConfig(max_iters=3000, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_iters=200,
                       short_block_size=128, short_fraction=0.5, random_offsets=True, eval_interval=250,
                       eval_iters=20),
}


def teacher_preset(device: torch.device | None = None) -> str:
    device = device or pick_device()
    return "gpu" if device.type == "cuda" else "cpu"


@functools.lru_cache(maxsize=4)
def corpus(path: str | None = None) -> Corpus:
    """The tokenized default corpus (or the file at `path`), read once per process."""
    return load_corpus(path)


def train_teacher(corpus: Corpus, device: torch.device, progress: bool = True,
                  callback: Callable | None = None) -> tuple[GPT, TrainResult]:
    """The teacher: the device's preset (`teacher_preset`) trained with its recipe in TEACHER_TRAINING."""
    name = teacher_preset(device)
    cfg = TEACHER_TRAINING[name]
    seed_everything(cfg.seed)
    model = GPT(preset(name, vocab_size=corpus.tokenizer.vocab_size))
    result = train(model, corpus.train, corpus.val, cfg, device=device, progress=progress, callback=callback)
    return model, result


@dataclass(frozen=True)
class StudentTrainer:
    """A student's recipe: `train_fn(teacher, corpus, device, progress, callback)` (a trainer of `lifecycle.distill`),
    called with the zoo's teacher for the same device. The zoo is the only caller of the distill trainers."""

    train_fn: Callable

    def __call__(self, corpus: Corpus, device: torch.device, progress: bool = True,
                 callback: Callable | None = None) -> tuple[GPT, TrainResult]:
        teacher = get("teacher", device, progress=False)
        return self.train_fn(teacher, corpus, device, progress, callback)


# name -> the function that trains it: fn(corpus, device, progress, callback) -> (GPT, TrainResult)
TRAINERS: dict[str, Callable] = {
    "teacher": train_teacher,
    "student": StudentTrainer(distill.train_student),
    "student-scratch": StudentTrainer(distill.train_student_scratch),
    "student-real-text": StudentTrainer(distill.train_student_real_text),
}
# the distillation seed study (lesson 06): each student variant with other seeds on a shorter budget
TRAINERS |= {name: StudentTrainer(functools.partial(distill.train_seed_run, run=name)) for name in distill.SEED_RUNS}


def model_path(name: str, device: torch.device | None = None) -> Path:
    if name not in TRAINERS:
        raise KeyError(f"unknown model {name!r}; the zoo has {sorted(TRAINERS)}")
    return cache_dir() / "models" / f"{name}-{teacher_preset(device)}"


@contextlib.contextmanager
def _training_lock(path: Path):
    """One process trains a given model at a time; others wait, then load what it saved."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{path}.lock", "w")
    except OSError as e:
        raise OSError(f"cannot create the training lock {path}.lock ({e.strerror}): the course cache is read-only "
                      f"and does not hold a usable copy of this model; set LIFECYCLE_CACHE to a writable folder, "
                      f"or copy the model's .safetensors and .json there") from e
    with lock as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(name: str, device: torch.device | str | None = None, progress: bool = True,
          callback: Callable | None = None) -> tuple[GPT, dict]:
    """Train model `name` now (even if cached), save it to the cache, and return (model, card)."""
    device = torch.device(device) if device is not None else pick_device()
    with _training_lock(model_path(name, device)):
        return _build(name, device, progress, callback)


def _build(name: str, device: torch.device, progress: bool, callback: Callable | None) -> tuple[GPT, dict]:
    c = corpus()
    model, result = TRAINERS[name](c, device, progress, callback)
    card = {"name": name, "preset": teacher_preset(device), "config": model.config.to_dict(),
            "n_params": model.num_params(), "tokenizer": c.tokenizer.chars} | result.summary() | \
           {"history": result.history}
    save_checkpoint(model_path(name, device), model, extra={"card": card})
    return model.eval(), card


def get(name: str, device: torch.device | str | None = None, progress: bool = True,
        callback: Callable | None = None) -> GPT:
    """Model `name` in eval mode on `device`: loaded from the cache, or trained once and cached."""
    device = torch.device(device) if device is not None else pick_device()
    path = model_path(name, device)
    # A complete checkpoint loads without the lock: saves are atomic renames, so a reader sees the old or the new
    # file, and a read-only cache (a copied course cache, a shared mount) still serves the models it holds.
    with contextlib.suppress(CheckpointError):
        return load_checkpoint(path)["model"].to(device).eval()
    with _training_lock(path):
        try:
            model = load_checkpoint(path)["model"]
        except CheckpointError:
            if Path(f"{path}.json").exists():
                print(f"cached {name} at {path} is unusable; training it again", file=sys.stderr)
            model, _ = _build(name, device, progress, callback)
    return model.to(device).eval()


def is_cached(name: str, device: torch.device | str | None = None) -> bool:
    """Whether a complete, checksum-valid copy of model `name` is in the cache."""
    device = torch.device(device) if device is not None else pick_device()
    try:
        read_checkpoint_meta(model_path(name, device))
        return True
    except CheckpointError:
        return False


def card(name: str, device: torch.device | str | None = None) -> dict:
    """The model card saved with the model (config, size, validation loss, training time, throughput)."""
    device = torch.device(device) if device is not None else pick_device()
    path = model_path(name, device)
    try:
        meta = read_checkpoint_meta(path)
    except CheckpointError:
        get(name, device)
        meta = read_checkpoint_meta(path)
    return {k: v for k, v in meta["card"].items() if k not in ("tokenizer", "history")}


def history(name: str, device: torch.device | str | None = None) -> list[dict]:
    """The evaluation rows (step, train, val loss) recorded while `name` was trained."""
    device = torch.device(device) if device is not None else pick_device()
    get(name, device, progress=False)
    return read_checkpoint_meta(model_path(name, device))["card"]["history"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lifecycle.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(TRAINERS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    args = parser.parse_args(argv)
    if args.retrain:
        build(args.name, args.device)
    print(json.dumps(card(args.name, args.device), indent=1))


if __name__ == "__main__":
    main()
