"""Inference: logits → probabilities → a token, prefill, one decode step, and generation with or without a KV cache.

The chain, each step small enough to run in its own notebook cell (after gpt-fast's generate.py):

    logits_to_probs → sample → prefill → decode_one_token → iter_tokens → generate / generate_text

*Prefill* runs the whole prompt through the model in one forward pass and fills the KV cache; *decode* then
feeds one token at a time, attending to the cached keys and values instead of recomputing them. Without a cache,
every step re-runs the whole context: the same logits, at a cost that grows with the context.

Context-window rule (the same with and without the cache, so both produce identical tokens): the model sees
tokens seq[s:n], where s = context_start(n). While n <= block_size, s = 0. When the text outgrows the window,
the window jumps forward so that only the last `keep` tokens (default: half the window) remain, and with a cache
the cache is rebuilt from those tokens by one prefill. Positions restart at 0 inside each window.

Temperature 0 means greedy (argmax). top_k keeps the k most likely tokens; top_p keeps the smallest set of tokens
whose probability adds up to at least p (nucleus sampling, Holtzman et al. 2020).
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from .model import GPT, KVCache


def check_sampling(temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError naming the parameter when a sampling setting is out of range."""
    if not isinstance(temperature, (int, float)) or math.isnan(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """Probabilities (..., V) from logits (..., V) after temperature, top-k and top-p filtering (temperature > 0)."""
    logits = logits.float() / max(temperature, 1e-8)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # probability mass ranked above each token
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, V) → (B,): argmax at temperature 0, else a draw from logits_to_probs."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = logits_to_probs(logits, temperature, top_k, top_p)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


def prefill(model: GPT, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
    """Run the prompt idx (B, T) in one pass, filling `cache`; return the next-token logits (B, V)."""
    logits, _ = model(idx, cache=cache)
    return logits[:, -1]


def decode_one_token(model: GPT, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed one token per row (B,) through the cached model; return the next-token logits (B, V)."""
    logits, _ = model(token.view(-1, 1), cache=cache)
    return logits[:, -1]


def context_start(n: int, block_size: int, keep: int | None = None) -> int:
    """First token the model sees when `n` tokens exist (see the module docstring for the rule)."""
    keep = block_size // 2 if keep is None else keep
    if not 0 < keep < block_size:
        raise ValueError(f"keep must be in (0, block_size={block_size}), got {keep}")
    if n <= block_size:
        return 0
    stride = block_size + 1 - keep
    return math.ceil((n - block_size) / stride) * stride


def _as_batch(prompt, device) -> torch.Tensor:
    idx = torch.as_tensor(prompt, dtype=torch.long, device=device)
    idx = idx.view(1, -1) if idx.dim() == 1 else idx
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token (generate_text turns '' into a newline)")
    return idx


@torch.inference_mode()
def iter_tokens(model: GPT, prompt, max_new_tokens: int, *, use_cache: bool = True, temperature: float = 0.0,
                top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                generator: torch.Generator | None = None, keep: int | None = None) -> Iterator[torch.Tensor]:
    """Yield new tokens (B,) one step at a time, continuing prompt (T,) or (B, T) token ids."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_sampling(temperature, top_k, top_p)
    device = next(model.parameters()).device
    seq = _as_batch(prompt, device)
    if temperature > 0 and generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    W = model.config.block_size
    B, n = seq.shape
    buf = torch.empty(B, n + max_new_tokens, dtype=torch.long, device=device)  # the growing text
    buf[:, :n] = seq
    cache = KVCache.for_model(model, B) if use_cache else None
    s = context_start(n, W, keep)
    logits = prefill(model, buf[:, s:n], cache)
    for _ in range(max_new_tokens):
        token = sample(logits, temperature, top_k, top_p, generator)
        buf[:, n] = token
        n += 1
        yield token
        if n == buf.shape[1]:
            break
        s_next = context_start(n, W, keep)
        if not use_cache:
            logits = prefill(model, buf[:, s_next:n])
        elif s_next != s:  # the window slid: rebuild the cache from the tokens kept
            cache.reset()
            logits = prefill(model, buf[:, s_next:n], cache)
        else:
            logits = decode_one_token(model, token, cache)
        s = s_next


def generate(model: GPT, prompt, max_new_tokens: int, **kwargs) -> torch.Tensor:
    """The new tokens (B, max_new_tokens) after prompt; keyword arguments as iter_tokens."""
    tokens = list(iter_tokens(model, prompt, max_new_tokens, **kwargs))
    device = next(model.parameters()).device
    if not tokens:
        return torch.empty(_as_batch(prompt, device).shape[0], 0, dtype=torch.long, device=device)
    return torch.stack(tokens, dim=1)


def encode_prompt(tokenizer, prompt: str, on_unknown: str = "error", replacement: str = " ") -> list[int]:
    """Token ids of `prompt`. '' becomes a newline (text starts as after a line break).

    on_unknown="error" raises, naming the characters the model does not know; "replace" swaps each for `replacement`.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if on_unknown not in ("error", "replace"):
        raise ValueError(f"on_unknown must be 'error' or 'replace', got {on_unknown!r}")
    prompt = prompt or "\n"
    if on_unknown == "replace":
        prompt = "".join(c if c in tokenizer.stoi else replacement for c in prompt)
    return tokenizer.encode(prompt)


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int = 200, *, stop: str | list[str] | None = None,
                  on_text: Callable[[str], None] | None = None, on_unknown: str = "error", **kwargs) -> str:
    """The continuation of `prompt` as text, streamed piece by piece to on_text if given.

    Generation ends after max_new_tokens or at the first stop string; the text is returned up to (not including)
    that stop string.
    """
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise ValueError("stop strings must be non-empty")
    ids = encode_prompt(tokenizer, prompt, on_unknown)
    text, sent = "", 0
    for token in iter_tokens(model, ids, max_new_tokens, **kwargs):
        text += tokenizer.chars[int(token[0])]
        hit = min((text.find(s) for s in stops if s in text), default=-1)
        if hit >= 0:
            text = text[:hit]
        # hold back the characters that could still grow into a stop string, so none is ever streamed
        safe = len(text) if hit >= 0 else max(sent, len(text) - max((len(s) - 1 for s in stops), default=0))
        if on_text and safe > sent:
            on_text(text[sent:safe])
            sent = safe
        if hit >= 0:
            return text
    if on_text and len(text) > sent:
        on_text(text[sent:])
    return text
