"""Where the course runs: device choice, dtype support, seeding and the hardware probe (timed by `measure.timing`).

The probe measures this machine's two roofline numbers, the rate of a large matrix multiply (FLOP/s) and
the rate of a large memory copy (bytes/s). `course_probe` is the course's one measurement of them: the matmul peak
in every dtype the course trains or serves in, and the bandwidth of a copy several times larger than the last-level
cache. Lesson 00 records it in the results ledger (`lifecycle.results.record_probe`); later lessons read it back
(`lifecycle.results.recorded_probe`), which runs the same probe only where the ledger lacks it, so every lesson uses
the same figures. This module does not import the ledger (the ledger imports it).
Lessons 01 (MFU), 03 (where decode sits on the roofline) and 09
(cost per token) compare against them. `ACCELERATORS` lists datacenter and Colab GPUs with their published
peaks, each with its source, so the same arithmetic can be done for hardware the learner does not have.

Nothing here changes global torch settings on import.
"""
from __future__ import annotations

import contextlib
import os
import platform
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .measure.timing import timed


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


# ---- how many CPU threads this process may really use ----

@dataclass(frozen=True)
class ThreadChoice:
    """The torch thread count the course uses here, and why (`reason` is one sentence for the learner)."""

    threads: int
    reason: str
    affinity: int | None  # CPUs this process may run on (os.sched_getaffinity); None where unknown (macOS)
    quota: float | None  # CPUs' worth of time the cgroup quota allows; None = no quota (or none readable)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time the Linux cgroup CPU quota allows this process (1.5 = 150 ms per 100 ms), or None.

    cgroup v2: `cpu.max` ("QUOTA PERIOD" or "max PERIOD") in the process's cgroup and every ancestor (the
    tightest wins); cgroup v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1 = none). Binder and Docker
    `--cpus` limits are such quotas: the process sees every core but may only use a fraction of their time.
    """
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    v2 = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), "/")
    v1 = next((ln.split(":", 2)[2] for ln in lines if "cpu" in ln.split(":", 2)[1].split(",")), "/")
    limits = []
    rel = Path(v2.lstrip("/"))
    for folder in [root / rel, *(root / a for a in rel.parents)]:  # the own cgroup, then each ancestor up to root
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max":
                limits.append(int(quota) / int(period))
        except (OSError, ValueError):
            continue
    for mount in (root / "cpu,cpuacct", root / "cpu", root / "cpuacct,cpu", root):
        for folder in (mount / v1.lstrip("/"), mount):
            try:
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                period = int((folder / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
            break
    return min(limits) if limits else None


def thread_budget(environ: dict | None = None, root: Path = Path("/sys/fs/cgroup"),
                  self_cgroup: Path = Path("/proc/self/cgroup")) -> ThreadChoice:
    """How many torch threads to use: the CPUs this process may run on (affinity), lowered to the whole CPUs
    its cgroup quota allows (at least 1), unless $LIFECYCLE_THREADS names a count (validated).

    os.cpu_count() and torch's default count every core of the machine, even those a container may not use; on a
    loaded or throttled machine, threads beyond the real budget wait for each other (10-100x slower seen on two
    shared cores). Reads only; `use_thread_budget()` applies the choice.
    """
    env = os.environ if environ is None else environ
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    quota = cgroup_cpu_quota(root, self_cgroup)
    cpus = affinity or os.cpu_count() or 1
    plural = "s" if cpus != 1 else ""
    where = (f"this process may run on {cpus} CPU{plural}" if affinity else f"this machine has {cpus} CPU{plural}")
    override = env.get("LIFECYCLE_THREADS", "").strip()
    if override:
        try:
            n = int(override)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"LIFECYCLE_THREADS must be a whole number >= 1, got {override!r}; "
                             "unset it to let the course choose from this machine's CPU budget")
        beyond = f" (more than the {cpus} available, so threads will wait for each other)" if n > cpus else ""
        return ThreadChoice(n, f"LIFECYCLE_THREADS={n} sets it{beyond}", affinity, quota)
    if quota is not None and quota < cpus:
        n = max(1, int(quota))
        return ThreadChoice(n, f"{where}, but its cgroup CPU quota allows only {quota:g} CPUs' worth of time",
                            affinity, quota)
    limit = "no cgroup CPU quota limits it" if quota is None else f"its cgroup CPU quota allows {quota:g}"
    return ThreadChoice(cpus, f"{where} and {limit}", affinity, quota)


def use_thread_budget(environ: dict | None = None) -> ThreadChoice:
    """Set torch's intra-op thread count to `thread_budget()` and return the choice (call it explicitly: importing
    this module changes nothing)."""
    choice = thread_budget(environ)
    torch.set_num_threads(choice.threads)
    return choice


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
        seconds = timed(lambda: [a @ b for _ in range(reps)], device, repeats=3 if quick else 5).low
        best = max(best, 2 * n**3 * reps / seconds)
    numel = (16 if quick else 64) * 2**20 // 4  # 16 or 64 MiB of fp32: far beyond the CPU caches
    src = torch.empty(numel, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=5 if quick else 10).low
    bandwidth = 2 * src.numel() * src.element_size() / seconds
    return Probe(str(device), device_name(device), str(dtype).removeprefix("torch."), best, bandwidth,
                 torch.get_num_threads())


# ---- the course's probe: one measurement per quantity, recorded once (lesson 00) and read back by later lessons ----

COURSE_PROBE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the course trains or serves in
PROBE_LEDGER_KEYS = {"float32": "machine.matmul_flops", "bfloat16": "machine.matmul_flops.bf16",
                     "float16": "machine.matmul_flops.fp16"}


def last_level_cache_bytes(device: torch.device | str = "cpu",
                           root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """Size of the largest cache in front of `device`'s memory: the CPU's last level (from Linux's
    /sys/devices/system/cpu/cpu0/cache) or a CUDA GPU's L2; None where it cannot be read (macOS, Windows, MPS)."""
    device = torch.device(device)
    if device.type == "cuda":
        return getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)
    if device.type != "cpu":
        return None
    sizes = {}
    for index in sorted(Path(root).glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            sizes[level] = _parse_cache_size((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
    return sizes[max(sizes)] if sizes else None


def _parse_cache_size(text: str) -> int:
    """'32768K' -> 33554432 (sysfs writes K, M or G suffixes)."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def bandwidth_buffer_bytes(device: torch.device | str = "cpu") -> int:
    """Size of the course probe's copy buffer: four times the last-level cache, at least 64 MiB, at most 256 MiB
    (the copy needs two of them, and Binder gives a whole session 2 GB)."""
    llc = last_level_cache_bytes(device) or 0
    return min(max(4 * llc, 64 * 2**20), 256 * 2**20)


def matmul_peak(device: torch.device | str, dtype: torch.dtype, sizes: tuple[int, ...],
                seconds_per_size: float = 0.05, repeats: int = 5) -> float:
    """Best FLOP/s of square (n, n) @ (n, n) matmuls over `sizes`, each timed as enough back-to-back calls to take
    about `seconds_per_size` (best of `repeats`: a peak is what the hardware can do, so slow repeats are noise).

    Sizes are tried smallest first; a size whose single call takes longer than `seconds_per_size` ends the sweep,
    so a dtype without fast kernels on this device (fp16 on most CPUs) costs a bounded time.
    """
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        once = timed(lambda: a @ b, device, repeats=1, warmup=1).median
        reps = max(1, int(seconds_per_size / max(once, 1e-9)))
        seconds = timed(lambda: [a @ b for _ in range(reps)], device, repeats=repeats, warmup=0).low
        best = max(best, 2 * n**3 * reps / seconds)
        if once > seconds_per_size:
            break
    return best


@dataclass(frozen=True)
class CourseProbe:
    """This machine's roofline as the whole course uses it: matmul peak per dtype and main-memory bandwidth.

    `peaks` maps a dtype name ("float32", "bfloat16", "float16") to FLOP/s, for every dtype the device supports;
    `buffer_bytes` is the size of the copied buffer and `cache_bytes` the last-level cache it was sized against.
    """

    device: str
    name: str
    peaks: dict
    bandwidth: float  # bytes/s, read + write of a copy far larger than the last-level cache
    buffer_bytes: int
    cache_bytes: int | None
    threads: int

    @property
    def matmul_flops(self) -> float:
        """The fp32 peak (the dtype the course trains in on a CPU)."""
        return self.peaks["float32"]

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte at which an fp32 kernel stops being memory-bound."""
        return self.matmul_flops / self.bandwidth

    def peak(self, dtype: torch.dtype | str) -> float:
        """The measured peak of `dtype` (a torch dtype or its name); KeyError names the dtypes measured."""
        name = str(dtype).removeprefix("torch.")
        if name not in self.peaks:
            raise KeyError(f"no {name} matmul peak was measured on {self.device}; measured: {sorted(self.peaks)}")
        return self.peaks[name]

    def describe(self, dtypes: tuple[str, ...] | None = None) -> str:
        """One Markdown sentence with the figures, worded the same in every lesson (a test compares them across
        lessons): "peak matmul (float32) **x GFLOP/s**", "memory bandwidth **y GB/s**"."""
        peaks = ", ".join(f"peak matmul ({d}) **{self.peaks[d] / 1e9:,.1f} GFLOP/s**"
                          for d in (dtypes or tuple(self.peaks)))
        cache = (f", {self.buffer_bytes / self.cache_bytes:.0f}× the {self.cache_bytes / 2**20:,.0f} MiB last-level "
                 "cache" if self.cache_bytes else ", the cache size could not be read on this system")
        return (f"{peaks}; memory bandwidth **{self.bandwidth / 1e9:,.1f} GB/s** (a copy of "
                f"{self.buffer_bytes / 2**20:,.0f} MiB{cache}); fp32 ridge point **{self.ridge_point:,.1f} FLOPs "
                "per byte**")

    def as_probe(self, dtype: torch.dtype | str = "float32") -> Probe:
        """The older one-dtype `Probe` view of this measurement (for code that takes a Probe)."""
        name = str(dtype).removeprefix("torch.")
        return Probe(self.device, self.name, name, self.peak(name), self.bandwidth, self.threads)


def course_probe(device: torch.device | str | None = None) -> CourseProbe:
    """The course's one hardware probe, always with the same settings: the matmul peak of each dtype in
    COURSE_PROBE_DTYPES that `supports_dtype` allows on `device`, and copy bandwidth on a buffer of
    `bandwidth_buffer_bytes(device)` (several times the last-level cache, so the copy streams from main memory)."""
    device = torch.device(device) if device is not None else pick_device()
    sizes = (256, 512, 1024) if device.type == "cpu" else (1024, 2048, 4096)
    peaks = {str(dt).removeprefix("torch."): matmul_peak(device, dt, sizes)
             for dt in COURSE_PROBE_DTYPES if supports_dtype(device, dt)}
    buffer = bandwidth_buffer_bytes(device)
    src = torch.empty(buffer // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=10).low
    bandwidth = 2 * buffer / seconds
    del src, dst
    return CourseProbe(str(device), device_name(device), peaks, bandwidth, buffer,
                       last_level_cache_bytes(device), torch.get_num_threads())


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
