"""Data-parallel training on torch.distributed: the course's training loop under DistributedDataParallel.

Data parallelism (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
VLDB) keeps a full copy of the model on every process ("rank"). Each step, every rank computes gradients on
its own shard of the global batch; DDP then averages the gradients across ranks with an all-reduce, bucket by
bucket while the backward pass is still running, so every rank applies the same update and the copies never
drift apart. With equal shards, the mean of the per-shard mean gradients *is* the gradient of the global batch,
so a W-rank run computes the same update as one process on the whole batch (up to float rounding).

Launch with torchrun (one process per rank; gloo on CPUs, nccl on CUDA GPUs; the same command runs on
several machines with --nnodes):

    torchrun --standalone --nproc_per_node=2 -m lifecycle.distributed --preset cpu --n-layer 2 --max-iters 40

or from a notebook with `lifecycle.measure.launch.launch(2, DDPConfig(...))`, which starts torchrun as a
subprocess, streams its output, returns rank 0's results, and on failure or timeout kills every process it started.
This module holds only what runs inside each rank.

Batches: the global batch of step k is exactly the batch a single-process `lifecycle.train.train` draws at
step k (same generator, seeded by (seed, k)); rank r keeps rows [r·B/W, (r+1)·B/W). This is what
DistributedSampler does for epoch-based data: every rank computes the same global order and takes its slice.

Only rank 0 writes checkpoints (`lifecycle.train.save_checkpoint`), logs and results; any rank that fails
writes `error-rank{r}.json` beside them and leaves the process group cleanly (destroy_process_group).

Memory per parameter for training with Adam follows the ZeRO paper (Rajbhandari et al. 2020, section 3.1).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .data import get_batch
from .device import seed_everything, use_thread_budget
from .model import GPT, preset
from .train import TrainConfig, batch_generator, make_optimizer, train

MODES = ("train", "time")


@dataclass
class DDPConfig:
    """One data-parallel run: the model, the training recipe (global batch) and what the ranks do."""

    preset: str = "test"
    n_layer: int | None = None  # override the preset's depth (a small demo model)
    text: str | None = None  # a UTF-8 corpus file; None = the course corpus
    max_iters: int = 20
    batch_size: int = 8  # the GLOBAL batch; each of W ranks takes batch_size // W rows
    block_size: int = 32
    lr: float = 2e-3
    warmup_iters: int = 5
    eval_interval: int = 5
    eval_iters: int = 2
    seed: int = 1337
    mode: str = "train"  # "train": the course loop; "time": time steps with and without all-reduce
    time_steps: int = 5  # steps per timed run ("time" mode)
    time_repeats: int = 3
    checkpoint: bool = True  # rank 0 saves OUT/ddp.{safetensors,json}
    fail_rank: int | None = None  # inject an error on this rank (to see how a failure is handled)
    fail_step: int = 1
    collective_timeout_s: float = 120.0  # a collective that waits longer than this raises instead of hanging
    device: str = "auto"  # "auto": a GPU per rank if there are enough, else CPU; "cpu" forces CPU + gloo

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"DDPConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.device not in ("auto", "cpu"):
            raise ValueError(f"DDPConfig.device must be 'auto' or 'cpu', got {self.device!r}")
        for name in ("max_iters", "batch_size", "block_size", "time_steps", "time_repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DDPConfig.{name} must be positive, got {getattr(self, name)}")

    def train_config(self) -> TrainConfig:
        """The single-process TrainConfig with the same global batch (the reference a DDP run must match)."""
        return TrainConfig(max_iters=self.max_iters, batch_size=self.batch_size, block_size=self.block_size,
                           lr=self.lr, min_lr=self.lr / 10, warmup_iters=self.warmup_iters, precision="fp32",
                           eval_interval=self.eval_interval, eval_iters=self.eval_iters, seed=self.seed)

    def to_args(self) -> list[str]:
        """Command-line arguments that `parse_args` turns back into this config (fields left at their default
        are omitted)."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == f.default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + f.name.replace("_", "-"))
            else:
                args += [flag, str(value)]
        return args


def parse_args(argv: list[str] | None = None) -> tuple[DDPConfig, Path]:
    """DDPConfig and output folder from the command line (every field is a --flag)."""
    import argparse

    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m lifecycle.distributed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for rank 0's result.json and checkpoint")
    for f in fields(DDPConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default)
    ns = vars(parser.parse_args(argv))
    out = Path(ns.pop("out") or tempfile.mkdtemp(prefix="ddp-"))
    return DDPConfig(**ns), out


# ---- the pieces each rank runs ----

def backend_for(device: torch.device) -> str:
    """nccl between CUDA GPUs, gloo between CPU processes (MPS has no collective backend: those ranks use CPU)."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(local_rank: int, local_world_size: int, want: str = "auto") -> torch.device:
    """One GPU per rank when there are enough GPUs; else CPU (nccl refuses two ranks on one GPU, e.g. on Colab)."""
    if want == "auto" and torch.cuda.is_available() and local_world_size <= torch.cuda.device_count():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(timeout_s: float = 120.0, device: str = "auto") -> tuple[int, int, torch.device]:
    """Join the process group torchrun described in the environment; return (rank, world_size, device)."""
    if "RANK" not in os.environ:  # run without torchrun: a group of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    device = rank_device(int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1")), device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), device


def shard_rows(batch_size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch that `rank` trains on: a contiguous, equal share."""
    if batch_size % world_size:
        raise ValueError(f"the global batch_size {batch_size} is not divisible by the world size {world_size}; "
                         "pick a batch_size that is a multiple of the number of processes")
    per_rank = batch_size // world_size
    return slice(rank * per_rank, (rank + 1) * per_rank)


def global_batch(data: torch.Tensor, cfg: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step `step`'s global batch (B, T) on CPU: exactly what single-process `train` draws at that step."""
    return get_batch(data, cfg.batch_size, cfg.block_size, batch_generator(cfg, step), "cpu")


def make_batch_fn(data: torch.Tensor, cfg: TrainConfig, rank: int, world_size: int, device: torch.device,
                  fail_rank: int | None = None, fail_step: int = -1):
    """batch_fn(step) -> this rank's shard (B/W, T) of the global batch, on `device`."""
    rows = shard_rows(cfg.batch_size, rank, world_size)

    def batch_fn(step: int):
        if rank == fail_rank and step == fail_step:
            raise RuntimeError(f"injected failure on rank {rank} at step {step} (DDPConfig.fail_rank)")
        x, y = global_batch(data, cfg, step)
        return x[rows].to(device), y[rows].to(device)

    return batch_fn


def build_model(cfg: DDPConfig, vocab_size: int) -> GPT:
    """The run's model, initialised from cfg.seed (DDP then copies rank 0's weights to every rank anyway)."""
    overrides = {"vocab_size": vocab_size} | ({"n_layer": cfg.n_layer} if cfg.n_layer else {})
    seed_everything(cfg.seed)
    return GPT(preset(cfg.preset, **overrides))


def load_data(cfg: DDPConfig):
    from .data import load_corpus

    return load_corpus(cfg.text)


def log(rank: int, message: str) -> None:
    """One line of output, prefixed with the rank; one write, so lines of different ranks never interleave."""
    sys.stdout.write(f"[rank {rank}] {message}\n")
    sys.stdout.flush()


def run_train(cfg: DDPConfig, out: Path, rank: int, world: int, device: torch.device) -> dict:
    """Train with the course loop under DDP; rank 0 logs each evaluation and saves the checkpoint."""
    corpus = load_data(cfg)
    tcfg = cfg.train_config()
    model = build_model(cfg, corpus.tokenizer.vocab_size).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    rows = shard_rows(tcfg.batch_size, rank, world)
    log(rank, f"pid {os.getpid()}, {device}, {torch.get_num_threads()} threads, rows {rows.start}..{rows.stop - 1} "
              f"of each global batch of {tcfg.batch_size}")
    batch_fn = make_batch_fn(corpus.train, tcfg, rank, world, device, cfg.fail_rank, cfg.fail_step)

    def report(row):
        log(rank, f"step {row['step']:>4}/{tcfg.max_iters}  train {row['train']:.4f}  val {row['val']:.4f}  "
                  f"({row['elapsed']:.1f} s)")

    result = train(ddp, corpus.train, corpus.val, tcfg, device=device, batch_fn=batch_fn, eval_model=model,
                   progress=False, callback=report if rank == 0 else None,
                   checkpoint=out / "ddp" if rank == 0 and cfg.checkpoint else None)
    return {"history": result.history, "steps": result.steps, "seconds": result.seconds,
            "seconds_per_step": result.seconds / result.steps, "global_tokens": result.tokens * world,
            "n_params": model.num_params(), "config": model.config.to_dict(), "threads": torch.get_num_threads()}


def _step(model, optimizer, x, y, grad_clip: float) -> None:
    """One fp32 training step (forward, backward, clip, AdamW), as in `lifecycle.train.train`."""
    optimizer.zero_grad(set_to_none=True)
    model(x, y)[1].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def _slowest(seconds: float, device: torch.device) -> float:
    """The largest of every rank's `seconds` (a step is done when the slowest rank is)."""
    t = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def run_timing(cfg: DDPConfig, out: Path, rank: int, world: int, device: torch.device) -> dict:
    """Seconds per step with gradient all-reduce ("sync") and without it (DDP.no_sync), interleaved, and the
    seconds of one standalone all-reduce of a tensor as large as all the gradients together."""
    import statistics

    from .measure.timing import synchronize

    corpus = load_data(cfg)
    tcfg = cfg.train_config()
    model = build_model(cfg, corpus.tokenizer.vocab_size).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(ddp, tcfg)
    batch_fn = make_batch_fn(corpus.train, tcfg, rank, world, device, cfg.fail_rank, cfg.fail_step)
    batches = [batch_fn(k) for k in range(cfg.time_steps)]
    n_grad = sum(p.numel() for p in ddp.parameters() if p.requires_grad)
    flat = torch.zeros(n_grad, device=device)  # what DDP moves each step, in ~25 MB buckets

    def steps(sync: bool) -> float:
        dist.barrier()
        synchronize(device)
        t0 = time.perf_counter()
        for x, y in batches:
            if sync:
                _step(ddp, optimizer, x, y, tcfg.grad_clip)
            else:
                with ddp.no_sync():  # gradients stay local: no communication at all
                    _step(ddp, optimizer, x, y, tcfg.grad_clip)
        synchronize(device)
        return _slowest(time.perf_counter() - t0, device) / len(batches)

    def allreduce() -> float:
        dist.barrier()
        synchronize(device)
        t0 = time.perf_counter()
        for _ in batches:
            dist.all_reduce(flat)
        synchronize(device)
        return _slowest(time.perf_counter() - t0, device) / len(batches)

    steps(True)  # warm-up: first-call allocations, DDP's bucket rebuild
    times = {"sync": [], "no_sync": [], "allreduce": []}
    for _ in range(cfg.time_repeats):  # interleaved, so a noisy neighbour slows each variant alike
        times["sync"].append(steps(True))
        times["no_sync"].append(steps(False))
        times["allreduce"].append(allreduce())
    med = {k: statistics.median(v) for k, v in times.items()}
    log(rank, f"step {med['sync'] * 1e3:.1f} ms with all-reduce, {med['no_sync'] * 1e3:.1f} ms without; "
              f"all-reduce of {n_grad:,} gradients alone {med['allreduce'] * 1e3:.2f} ms")
    return {"seconds_per_step": med["sync"], "seconds_per_step_no_sync": med["no_sync"],
            "seconds_allreduce": med["allreduce"], "gradient_bytes": n_grad * 4, "n_params": model.num_params(),
            "samples": times, "global_batch": tcfg.batch_size, "block_size": tcfg.block_size,
            "threads": torch.get_num_threads()}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # the launcher never reads half a file


def watch_parent(rank: int, interval_s: float = 0.5) -> None:
    """End this rank when its parent (torchrun) dies, whatever killed it (SIGKILL, the OOM killer).

    torchrun starts each worker in a session of its own, so nothing else would stop an orphaned rank: it would
    train on with PPID 1. A daemon thread notices the change of parent and exits the process.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent != 1:  # PPID 1 from the start: torchrun died before we looked
            time.sleep(interval_s)
        log(rank, f"torchrun (pid {parent}) is gone; this rank stops")
        os._exit(70)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Entry point of every rank (torchrun runs one copy per process)."""
    cfg, out = parse_args(argv)
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # started by torchrun (not a group of one run in-process)
        watch_parent(rank)
    try:
        if os.environ.get("LIFECYCLE_THREADS"):  # set by `launch`: this rank's share of the CPU budget
            use_thread_budget()
        rank, world, device = setup(cfg.collective_timeout_s, cfg.device)
        run = run_train if cfg.mode == "train" else run_timing
        result = run(cfg, out, rank, world, device)
        if rank == 0:
            write_json(out / "result.json", result | {"world_size": world, "backend": dist.get_backend(),
                                                      "device": str(device), "ddp_config": asdict(cfg)})
            log(rank, f"done; results in {out / 'result.json'}")
    except BaseException as e:
        write_json(out / f"error-rank{rank}.json", {"rank": rank, "error": f"{type(e).__name__}: {e}",
                                                   "traceback": traceback.format_exc(), "time": time.time()})
        log(rank, f"FAILED: {type(e).__name__}: {e}")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()  # leave the group cleanly, so no peer waits on us


# ---- why one GPU is not enough: training state per parameter ----

def training_state_bytes(precision: str = "mixed") -> dict[str, int]:
    """Bytes per parameter that training with Adam keeps on the GPU, activations excluded (ZeRO, sec. 3.1).

    "mixed": bf16/fp16 weights and gradients, plus an fp32 master copy and Adam's two fp32 moments (2+2+4+4+4).
    "fp32": fp32 weights, gradients and the two moments (4+4+4+4). Both come to 16 bytes per parameter.
    """
    if precision == "mixed":
        return {"weights": 2, "gradients": 2, "master weights": 4, "adam m": 4, "adam v": 4}
    if precision == "fp32":
        return {"weights": 4, "gradients": 4, "adam m": 4, "adam v": 4}
    raise ValueError(f"precision must be 'mixed' or 'fp32', got {precision!r}")


if __name__ == "__main__":
    main()
