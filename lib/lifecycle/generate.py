"""Inference: logits → probabilities → a token, prefill, one decode step, and generation with or without a KV cache.

The chain, each step small enough to run in its own notebook cell (after gpt-fast's generate.py):

    logits_to_probs → sample → prefill → decode_one_token → iter_steps → iter_tokens → generate(_text)

(iter_steps yields each token with the logits it came from; iter_tokens only the tokens, for streaming.)

*Prefill* runs the whole prompt through the model in one forward pass and fills the KV cache; *decode* then
feeds one token at a time, attending to the cached keys and values instead of recomputing them. Without a cache,
every step re-runs the whole context: the same logits, at a cost that grows with the context.

Context-window rule (the same with and without the cache, so both produce identical tokens): the model sees
tokens seq[s:n], where s = context_start(n). While n <= block_size, s = 0. When the text outgrows the window,
the window jumps forward so that only the last `keep` tokens (default: half the window) remain, and with a cache
the cache is rebuilt from those tokens by one prefill. Positions restart at 0 inside each window. keep = block_size
is nanoGPT's rule (always the last block_size tokens); it makes the cache useless past the window, since every step
then rebuilds it, which is why the default keeps half and rebuilds once every block_size // 2 tokens.

A prompt is a sequence of token ids, (T,) or (B, T). An empty prompt is an error (there is no start-of-text token
to stand in for it); `generate_text` defines the empty string as a newline, i.e. text that starts on a fresh line.

`time_request` times one request token by token: time to first token (TTFT, dominated by prefill) and the gaps
between later tokens (one decode step each).

How each next token is picked is one value, a `Sampling(temperature, top_k, top_p)`, the library's one type for
sampling settings: temperature 0 means greedy (argmax); top_k keeps the k most likely tokens; top_p keeps the
smallest set of tokens whose probability adds up to at least p (nucleus sampling, Holtzman et al. 2020). The
generation functions take `sampling=Sampling(...)`, or, as a convenience for lessons, the loose keywords
`temperature=`, `top_k=`, `top_p=`, which build one (`as_sampling`).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .checks import ArgumentTypeError, is_int, require_int, require_number
from .measure.timing import synchronize
from .model import GPT, KVCache


@dataclass(frozen=True)
class Sampling:
    """How each next token is picked from the logits; checked when made.

    temperature: 0 is greedy (argmax, and top_k / top_p change nothing); > 0 divides the logits before the softmax.
    top_k: keep the k most likely tokens (None: no filter). top_p: keep the most likely tokens until their
    probability reaches p (None or 1: no filter).
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        require_number("temperature", self.temperature, low=0, hint="0 = greedy")
        require_int("top_k", self.top_k, low=1, optional=True, hint="None: no top-k filter")
        require_number("top_p", self.top_p, low=0, high=1, low_open=True, optional=True,
                       hint="None: no nucleus filter")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def canonical(self) -> Sampling:
        """The same rule written one way: greedy drops the filters (they cannot matter), top_p=1 is no filter."""
        if self.greedy:
            return GREEDY
        top_p = None if self.top_p is None or self.top_p == 1 else float(self.top_p)
        return Sampling(float(self.temperature), None if self.top_k is None else int(self.top_k), top_p)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The distribution (..., V) tokens are drawn from when sampling (see logits_to_probs)."""
        return logits_to_probs(logits, self.temperature, self.top_k, self.top_p)


GREEDY = Sampling()


def require_sampling(sampling) -> Sampling:
    """`sampling` if it is a Sampling, else raise (a dict or a bare temperature is a likely slip)."""
    if not isinstance(sampling, Sampling):
        raise ArgumentTypeError(f"sampling must be a lifecycle.generate.Sampling (e.g. Sampling(temperature=0.8)), "
                                f"got {sampling!r}")
    return sampling


def as_sampling(sampling: Sampling | None = None, temperature: float | None = None, top_k: int | None = None,
                top_p: float | None = None) -> Sampling:
    """The Sampling a call asked for: `sampling` itself, or one built from the loose keywords (the lessons'
    convenience, `generate(..., temperature=0.8)`); both at once is an error, neither is greedy."""
    loose = {k: v for k, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)) if v is not None}
    if sampling is None:
        return Sampling(**loose)
    require_sampling(sampling)
    if loose:
        raise ValueError(f"give either sampling= or {'/'.join(loose)}=, not both")
    return sampling


# The most new tokens one call may ask for. The window slides, so generation itself has no length limit, but the
# text is kept in one buffer of prompt + max_new_tokens ids: 10**9 would allocate gigabytes and run for days.
MAX_NEW_TOKENS = 100_000


def check_max_new_tokens(max_new_tokens) -> None:
    """Raise ValueError unless max_new_tokens is an integer in [0, MAX_NEW_TOKENS]."""
    require_int("max_new_tokens", max_new_tokens, low=0, high=MAX_NEW_TOKENS,
                fix="for longer text, call again with the end of the last output as the prompt")


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """Probabilities (..., V) from logits (..., V) after temperature, top-k and top-p filtering (temperature > 0).

    top_k keeps every token whose logit is at least the k-th largest (ties with it included); top_p then keeps
    the most likely tokens until their probabilities add up to top_p (the most likely token always stays, so
    top_p=0 here means greedy; the generation functions reject top_p <= 0 as a likely mistake).
    """
    logits = logits.float() / max(temperature, 1e-8)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)  # ties: lowest id first, as argmax
        before = sorted_probs.cumsum(-1) - sorted_probs  # probability mass ranked above each token
        drop = before >= top_p
        drop[..., 0] = False  # the top token always stays (with top_p <= 0, nothing else would)
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(logits: torch.Tensor, sampling: Sampling = GREEDY, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, V) → (B,): argmax when `sampling` is greedy, else a draw from its probs."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    probs = sampling.probs(logits)
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
    """First token the model sees when `n` tokens exist (see the module docstring for the rule).

    keep: how many tokens stay in view when the window slides, 1..block_size (default max(1, block_size // 2)).
    """
    keep = max(1, block_size // 2) if keep is None else keep
    if not is_int(keep) or not 0 < keep <= block_size:
        raise ValueError(f"keep must be an integer in [1, block_size={block_size}], got {keep!r}")
    if n <= block_size:
        return 0
    stride = block_size + 1 - keep
    return math.ceil((n - block_size) / stride) * stride


def _as_batch(prompt, device, vocab_size: int | None = None) -> torch.Tensor:
    """The prompt as a (B, T) tensor of token ids on `device`, checked."""
    idx = torch.as_tensor(prompt, device=device)
    idx = idx.view(1, -1) if idx.dim() == 1 else idx
    if idx.dim() != 2:
        raise ValueError(f"the prompt must be token ids of shape (T,) or (B, T), got shape {tuple(idx.shape)}")
    if idx.numel() == 0:
        raise ValueError("the prompt is empty: give at least one token (generate_text turns '' into a newline)")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"the prompt must hold integer token ids, got dtype {idx.dtype}")
    idx = idx.long()
    if vocab_size is not None:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"prompt token ids must be in [0, vocab_size={vocab_size}), got ids from {lo} to {hi}")
    return idx


def iter_steps(model: GPT, prompt, max_new_tokens: int, *, use_cache: bool = True, sampling: Sampling | None = None,
               temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None, generator: torch.Generator | None = None,
               keep: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (token (B,), the logits (B, V) it was drawn from) one step at a time; arguments as iter_tokens.

    Every argument is checked here, before the first step runs.
    """
    check_max_new_tokens(max_new_tokens)
    sampling = as_sampling(sampling, temperature, top_k, top_p)
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    device = next(model.parameters()).device
    seq = _as_batch(prompt, device, model.config.vocab_size)
    context_start(seq.shape[1], model.config.block_size, keep)  # checks keep
    if not sampling.greedy and generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    return _steps(model, seq, max_new_tokens, use_cache, sampling, generator, keep)


@torch.inference_mode()
def _steps(model: GPT, seq: torch.Tensor, max_new_tokens: int, use_cache: bool, sampling: Sampling,
           generator: torch.Generator | None, keep: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if max_new_tokens == 0:
        return
    W = model.config.block_size
    B, n = seq.shape
    buf = torch.empty(B, n + max_new_tokens, dtype=torch.long, device=seq.device)  # the growing text
    buf[:, :n] = seq
    cache = KVCache.for_model(model, B) if use_cache else None  # allocated once, reused by every step
    s = context_start(n, W, keep)
    logits = prefill(model, buf[:, s:n], cache)
    for _ in range(max_new_tokens):
        token = sample(logits, sampling, generator)
        buf[:, n] = token
        n += 1
        yield token, logits
        if n == buf.shape[1]:
            break
        s_next = context_start(n, W, keep)
        if not use_cache:
            logits = prefill(model, buf[:, s_next:n])  # the whole window again: cost grows with its length
        elif s_next != s:  # the window slid: rebuild the cache from the tokens kept
            cache.reset()
            logits = prefill(model, buf[:, s_next:n], cache)
        else:
            logits = decode_one_token(model, token, cache)  # one position: cost nearly flat in the context
        s = s_next


def iter_tokens(model: GPT, prompt, max_new_tokens: int, *, use_cache: bool = True, sampling: Sampling | None = None,
                temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                seed: int | None = None, generator: torch.Generator | None = None,
                keep: int | None = None) -> Iterator[torch.Tensor]:
    """Yield new tokens (B,) one step at a time (streaming), continuing prompt (T,) or (B, T) token ids.

    use_cache: prefill once, then one decode step per token (False: re-run the whole window every step; the
    tokens are the same). sampling: a Sampling (default greedy), or the loose temperature / top_k / top_p keywords;
    when it samples, tokens are drawn with `generator`, or a fresh one seeded with `seed` (reproducible), or
    torch's global generator. keep: see context_start.
    Bad arguments raise ValueError at the call, before any token is produced.
    """
    steps = iter_steps(model, prompt, max_new_tokens, use_cache=use_cache, sampling=sampling, temperature=temperature,
                       top_k=top_k, top_p=top_p, seed=seed, generator=generator, keep=keep)
    return (token for token, _ in steps)


def generate(model: GPT, prompt, max_new_tokens: int, **kwargs) -> torch.Tensor:
    """The new tokens (B, max_new_tokens) after prompt; keyword arguments as iter_tokens."""
    tokens = list(iter_tokens(model, prompt, max_new_tokens, **kwargs))
    device = next(model.parameters()).device
    if not tokens:
        return torch.empty(_as_batch(prompt, device).shape[0], 0, dtype=torch.long, device=device)
    return torch.stack(tokens, dim=1)


@dataclass
class RequestTiming:
    """When each new token of one request was ready, in seconds after the request arrived, and the tokens."""

    prompt_tokens: int
    arrivals: list[float] = field(default_factory=list)  # arrivals[0] is the time to first token
    tokens: list[torch.Tensor] = field(default_factory=list)  # (B,) per step
    logits: list[torch.Tensor] = field(default_factory=list)  # (B, V) per step, when asked for (keep_logits)

    @property
    def ttft_s(self) -> float:
        """Time to first token: prefill of the prompt plus sampling the first token."""
        return self.arrivals[0]

    @property
    def gaps_s(self) -> list[float]:
        """Seconds between consecutive tokens after the first (one decode step each)."""
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]

    @property
    def ms_per_token(self) -> float:
        """Median gap between tokens after the first, in milliseconds (the decode speed a reader sees)."""
        return 1e3 * statistics.median(self.gaps_s)

    @property
    def total_s(self) -> float:
        return self.arrivals[-1]

    @property
    def tokens_per_s(self) -> float:
        """Decode throughput after the first token."""
        return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])


def time_request(model: GPT, prompt, max_new_tokens: int, *, keep_logits: bool = False,
                 **kwargs) -> RequestTiming:
    """Run one request and time the arrival of each new token; keyword arguments as iter_tokens.

    A token counts as arrived when the device has finished computing it (on a GPU, after a synchronize).
    keep_logits: also keep the logits each token was drawn from (to compare runs, e.g. with and without cache).
    """
    require_int("max_new_tokens", max_new_tokens, low=2, hint="two tokens at least, to time a request")
    steps = iter_steps(model, prompt, max_new_tokens, **kwargs)  # checks every argument before the clock starts
    device = next(model.parameters()).device
    timing = RequestTiming(prompt_tokens=_as_batch(prompt, device).shape[1])
    synchronize(device)
    t0 = time.perf_counter()
    for token, logits in steps:
        synchronize(device)
        timing.arrivals.append(time.perf_counter() - t0)
        timing.tokens.append(token)
        if keep_logits:
            timing.logits.append(logits)
    return timing


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


def sampling_summary(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                     seed: int = 0) -> dict[str, float]:
    """What a decoding rule does to one next-token distribution (V,): the lesson-03 sliders' pure function.

    top_k 0 and top_p 1.0 mean "off"; temperature 0 is greedy. Returns the probability of the favourite, how many
    tokens can still be drawn, the entropy in bits, and one token drawn with `seed` (the argmax when greedy).
    """
    rule = Sampling(temperature, top_k or None, top_p)
    probs = logits_to_probs(logits.float().cpu(), max(rule.temperature, 1e-8), rule.top_k, rule.top_p)
    token = int(sample(logits.float().cpu()[None], rule, torch.Generator().manual_seed(seed))[0])
    nz = probs[probs > 0]
    return {"top_prob": float(probs.max()), "kept": float((probs > 0).sum()),
            "entropy_bits": float(-(nz * nz.log2()).sum()), "sample": float(token)}
