"""Where the course runs: device choice, dtype support, seeding, timing and the hardware probe.

The probe measures this machine's two roofline numbers, the rate of a large matrix multiply (FLOP/s) and
the rate of a large memory copy (bytes/s). Lessons 01 (MFU), 03 (where decode sits on the roofline) and 09
(cost per token) compare against them. `ACCELERATORS` lists datacenter and Colab GPUs with their published
peaks, each with its source, so the same arithmetic can be done for hardware the learner does not have.

Nothing here changes global torch settings on import.
"""
from __future__ import annotations

import contextlib
import os
import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return cuda if present, else mps, else cpu; `prefer` (or $LIFECYCLE_DEVICE) forces one."""
    prefer = prefer or os.environ.get("LIFECYCLE_DEVICE")
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} asked for, but CUDA is not available here; use 'cpu'")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {prefer!r} asked for, but MPS is not available here; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def supports_dtype(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether `dtype` arithmetic is native on `device` (a T4 has fp16 but no bf16)."""
    device = torch.device(device)
    if dtype == torch.float32:
        return True
    if device.type == "cuda":
        if dtype == torch.bfloat16:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        return dtype == torch.float16
    if device.type == "mps":
        return dtype in (torch.float16, torch.bfloat16)
    # CPU kernels exist for both half formats; they are correct, though often slower than fp32.
    return dtype in (torch.float16, torch.bfloat16)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (every device)."""
    random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer around it measures the work and not the launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn, device: torch.device | str = "cpu", repeats: int = 5, warmup: int = 1, best: bool = False) -> float:
    """Median (or, with best=True, minimum) wall time of `fn()` in seconds, synchronizing around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times) if best else statistics.median(times)


@contextlib.contextmanager
def num_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None leaves it alone)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class Probe:
    """This machine's measured roofline: peak matmul rate and memory bandwidth."""

    device: str
    name: str
    dtype: str
    matmul_flops: float  # FLOP/s, best of the sizes tried
    bandwidth: float  # bytes/s, read + write of a large copy
    threads: int

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte at which a kernel stops being memory-bound and becomes compute-bound."""
        return self.matmul_flops / self.bandwidth

    def as_dict(self) -> dict:
        return asdict(self) | {"ridge_point": self.ridge_point}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return platform.processor() or platform.machine() or "CPU"


def probe(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32, quick: bool = False) -> Probe:
    """Measure matmul FLOP/s (square matmuls, best size) and copy bandwidth (bytes read + written per second)."""
    device = torch.device(device) if device is not None else pick_device()
    sizes = (256, 512, 1024) if quick or device.type == "cpu" else (1024, 2048, 4096)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        reps = max(1, int(2e9 / (2 * n**3))) if device.type == "cpu" else 10
        # a peak is what the hardware can do: take the fastest repeat (others were slowed by whatever else ran)
        seconds = timed(lambda: [a @ b for _ in range(reps)], device, repeats=3 if quick else 5, best=True)
        best = max(best, 2 * n**3 * reps / seconds)
    numel = (16 if quick else 64) * 2**20 // 4  # 16 or 64 MiB of fp32: far beyond the CPU caches
    src = torch.empty(numel, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=5 if quick else 10, best=True)
    bandwidth = 2 * src.numel() * src.element_size() / seconds
    return Probe(str(device), device_name(device), str(dtype).removeprefix("torch."), best, bandwidth,
                 torch.get_num_threads())


@dataclass(frozen=True)
class Accelerator:
    """Published peak figures of one accelerator (dense, no sparsity)."""

    name: str
    bf16_flops: float | None  # FLOP/s; None where the chip has no bf16 tensor cores
    fp16_flops: float
    fp32_flops: float
    bandwidth: float  # bytes/s of HBM/GDDR
    memory_gb: float
    source: str


# Vendor data sheets; dense tensor-core peaks (the "with sparsity" figures are twice these).
ACCELERATORS: dict[str, Accelerator] = {
    "A100-SXM4-80GB": Accelerator(
        "A100-SXM4-80GB", 312e12, 312e12, 19.5e12, 2.039e12, 80,
        "NVIDIA A100 Tensor Core GPU datasheet (2021): 312 TFLOPS BF16/FP16 dense, 19.5 TFLOPS FP32, 2,039 GB/s"),
    "H100-SXM5-80GB": Accelerator(
        "H100-SXM5-80GB", 989e12, 989e12, 67e12, 3.35e12, 80,
        "NVIDIA H100 Tensor Core GPU datasheet (2023): 989 TFLOPS BF16/FP16 dense, 67 TFLOPS FP32, 3.35 TB/s"),
    "H200-SXM-141GB": Accelerator(
        "H200-SXM-141GB", 989e12, 989e12, 67e12, 4.8e12, 141,
        "NVIDIA H200 Tensor Core GPU datasheet (2024): 989 TFLOPS BF16/FP16 dense, 4.8 TB/s"),
    "L4": Accelerator(
        "L4", 121e12, 121e12, 30.3e12, 0.3e12, 24,
        "NVIDIA L4 Tensor Core GPU datasheet (2023): 121 TFLOPS BF16/FP16 dense, 300 GB/s"),
    "T4": Accelerator(
        "T4", None, 65e12, 8.1e12, 0.32e12, 16,
        "NVIDIA T4 Tensor Core GPU datasheet (2019): 65 TFLOPS FP16 mixed precision, 8.1 TFLOPS FP32, 320 GB/s; no bf16"),
}
