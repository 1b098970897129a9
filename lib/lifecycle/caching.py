"""Caching: answer a repeated question from memory, and never prefill the same prompt prefix twice.

Two levels, each with its own correctness rule:
- **Response cache** (`ResponseCache`, keyed by `response_key`): the whole answer to a query, returned when the
  same query comes again. A cached answer is a correct answer only when generation is a deterministic function of
  the key, so the key holds the model's identity, the prompt (Unicode-normalized) and every decoding parameter that
  changes the output, written in a canonical form (at temperature 0, top-k, top-p and the seed change nothing and
  are dropped). Sampling without a seed has no deterministic answer: its key is None and it is never cached.
  Eviction is least-recently-used, bounded in entries and/or bytes, with an optional time-to-live (TTL) read from
  an injectable clock, and counters for hits, misses, evictions and expirations.
- **Prefix cache** (`PrefixCache`): the per-layer keys and values (the KV cache) after a prompt prefix, such as a
  system prompt that every request starts with. A request that starts with a cached prefix copies that state and
  prefills only its remainder; the result equals a full prefill because causal attention makes the keys and
  values of the first L positions depend on those L tokens alone. Lookup picks the longest cached prefix of the
  request; memory is bounded in bytes, least-recently-used prefixes are evicted first.

`serve_with_caches` answers prompts in turn through either cache or both (what lesson 07 and
`python -m lifecycle.bench caching` time). The query stream those prompts come from, the hit rate an LRU cache
should see on it (Che's approximation) and what that hit rate saves are measurement, in
`lifecycle.measure.queries`.

References: W. Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention" (vLLM), SOSP 2023, and L. Zheng et al., "SGLang" (RadixAttention), 2024, for prefix sharing.
"""
from __future__ import annotations

import hashlib
import pickle
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

from .checks import is_int, require_int, require_number
from .generate import GREEDY, Sampling, as_sampling, decode_one_token, generate, prefill, require_sampling, \
    sample
from .measure.timing import synchronize
from .model import GPT, KVCache

_MISSING = object()

# ---- the response cache ----


def fingerprint(model: GPT) -> str:
    """A short hash of a model's configuration and weights: answers cached for other weights never match."""
    h = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()[:16]


def response_key(prompt: str, max_new_tokens: int, *, model_id: str = "", sampling: Sampling | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, stop: str | list[str] | None = None) -> tuple | None:
    """The canonical cache key of a request, or None when its answer must not be cached.

    `sampling` (or the loose temperature / top_k / top_p keywords, which build one) says how tokens are picked.
    None means sampling (temperature > 0) without a seed: each call should give a fresh draw, and a cached one
    would hand every user the same "random" answer. Parameters that cannot change the output are dropped
    (at temperature 0 the sampler is an argmax) or canonicalized (top_p=1 is no filter; stop strings are a set).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    require_int("max_new_tokens", max_new_tokens, low=0)
    rule = as_sampling(sampling, temperature, top_k, top_p).canonical()
    require_int("seed", seed, optional=True)
    stops = tuple(sorted(set([stop] if isinstance(stop, str) else (stop or []))))
    if rule.greedy:
        seed = None
    elif seed is None:
        return None
    return ("response/v1", model_id, unicodedata.normalize("NFC", prompt), int(max_new_tokens), rule.temperature,
            rule.top_k, rule.top_p, None if seed is None else int(seed), stops)


def _nbytes(x) -> int:
    if isinstance(x, str):
        return len(x.encode())
    if isinstance(x, (bytes, bytearray)):
        return len(x)
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(v) for v in x)
    if x is None or isinstance(x, (int, float)):
        return 8
    return len(pickle.dumps(x))


def entry_bytes(key: Hashable, value) -> int:
    """The default size of a cache entry: the payload bytes of its key and its value (not Python's overhead)."""
    return _nbytes(key) + _nbytes(value)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0  # pushed out to make room
    expirations: int = 0  # dropped because their TTL ran out
    bypassed: int = 0  # uncacheable requests (key None)
    rejected: int = 0  # single entries larger than the whole byte budget

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


def _is_count(value, low: int = 1) -> bool:
    return is_int(value) and value >= low


def _check_capacity(name: str, value) -> None:
    require_int(name, value, low=1, optional=True, fix="to serve without a cache, do not create one")


class ResponseCache:
    """An LRU map from request keys to answers, bounded by `capacity` entries and/or `max_bytes`.

    Every operation first drops entries older than `ttl` seconds (by `clock()`, time of writing; reading does
    not renew them). `get` makes an entry the most recently used; `put` stores or replaces one and then evicts
    least-recently-used entries until both bounds hold. A None key (uncacheable) is never stored.
    """

    def __init__(self, capacity: int | None = None, max_bytes: int | None = None, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sizeof: Callable[[Hashable, object], int] = entry_bytes):
        _check_capacity("capacity", capacity)
        _check_capacity("max_bytes", max_bytes)
        if capacity is None and max_bytes is None:
            raise ValueError("give capacity (entries) or max_bytes (bytes), or both: an unbounded cache grows forever")
        require_number("ttl", ttl, low=0, low_open=True, optional=True, hint="seconds; None: no expiry")
        self.capacity, self.max_bytes, self.ttl, self.clock, self.sizeof = capacity, max_bytes, ttl, clock, sizeof
        self._data: OrderedDict = OrderedDict()  # key -> (value, size), least recently used first
        self._written: OrderedDict = OrderedDict()  # key -> time written, oldest first (the expiry order)
        self.nbytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        """Whether `key` is cached now (counts nothing, changes no order)."""
        self._expire()
        return key in self._data

    def keys(self) -> list:
        """Cached keys from least to most recently used (the eviction order)."""
        return list(self._data)

    def _expire(self) -> None:
        if self.ttl is None:
            return
        now = self.clock()
        while self._written and now - next(iter(self._written.values())) >= self.ttl:
            key, _ = self._written.popitem(last=False)
            self._remove(key)
            self.stats.expirations += 1

    def _remove(self, key) -> None:
        _, size = self._data.pop(key)
        self._written.pop(key, None)
        self.nbytes -= size

    def get(self, key, default=None):
        """The cached answer for `key` (a hit, now most recently used) or `default` (a miss)."""
        if key is None:
            self.stats.bypassed += 1
            return default
        self._expire()
        if key not in self._data:
            self.stats.misses += 1
            return default
        self._data.move_to_end(key)
        self.stats.hits += 1
        return self._data[key][0]

    def put(self, key, value) -> bool:
        """Store `value` under `key`; False when it is not stored (key None, or larger than max_bytes)."""
        if key is None:
            return False
        self._expire()
        if key in self._data:
            self._remove(key)
        size = int(self.sizeof(key, value))
        if self.max_bytes is not None and size > self.max_bytes:
            self.stats.rejected += 1
            return False
        self._data[key] = (value, size)
        self._written[key] = self.clock() if self.ttl is not None else 0.0
        self.nbytes += size
        while (self.capacity is not None and len(self._data) > self.capacity) or \
                (self.max_bytes is not None and self.nbytes > self.max_bytes):
            self._remove(next(iter(self._data)))
            self.stats.evictions += 1
        return True

    def get_or_compute(self, key, compute: Callable[[], object]) -> tuple[object, bool]:
        """(answer, hit): the cached answer, or compute() stored under key (computed afresh if key is None)."""
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value, True
        value = compute()
        self.put(key, value)
        return value, False


# ---- the prefix (KV) cache ----


def kv_bytes_per_token(model: GPT) -> int:
    """Bytes of keys and values one token occupies across all layers: 2 · n_layer · n_embd · element size."""
    p = next(model.parameters())
    return 2 * model.config.n_layer * model.config.n_embd * p.element_size()


@dataclass
class PrefixEntry:
    ids: tuple[int, ...]
    cache: KVCache  # max_len == len(ids): exactly the prefix, no spare room
    logits: torch.Tensor  # (1, V) next-token logits after the prefix
    nbytes: int


@dataclass
class PrefixStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    tokens_reused: int = 0  # prompt tokens whose keys/values came from the cache
    tokens_prefilled: int = 0  # tokens run through the model (the prefixes themselves included)


def _as_ids(ids, vocab_size: int, what: str) -> tuple[int, ...]:
    ids = ids.view(-1).tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if not ids:
        raise ValueError(f"the {what} is empty: give at least one token id")
    if not all(_is_count(i, 0) and i < vocab_size for i in ids):
        raise ValueError(f"the {what} must be token ids in [0, {vocab_size}); encode text with the tokenizer first")
    return tuple(int(i) for i in ids)


class PrefixCache:
    """The KV state after a few prompt prefixes of one model, reused by every request that starts with them.

    `add(prefix)` prefills a prefix once and stores its keys and values; `prefill(ids)` serves a request (B = 1):
    it finds the longest stored prefix of `ids`, copies its state into a fresh KVCache, and runs only the rest.
    The stored state is bounded by `max_bytes`; adding past it evicts the least recently used prefixes.
    """

    def __init__(self, model: GPT, max_bytes: int):
        _check_capacity("max_bytes", max_bytes)
        if max_bytes is None:
            raise ValueError("max_bytes must be a positive integer: the prefix cache holds model state in memory")
        self.model, self.max_bytes = model, max_bytes
        self._entries: OrderedDict[tuple[int, ...], PrefixEntry] = OrderedDict()  # least recently used first
        self.stats = PrefixStats()

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def prefixes(self) -> list[tuple[int, ...]]:
        """Stored prefixes from least to most recently used."""
        return list(self._entries)

    @torch.inference_mode()
    def add(self, prefix) -> PrefixEntry:
        """Prefill `prefix` (token ids) and store its KV state, evicting older prefixes to stay within max_bytes."""
        ids = _as_ids(prefix, self.model.config.vocab_size, "prefix")
        if len(ids) >= self.model.config.block_size:
            raise ValueError(f"a prefix of {len(ids)} tokens leaves no room in the {self.model.config.block_size}-token "
                             "context window for the rest of the request; use a shorter prefix")
        if ids in self._entries:
            self._entries.move_to_end(ids)
            return self._entries[ids]
        p = next(self.model.parameters())
        cache = KVCache.allocate(self.model.config, 1, max_len=len(ids), device=p.device, dtype=p.dtype)
        logits = prefill(self.model, torch.tensor([ids], device=p.device), cache)  # (1, V)
        entry = PrefixEntry(ids, cache, logits, cache.nbytes() + logits.numel() * logits.element_size())
        if entry.nbytes > self.max_bytes:
            raise ValueError(f"this prefix needs {entry.nbytes:,} bytes of KV state, more than max_bytes="
                             f"{self.max_bytes:,}; raise max_bytes or cache a shorter prefix")
        while self.nbytes + entry.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
            self.stats.evictions += 1
        self._entries[ids] = entry
        self.stats.tokens_prefilled += len(ids)
        return entry

    def lookup(self, ids) -> PrefixEntry | None:
        """The longest stored prefix of `ids` (now most recently used), or None."""
        return self._lookup(_as_ids(ids, self.model.config.vocab_size, "request"))

    def _lookup(self, ids: tuple[int, ...]) -> PrefixEntry | None:
        for n in sorted({len(k) for k in self._entries if len(k) <= len(ids)}, reverse=True):
            if (head := ids[:n]) in self._entries:
                self._entries.move_to_end(head)
                return self._entries[head]
        return None

    @torch.inference_mode()
    def prefill(self, ids) -> tuple[torch.Tensor, KVCache]:
        """Next-token logits (1, V) and a filled KVCache for request `ids`, reusing the longest cached prefix."""
        ids = _as_ids(ids, self.model.config.vocab_size, "request")
        if len(ids) > self.model.config.block_size:
            raise ValueError(f"the request has {len(ids)} tokens, more than the context window "
                             f"({self.model.config.block_size}); shorten it")
        cache = KVCache.for_model(self.model, 1)
        entry = self._lookup(ids)
        n = 0 if entry is None else len(entry.ids)
        if entry is not None:
            cache.k[:, :, :, :n] = entry.cache.k  # (n_layer, 1, nh, n, hs)
            cache.v[:, :, :, :n] = entry.cache.v
            cache.length = n
        self.stats.hits += entry is not None
        self.stats.misses += entry is None
        self.stats.tokens_reused += n
        self.stats.tokens_prefilled += len(ids) - n
        if n == len(ids):
            return entry.logits.clone(), cache
        device = next(self.model.parameters()).device
        return prefill(self.model, torch.tensor([ids[n:]], device=device), cache), cache


@torch.inference_mode()
def generate_with_prefix(prefixes: PrefixCache, ids, max_new_tokens: int, *, sampling: Sampling = GREEDY,
                         seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The new tokens (1, max_new_tokens) after `ids`, prefilling through the prefix cache.

    Token for token what `lifecycle.generate.generate` gives when prompt + output fit the context window (the only
    case served here: beyond it, generate() slides the window and the cached prefix is no longer the start).
    """
    model = prefixes.model
    n = len(ids)
    require_int("max_new_tokens", max_new_tokens, low=0)
    if n + max_new_tokens > model.config.block_size:
        raise ValueError(f"{n} prompt + {max_new_tokens} new tokens exceed the {model.config.block_size}-token window; "
                         "ask for fewer tokens or use lifecycle.generate.generate, which slides the window")
    require_sampling(sampling)
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    device = next(model.parameters()).device
    if not sampling.greedy and generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    logits, cache = prefixes.prefill(ids)
    out = torch.empty(1, max_new_tokens, dtype=torch.long, device=device)
    for i in range(max_new_tokens):
        out[:, i] = token = sample(logits, sampling, generator)
        if i + 1 < max_new_tokens:
            logits = decode_one_token(model, token, cache)
    return out


@dataclass
class Served:
    """One answered request."""

    text: str
    seconds: float  # wall time from request to complete answer
    hit: bool  # answered from the response cache
    tokens_reused: int  # prompt tokens whose keys/values came from the prefix cache
    tokens_prefilled: int  # prompt tokens run through the model


def serve_with_caches(model: GPT, tokenizer, prompts: list[str], max_new_tokens: int, *,
                      responses: ResponseCache | None = None, prefixes: PrefixCache | None = None, model_id: str = "",
                      sampling: Sampling = GREEDY, seed: int | None = None) -> list[Served]:
    """Answer each prompt in turn: from the response cache if it holds the answer, else by generating (through
    the prefix cache when one is given), picking tokens by `sampling` (seeded with `seed` when it samples)."""
    require_sampling(sampling)
    device = next(model.parameters()).device
    served = []
    for prompt in prompts:
        synchronize(device)
        t0 = time.perf_counter()
        key = response_key(prompt, max_new_tokens, model_id=model_id, sampling=sampling, seed=seed) if responses is not None else None
        cached = responses.get(key, _MISSING) if responses is not None else _MISSING
        reused = prefilled = 0
        if cached is _MISSING:
            ids = tokenizer.encode(unicodedata.normalize("NFC", prompt))
            if prefixes is not None:
                before = (prefixes.stats.tokens_reused, prefixes.stats.tokens_prefilled)
                tokens = generate_with_prefix(prefixes, ids, max_new_tokens, sampling=sampling, seed=seed)
                reused = prefixes.stats.tokens_reused - before[0]
                prefilled = prefixes.stats.tokens_prefilled - before[1]
            else:
                tokens = generate(model, ids, max_new_tokens, sampling=sampling, seed=seed)
                prefilled = len(ids)
            text = tokenizer.decode(tokens[0])
            if responses is not None:
                responses.put(key, text)
        else:
            text = cached
        synchronize(device)
        served.append(Served(text, time.perf_counter() - t0, cached is not _MISSING, reused, prefilled))
    return served


def prefill_flops(model: GPT, n_tokens: int, start: int = 0) -> float:
    """Forward FLOPs to prefill `n_tokens` after `start` cached ones: 2·N per token + attention over its context."""
    N = model.flops_per_token(context=0, training=False)  # 2·N (no attention term at context 0)
    contexts = (start + n_tokens) * (start + n_tokens + 1) // 2 - start * (start + 1) // 2  # Σ (t + 1)
    return n_tokens * N + 4 * model.config.n_layer * model.config.n_embd * contexts
