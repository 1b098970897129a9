"""Decode with a compiled step: gpt-fast's static-shape decode step under `torch.compile`, next to eager decode.

At batch 1 a decode step of the course's models is bound by per-operation overhead, not by arithmetic or memory
bandwidth (lesson 03's roofline): each layer runs about fifteen small operations, each dispatched one by one from
Python. `torch.compile` (TorchInductor) traces the step once into a graph, fuses the elementwise work (LayerNorm,
GELU, residual adds, the cache write) into a few C++ loops and calls the matrix products directly, so a step pays
that overhead far fewer times.

Compiling pays only if the step is traced once. Eager decode (`lifecycle.generate.decode_one_token`) reads the
Python int `cache.length` and attends over the length + 1 filled positions, so its shapes change at every step and
a compiled version keeps re-specializing (or falls back to a slower graph with symbolic shapes). The static path,
`GPT.forward(..., input_pos=pos)`, takes the position as a tensor, writes keys and values into their cache slots by
index and attends over the whole preallocated cache under a mask: every step has the same shapes, so one graph
serves them all. The caller keeps the Python int `cache.length` in step, outside the graph.

    decode_one_token_static → compile_decode_step → generate_static → first_compiled_run → compare_compiled
    (describe puts a comparison in words)

The prompt is prefilled eagerly: prompt lengths vary, and a prefill runs once per request.

References: gpt-fast (pytorch-labs, 2023), generate.py; Ansel et al. (2024), "PyTorch 2: Faster Machine Learning
Through Dynamic Python Bytecode Transformation and Graph Compilation" (ASPLOS).
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from .generate import generate, prefill
from .measure.timing import interleaved, synchronize
from .model import GPT, KVCache

Step = Callable[[GPT, torch.Tensor, torch.Tensor, KVCache], torch.Tensor]
SLOTS = 64  # generate_static sizes its cache in multiples of this many positions


def decode_one_token_static(model: GPT, token: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed one token per row (B,) into cache slot pos ((1,) long tensor); return the next-token logits (B, V).

    Every call has the same shapes, whatever the position. cache.length is not advanced: the caller does that.
    """
    logits, _ = model(token.view(-1, 1), cache=cache, input_pos=pos)
    return logits[:, -1]


def compile_decode_step() -> Step:
    """decode_one_token_static compiled by torch.compile (TorchInductor); the work happens at its first call.

    fullgraph=True makes a graph break an error instead of a silent fall back to Python; dynamic=False because
    no shape ever changes. Nothing global is set: the options belong to this compiled function only.
    """
    return torch.compile(decode_one_token_static, fullgraph=True, dynamic=False)


def compiler_problem(device: torch.device | str = "cpu") -> str | None:
    """Why torch.compile cannot build CPU kernels here (TorchInductor needs a C++ compiler), or None if it can."""
    if torch.device(device).type != "cpu":
        return None
    if not any(shutil.which(cc) for cc in ("g++", "clang++", "c++")):
        return "no C++ compiler found (TorchInductor needs g++ or clang++ to build its CPU kernels)"
    return None


@torch.inference_mode()
def generate_static(model: GPT, prompt, max_new_tokens: int, step: Step = decode_one_token_static) -> torch.Tensor:
    """Greedy new tokens (B, max_new_tokens) after prompt (T,) or (B, T), one `step` (eager or compiled) per token.

    The same tokens as `lifecycle.generate.generate(model, prompt, max_new_tokens)` up to float rounding. The text
    must fit the context window (T + max_new_tokens - 1 <= block_size): this loop never slides it.
    """
    idx = torch.as_tensor(prompt, device=next(model.parameters()).device)
    idx = idx.view(1, -1) if idx.dim() == 1 else idx
    B, T = idx.shape
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if T == 0 or T + max_new_tokens - 1 > model.config.block_size:
        raise ValueError(f"a prompt of {T} tokens plus {max_new_tokens} new ones must fit the "
                         f"{model.config.block_size}-token window (at least one prompt token)")
    # Only as many slots as this text needs, rounded up so that nearby lengths share one compiled graph: every step
    # attends over all of them (gpt-fast sizes its cache the same way)
    max_len = min(model.config.block_size, SLOTS * math.ceil((T + max_new_tokens - 1) / SLOTS))
    cache = KVCache.for_model(model, B, max_len=max_len)
    logits = prefill(model, idx, cache)  # eager: (B, V); cache.length == T
    pos = torch.tensor([T], device=idx.device)  # slot of the next token, a tensor so that no shape depends on it
    tokens = [logits.argmax(dim=-1)]
    for i in range(max_new_tokens - 1):
        # The first step checks all of torch.compile's guards (and compiles, the first time). Later ones pass the same
        # model, cache and shapes, so they skip those checks, about a fifth of a compiled step here (no-op if eager).
        with torch.compiler.set_stance(skip_guard_eval_unsafe=i > 0):
            logits = step(model, tokens[-1], pos, cache)
        pos += 1  # in place: the compiled graph sees the same tensor holding the next position
        cache.length += 1
        tokens.append(logits.argmax(dim=-1))
    return torch.stack(tokens, dim=1)


@dataclass
class FirstRun:
    """A compiled step after its first, compiling run (tokens and seconds), or why torch.compile could not run."""

    step: Step | None
    tokens: torch.Tensor | None = None  # (B, new_tokens), greedy
    seconds: float = 0.0  # tracing, compiling and one generation
    why_not: str | None = None


def first_compiled_run(model: GPT, prompt: torch.Tensor, new_tokens: int) -> FirstRun:
    """Compile the decode step and run generate_static with it once (which compiles); say why if that fails."""
    device = next(model.parameters()).device
    if (problem := compiler_problem(device)) is not None:
        return FirstRun(None, why_not=problem)
    step = compile_decode_step()
    synchronize(device)
    t0 = time.perf_counter()
    try:
        tokens = generate_static(model, prompt, new_tokens, step)
    except Exception as e:  # a missing or broken toolchain surfaces here, at the first call
        return FirstRun(None, why_not=f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    synchronize(device)
    return FirstRun(step, tokens, time.perf_counter() - t0)


def compare_compiled(model: GPT, new_tokens: int = 32, repeats: int = 5, prompt_len: int = 1) -> dict:
    """Eager against compiled greedy decode at batch 1: tokens/s of each, the ratio, compile seconds, same tokens.

    eager: `lifecycle.generate.generate` (the course's decode loop); compiled: `generate_static` with
    `compile_decode_step()`. Compile time is the first compiled run minus the median compiled run, reported apart
    from the speeds, which are medians of `repeats` interleaved runs after a warm-up. If torch.compile cannot run
    here, the result says why (available False) and holds the eager speed only. `describe(result)` puts it in words.
    """
    device = next(model.parameters()).device
    prompt = (torch.arange(prompt_len, device=device) * 7 % model.config.vocab_size)[None]  # (1, prompt_len)
    eager = partial(generate, model, prompt, new_tokens)
    first = first_compiled_run(model, prompt, new_tokens)
    result = {"new_tokens": new_tokens, "available": first.why_not is None, "why_not": first.why_not}
    if first.why_not is not None:
        seconds = interleaved({"eager": eager}, repeats=repeats, device=device)["eager"].median
        return result | {"eager_tokens_per_s": new_tokens / seconds}
    compiled = partial(generate_static, model, prompt, new_tokens, first.step)
    times = interleaved({"eager": eager, "compiled": compiled}, repeats=repeats, device=device)
    eager_s, compiled_s = times["eager"].median, times["compiled"].median
    return result | {"eager_tokens_per_s": new_tokens / eager_s, "compiled_tokens_per_s": new_tokens / compiled_s,
                     "speedup": eager_s / compiled_s, "compile_s": max(0.0, first.seconds - compiled_s),
                     "same_tokens": torch.equal(first.tokens, eager())}


def describe(result: dict) -> str:
    """One or two sentences on a compare_compiled result, worded by what was measured."""
    eager = result["eager_tokens_per_s"]
    if not result["available"]:
        return (f"torch.compile is not available here ({result['why_not']}), so decode stays eager: "
                f"{eager:.0f} tokens/s.")
    r, compiled, compile_s = result["speedup"], result["compiled_tokens_per_s"], result["compile_s"]
    speeds = f"({eager:.0f} → {compiled:.0f} tokens/s at batch 1; compiling took {compile_s:.0f} s"
    if r >= 1.05:
        saved = 1 / eager - 1 / compiled  # seconds saved per token
        return (f"On this machine compiling made decode {r:.2f}× faster {speeds}, paid back after about "
                f"{compile_s / saved:,.0f} tokens), because at batch 1 a step is mostly per-operation overhead: "
                "the compiled step fuses each layer's small operations into a few C++ loops and skips Python "
                "between them, while the arithmetic stays the same.")
    if r <= 0.95:
        return (f"On this machine compiling made decode {1 / r:.2f}× slower {speeds}), most likely because the "
                "overhead it removes is a smaller part of a step here than what the static step adds: attention over "
                "every slot of the preallocated cache instead of only the filled ones (on a busy machine, timings "
                "also vary from run to run; run the cell again to see).")
    return (f"On this machine compiling left decode about as fast as eager ({r:.2f}×) {speeds}): the overhead "
            "it removes and the fixed-size attention it adds roughly cancel out.")
