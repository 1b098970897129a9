"""Training: AdamW with warmup + cosine decay, gradient clipping, periodic evaluation, checkpoints, resume.

One loop serves every model of the course: the teacher (lesson 01), the students (lesson 06 passes its
distillation loss as `loss_fn`) and each rank of a data-parallel run (lesson 02 wraps the model in DDP and
passes `batch_fn`). Runs are reproducible: batch k is drawn from a generator seeded with (seed, k), so the same
seed gives the same losses on the same machine, and a resumed run continues exactly where it stopped.

Checkpoints are two files written atomically (temporary file, then rename): `NAME.safetensors` (tensors only,
never pickle) and `NAME.json` (model config, training state and the sha256 of the tensor file). The suffixes are
appended to NAME, so `run.v1` and `run.v2` are two checkpoints. The tensor file is self-describing: its header
carries the same metadata plus a sha256 of the tensors' bytes, so its rename is the single commit point of a save.
An interrupt between the two renames leaves the new tensor file with the old JSON; the loader sees the JSON's
checksum disagree, checks the header's own checksum instead and loads the new checkpoint (with a warning).

Throughput is reported as tokens/s, achieved FLOP/s (6·N + attention, see `GPT.flops_per_token`) and MFU, the
achieved share of a peak FLOP/s (this machine's measured matmul peak, from `lifecycle.device.probe`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .data import get_batch, sha256_of
from .device import pick_device, supports_dtype
from .measure.timing import synchronize
from .model import GPT, GPTConfig


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model; the message says which and what to do."""


class TrainingDiverged(FloatingPointError):
    """The loss or the weights became inf/NaN; nothing was saved after the last finite checkpoint."""


@dataclass
class TrainConfig:
    max_iters: int = 2000
    batch_size: int = 16
    block_size: int | None = None  # training context; None = the model's block_size
    # sequence-length warmup: the first `short_fraction` of steps train on `short_block_size`-token windows,
    # with proportionally more rows so every step sees the same number of tokens (cheaper, faster early learning)
    short_block_size: int | None = None
    short_fraction: float = 0.0
    # give each short window a random starting position, so every row of the position table gets trained
    # (Ruoss et al. 2023, "Randomized Positional Encodings"); full-length windows always start at 0
    random_offsets: bool = False
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    precision: str = "auto"  # "auto" (bf16/fp16 autocast on GPUs, fp32 elsewhere), "fp32", "bf16", "fp16"

    def __post_init__(self):
        for name in ("max_iters", "batch_size", "eval_interval", "eval_iters"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if not (0 < self.min_lr <= self.lr) or not math.isfinite(self.lr):
            raise ValueError(f"need 0 < min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if not 0.0 <= self.short_fraction < 1.0:
            raise ValueError(f"short_fraction must be in [0, 1), got {self.short_fraction}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be a finite number >= 0 (0 turns clipping off), got {self.grad_clip}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.min_lr at max_iters."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    progress = min(1.0, (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def batch_shape(step: int, cfg: TrainConfig, model_block_size: int) -> tuple[int, int]:
    """(rows, context) of training batch `step`, after the sequence-length warmup if one is set."""
    block = cfg.block_size or model_block_size
    if cfg.short_block_size and step < cfg.short_fraction * cfg.max_iters:
        return cfg.batch_size * block // cfg.short_block_size, cfg.short_block_size
    return cfg.batch_size, block


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for this device: bf16 where supported, fp16 on GPUs without it (T4), none on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision in ("auto", "bf16") and supports_dtype(device, torch.bfloat16):
        return torch.bfloat16
    if precision == "bf16":
        raise ValueError(f"bf16 is not supported on {device}; use precision='fp16' or 'fp32'")
    return torch.float16


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings, not on biases or LayerNorm gains."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def batch_generator(cfg: TrainConfig, step: int, salt: int = 0) -> torch.Generator:
    """The generator for batch `step`: a pure function of (seed, step), so resumed runs draw the same batches."""
    return torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 7919 + salt)


@torch.no_grad()
def estimate_loss(model: GPT, splits: dict[str, torch.Tensor], cfg: TrainConfig, device=None,
                  loss_fn: Callable | None = None, context: int | None = None) -> dict[str, float]:
    """Mean loss over cfg.eval_iters fixed batches of each split (the same batches every call).

    context: window length to evaluate on (default: the training block); during a sequence-length warmup the
    loop evaluates on the windows it is training on, since longer positions are not trained yet.
    """
    device = device or next(model.parameters()).device
    full = cfg.block_size or model.config.block_size
    block = context or full
    rows = max(1, cfg.batch_size * full // block)  # the same number of tokens whatever the window
    was_training = model.training
    model.eval()
    out = {}
    for name, data in splits.items():
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        losses = []
        for _ in range(cfg.eval_iters):
            x, y = get_batch(data, rows, block, gen, device)
            losses.append((loss_fn(model, x, y) if loss_fn else model(x, y)[1]).item())
        out[name] = sum(losses) / len(losses)
    model.train(was_training)
    return out


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per evaluation: step, train, val, lr, elapsed
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0  # wall time of the training steps (evaluations excluded)
    cpu_seconds: float = 0.0  # CPU time of this process over the same steps (all threads)
    flops: float = 0.0
    device: str = "cpu"
    compute_dtype: str = "float32"  # the dtype the matmuls ran in (autocast's), whose peak MFU divides by

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds if self.seconds else 0.0

    def mfu(self, peak_flops: float) -> float:
        """Model FLOPs utilization: achieved FLOP/s as a share of `peak_flops` (the peak of `compute_dtype`)."""
        return self.flops_per_s / peak_flops

    @property
    def final_val_loss(self) -> float | None:
        return self.history[-1]["val"] if self.history else None

    def summary(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "seconds": round(self.seconds, 2),
                "cpu_seconds": round(self.cpu_seconds, 2),
                "tokens_per_s": round(self.tokens_per_s, 1), "flops": self.flops,
                "flops_per_s": self.flops_per_s, "final_val_loss": self.final_val_loss, "device": self.device,
                "compute_dtype": self.compute_dtype}


def train(model: GPT, train_data: torch.Tensor, val_data: torch.Tensor, cfg: TrainConfig, *,
          device: torch.device | str | None = None, loss_fn: Callable | None = None,
          batch_fn: Callable | None = None, callback: Callable | None = None, progress: bool = True,
          checkpoint: Path | str | None = None, resume: bool = False, optimizer=None,
          eval_model: GPT | None = None) -> TrainResult:
    """Train `model` in place for cfg.max_iters steps and return the run's history and throughput.

    loss_fn(model, x, y) -> loss replaces plain cross-entropy (distillation). batch_fn(step) -> (x, y) replaces
    random batches (data parallelism shards them). callback(row) is called after each evaluation (live plots).
    checkpoint: path stem; written at each evaluation and at the end. resume: continue from that checkpoint.
    eval_model: the module to evaluate and checkpoint when `model` is a wrapper (DDP).
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else pick_device()
    core = eval_model or model
    model.to(device)
    optimizer = optimizer or make_optimizer(model, cfg)
    amp = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    result = TrainResult(device=str(device), compute_dtype=str(amp or torch.float32).removeprefix("torch."))
    start_step = 0
    # resume when either file of the pair is there: a half-present checkpoint loads (see read_checkpoint_meta) or
    # raises CheckpointError; it never silently restarts at step 0 and overwrites the weights
    if resume and checkpoint is not None and any(f.exists() for f in checkpoint_files(checkpoint)):
        state = load_checkpoint(checkpoint, core, optimizer)
        start_step = state["step"]
        result.history = state.get("history", [])
    splits = {"train": train_data, "val": val_data}
    bar = tqdm(range(start_step, cfg.max_iters), desc="training", disable=not progress, mininterval=1.0)
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for step in bar:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows, context = batch_shape(step, cfg, core.config.block_size)
        gen = batch_generator(cfg, step)
        x, y = batch_fn(step) if batch_fn else get_batch(train_data, rows, context, gen, device)
        positions = None
        if cfg.random_offsets and context < core.config.block_size:
            offsets = torch.randint(core.config.block_size - context + 1, (rows, 1), generator=gen)
            positions = (offsets + torch.arange(context)).to(device)  # (B, T)
        with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
            if loss_fn:
                loss = loss_fn(model, x, y, positions) if positions is not None else loss_fn(model, x, y)
            else:
                loss = model(x, y, positions=positions)[1]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        result.steps += 1
        result.tokens += x.numel()
        result.flops += x.numel() * core.flops_per_token(context=x.shape[1], training=True)
        last = step == cfg.max_iters - 1
        if (step + 1) % cfg.eval_interval == 0 or last:
            synchronize(device)
            result.seconds += time.perf_counter() - t0  # evaluation time is not training time
            result.cpu_seconds += time.process_time() - c0
            losses = estimate_loss(core, splits, cfg, device, context=context)
            _check_finite(core, losses, step + 1, checkpoint)
            row = {"step": step + 1, "train": losses["train"], "val": losses["val"], "lr": lr, "context": context,
                   "elapsed": round(result.seconds, 2), "tokens": result.tokens}
            result.history.append(row)
            bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}")
            if checkpoint is not None:
                save_checkpoint(checkpoint, core, optimizer=optimizer, step=step + 1,
                                extra={"history": result.history})
            if callback:
                callback(row)
            t0, c0 = time.perf_counter(), time.process_time()
    model.eval()
    return result


def _check_finite(model: GPT, losses: dict[str, float], step: int, checkpoint: Path | str | None) -> None:
    """Stop a diverged run before it checkpoints: inf/NaN loss or weights raise TrainingDiverged."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    bad += [n for n, p in model.named_parameters() if not torch.isfinite(p).all()][:3]
    if bad:
        kept = f"the last good checkpoint at {checkpoint} is kept; " if checkpoint is not None else ""
        raise TrainingDiverged(f"training diverged by step {step}: {bad} are not finite; {kept}"
                               "lower TrainConfig.lr, keep grad_clip on, or use precision='fp32'")


# ---- checkpoints ----

def checkpoint_files(path: Path | str) -> tuple[Path, Path]:
    """(tensor file, metadata file) of checkpoint `path`: PATH.safetensors and PATH.json.

    The suffix is appended, not substituted (Path.with_suffix would map run.v1 and run.v2 to the same run.*);
    a path that already ends in .safetensors or .json names the same checkpoint as its stem.
    """
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of `tensors` (sorted by name): the header's own checksum."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a cache shared read-only with others must stay readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            out[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def save_checkpoint(path: Path | str, model: GPT, *, optimizer: torch.optim.Optimizer | None = None,
                    step: int | None = None, extra: dict | None = None) -> Path:
    """Write PATH.safetensors (weights, plus optimizer state if given) then PATH.json, each atomically.

    The tensor file's header holds the metadata and its own checksum, so the checkpoint is loadable after each of
    the two renames: old pair, then new tensors + stale JSON (loaded from the header), then the new pair.
    Non-finite weights are refused (a diverged model must not replace a good checkpoint).
    """
    path = Path(path)
    weights, meta_path = checkpoint_files(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
               if k != "lm_head.weight"}  # tied to transformer.wte.weight: stored once
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDiverged(f"refusing to save {path}: {bad[:3]} hold inf/NaN; the checkpoint on disk is kept")
    if optimizer is not None:
        tensors |= {k: v.detach().contiguous().cpu() for k, v in _optimizer_tensors(optimizer).items()}
    meta = {"format": "lifecycle-gpt/1", "config": model.config.to_dict(), "step": step,
            "has_optimizer": optimizer is not None} | (extra or {})
    header = {"lifecycle": json.dumps(meta), "tensors_sha256": tensors_sha256(tensors)}
    _atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    meta = meta | {"sha256": sha256_of(weights)}
    _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    return path


def _meta_from_header(weights: Path) -> dict | None:
    """The metadata stored in the tensor file's header, checked against its tensor checksum; None if the file
    predates self-describing checkpoints. Raises CheckpointError when the file is unreadable or changed."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = f.metadata() or {}
        if "lifecycle" not in header:
            return None
        ok = tensors_sha256(load_file(str(weights))) == header.get("tensors_sha256")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} cannot be read ({e}): the file is truncated or was changed. "
                              "Delete both files of the checkpoint and retrain (or re-copy them).") from e
    if not ok:
        raise CheckpointError(f"{weights} does not match the checksum in its own header: the file is truncated or "
                              "was changed. Delete both files of the checkpoint and retrain (or re-copy them).")
    return json.loads(header["lifecycle"]) | {"sha256": sha256_of(weights)}


def read_checkpoint_meta(path: Path | str) -> dict:
    """The checkpoint's metadata, verified: from PATH.json when its checksum matches the tensor file, else from
    the tensor file's own header (an interrupted save, a lost JSON) when that checks out. Raises CheckpointError."""
    path = Path(path)
    weights, meta_path = checkpoint_files(path)
    if not weights.exists():
        raise CheckpointError(f"no complete checkpoint at {path} (need {meta_path.name} and {weights.name}); "
                              "train the model first, or check the path")
    problem = f"{meta_path.name} is missing"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if sha256_of(weights) == meta.get("sha256"):
                return meta
            problem = (f"{weights} does not match the checksum in {meta_path.name}: the file is truncated or was "
                       "changed, or a save was interrupted")
        except json.JSONDecodeError as e:
            problem = f"{meta_path} is not valid JSON ({e})"
    meta = _meta_from_header(weights)
    if meta is None:  # an older checkpoint without a self-describing header: nothing else to trust
        raise CheckpointError(f"no complete checkpoint at {path}: {problem}. "
                              "Delete both files and retrain (or re-copy them).")
    warnings.warn(f"{problem}; loading {weights.name} from the metadata in its own header, whose checksum matches "
                  "(the next save rewrites the JSON)", stacklevel=2)
    return meta


def load_checkpoint(path: Path | str, model: GPT | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load weights into `model` (built from the checkpoint's config if None); returns the metadata + 'model'."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    config = GPTConfig.from_dict(meta["config"])
    if model is None:
        model = GPT(config)
    elif model.config != config:
        diff = {k: (v, getattr(model.config, k)) for k, v in config.to_dict().items() if getattr(model.config, k) != v}
        raise CheckpointError(f"checkpoint {path} was saved from a different model: (saved, yours) = {diff}; "
                              "build the model from the checkpoint's config (load_checkpoint(path)) instead")
    try:
        tensors = load_file(str(checkpoint_files(path)[0]))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {checkpoint_files(path)[0]}: {e}") from e
    weights = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    weights["lm_head.weight"] = weights["transformer.wte.weight"]
    expected = model.state_dict()
    bad = sorted(k for k in expected if k not in weights or weights[k].shape != expected[k].shape)
    if bad or set(weights) - set(expected):
        raise CheckpointError(f"checkpoint {path} does not fit the model: mismatched or missing {bad[:5]}, "
                              f"unexpected {sorted(set(weights) - set(expected))[:5]}")
    model.load_state_dict(weights)
    if optimizer is not None:
        if not meta.get("has_optimizer"):
            raise CheckpointError(f"checkpoint {path} holds no optimizer state, so training cannot resume from it")
        sd = optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                sd["state"].setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict(sd)
    return meta | {"model": model}
