"""Projecting a serving stack onto a GPU-served model by roofline arithmetic (not a measurement).

A decode step reads every weight once and every live request's keys and values once; on a GPU at modest batch
sizes that memory traffic, not arithmetic, sets its time (the roofline model: Williams, Waterman & Patterson,
"Roofline", CACM 2009; for LLM decoding e.g. Pope et al. 2022, "Efficiently Scaling Transformer Inference"):

    step time   = max(bytes read / bandwidth, FLOPs / (peak FLOP/s · utilization))
    bytes read  = weight bytes + batch · KV bytes of one request (at its mean context)
    FLOPs       = 2 · n_params · batch

Batching shares the weight read among `batch` requests until the step turns compute-bound or the KV cache fills
the memory the weights leave (`kv_limited_batch`). A prefill is compute-bound (every prompt token is a matmul row).
Speculative decoding at batch 1 follows Leviathan et al.: a draft step costs c target steps with c = the draft's
bytes / the target's bytes in this bandwidth-bound regime. A response-cache hit costs nothing; a prefix-cache hit
skips the shared prompt's prefill.

Every input is a named field of `Deployment`; every output is arithmetic from them. Lesson 10 compares it with the
factors measured on the CPU at the course's scale (where a decode step is dominated by per-call overhead, not by
memory traffic, so the two need not agree).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import require_number
from .costs import SEED, usd_per_million_tokens
from .device import ACCELERATORS
from .pricing import SERVED_MODELS, ServedModel
from .speculative import expected_speedup


def attainable_flops(intensity, peak_flops: float, bandwidth: float):
    """The roofline: FLOP/s a kernel can reach at `intensity` FLOPs per byte moved, min(peak, intensity · bandwidth).

    `intensity` may be a number or a NumPy array (one point per intensity, for a plot)."""
    import numpy as np

    for name, v in (("peak_flops", peak_flops), ("bandwidth", bandwidth)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    attainable = np.minimum(peak_flops, np.asarray(intensity, dtype=float) * bandwidth)
    return float(attainable) if np.ndim(attainable) == 0 else attainable


def kv_limited_batch(memory_bytes: float, weight_bytes: float, kv_bytes_per_request: float) -> int:
    """Requests whose KV cache fits in the memory the weights leave: floor((memory - weights) / KV per request)."""
    for name, v in (("memory_bytes", memory_bytes), ("weight_bytes", weight_bytes),
                    ("kv_bytes_per_request", kv_bytes_per_request)):
        require_number(name, v, low=0, low_open=True, hint="bytes")
    if weight_bytes >= memory_bytes:
        raise ValueError(f"the weights ({weight_bytes:.3g} bytes) do not fit in {memory_bytes:.3g} bytes of memory; "
                         "use more GPUs or fewer bytes per weight")
    return int((memory_bytes - weight_bytes) // kv_bytes_per_request)


@dataclass(frozen=True)
class Deployment:
    """One replica serving one model. Defaults: Llama-2-70B in 16-bit on two H100s, lesson 09's $ per GPU-hour."""

    model: ServedModel = SERVED_MODELS["Llama-2-70B"]
    accelerator: str = "H100-SXM5-80GB"
    n_gpus: int = 2  # tensor-parallel: bandwidth, FLOP/s and memory add up
    bytes_per_param: float = 2.0
    kv_bytes_per_value: float = 2.0
    prompt_tokens: int = 400  # of which `shared_prompt_tokens` are a system prompt every request starts with
    shared_prompt_tokens: int = 300
    reply_tokens: int = 200
    memory_usable: float = 0.9  # share of memory for weights + KV (the rest: activations, runtime)
    utilization: float = 0.5  # of peak FLOP/s reached by a compute-bound step
    max_batch: int = 256  # the engine's own cap on rows
    usd_per_gpu_hour: float = SEED.usd_per_gpu_hour

    @property
    def gpu(self):
        return ACCELERATORS[self.accelerator]

    def weight_bytes(self) -> float:
        return self.model.weight_bytes(self.bytes_per_param)

    def kv_per_request(self) -> float:
        """KV bytes of one request at its mean context (prompt + half the reply)."""
        return self.model.kv_bytes(self.prompt_tokens + self.reply_tokens // 2, self.kv_bytes_per_value)

    def batch(self) -> int:
        memory = self.n_gpus * self.gpu.memory_gb * 1e9 * self.memory_usable
        return max(1, min(self.max_batch, kv_limited_batch(memory, self.weight_bytes(), self.kv_per_request())))

    def flops_per_s(self) -> float:
        return self.n_gpus * (self.gpu.bf16_flops or self.gpu.fp16_flops) * self.utilization

    def decode_step_s(self, batch: int) -> float:
        read = self.weight_bytes() + batch * self.kv_per_request()
        return max(read / (self.n_gpus * self.gpu.bandwidth), 2 * self.model.n_params * batch / self.flops_per_s())

    def prefill_s(self, tokens: int) -> float:
        return 2 * self.model.n_params * tokens / self.flops_per_s()


def project(d: Deployment = Deployment(), *, hit_rate: float = 0.0, alpha: float = 0.8, gamma: int = 4,
            draft_params: float = 7e9) -> list[dict]:
    """Tokens/s and $ per million output tokens of one replica: naive, each technique alone, and batching + both
    caches. Each row is GPU-seconds per request = prefill + reply · step(batch) / batch, times (1 - hit_rate) for
    the response cache. Speculative: batch 1, draft cost ratio c = draft_params / n_params."""
    c = draft_params / d.model.n_params
    spec = expected_speedup(alpha, gamma, c)
    B = d.batch()

    def row(name, batch, prefill_tokens, hit=0.0, speedup=1.0):
        seconds = (d.prefill_s(prefill_tokens) + d.reply_tokens * d.decode_step_s(batch) / batch / speedup) * (1 - hit)
        tok_s = d.reply_tokens / seconds
        return {"server": name, "batch": batch, "tok/s": tok_s,
                "$/M tokens": usd_per_million_tokens(d.n_gpus * d.usd_per_gpu_hour, tok_s)}

    unshared = d.prompt_tokens - d.shared_prompt_tokens
    rows = [row("naive", 1, d.prompt_tokens), row("batching", B, d.prompt_tokens),
            row("response cache", 1, d.prompt_tokens, hit_rate), row("prefix cache", 1, unshared),
            row(f"speculative (α={alpha:g}, γ={gamma}, c={c:.2f})", 1, d.prompt_tokens, speedup=spec),
            row("stack: batching + both caches", B, unshared, hit_rate)]
    base = rows[0]["tok/s"]
    for r in rows:
        r["× naive"] = r["tok/s"] / base
    return rows
