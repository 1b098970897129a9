"""Batching: many requests through one forward pass, and a server loop that batches at every decode step.

Three pieces, each usable on its own from a notebook cell:

1. Padded batch generation — `left_pad → prefill_padded → generate_batch`. Prompts of different lengths are
   left-padded into one (B, T) tensor; a key mask hides the padding and per-row position ids make every row see
   exactly what it would see alone, so greedy output per request equals `lifecycle.generate.generate`.
2. A serving loop, `serve(model, requests, ServeConfig(...))`, with two policies over a fixed number of slots:
   * "static" (request-level batching): wait for a batch, run it until its longest request ends; rows whose
     request already ended keep occupying (and computing) their slot until then.
   * "continuous" (iteration-level batching, Yu et al. 2022, "Orca", OSDI): between two decode steps, finished
     requests leave and waiting ones are prefilled into the free slots.
3. A seeded request stream, `make_stream(StreamConfig(...))`: Poisson arrivals at a chosen rate, prompt and
   output lengths drawn from stated distributions; `ServeResult.summary()` turns per-request records into
   TTFT, latency and throughput percentiles, slot utilization and padding waste.

Time is a virtual clock: every prefill and decode step really runs the model and the clock advances by the
step's measured time (or by `cost_model(kind, rows, tokens)` when one is given, e.g. in tests). Requests
arrive on that clock and an idle server jumps to the next arrival, so nothing ever sleeps. On a GPU a step's
time is its wall time; on a CPU it is min(wall time, CPU time of this process), so that a step is not charged
for moments when a busy or sleeping machine had descheduled the process (with several threads at work the CPU
time exceeds the wall time and the wall time counts).

KV layout: the slots share one `KVCache` of `width` columns, right-aligned — every row writes its next key at the
same column (`cache.length`), and a row's own tokens are the last ones before it; the key mask hides the rest.
When the dead columns on the left grow, the timeline is shifted left ("compaction"). The columns a row attends
over but may not see are the price of this simple layout; PagedAttention (Kwon et al. 2023, vLLM) removes it.

Context rule: a request must fit the window, len(prompt) + max_new_tokens <= block_size; longer ones are refused
with a ValueError (a server would truncate the prompt or cap the output; `generate` would slide its window).
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .device import synchronize
from .measure.timing import timed
from .generate import check_sampling, decode_one_token, prefill, sample
from .model import GPT, KVCache

POLICIES = ("static", "continuous")
LENGTH_KINDS = ("uniform", "loguniform")
COMPACT_AT = 64  # dead columns on the left of every live row that trigger a compaction of the timeline


# ---- 1. padded batch generation ----

def left_pad(prompts: Sequence[Sequence[int]], device="cpu", pad_id: int = 0):
    """Prompts → idx (B, T), key_mask (B, T) (False at padding), positions (B, T) counting from each prompt's start."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token lists")
    T = max(len(p) for p in prompts)
    pad = torch.tensor([T - len(p) for p in prompts], device=device)  # (B,)
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        idx[b, T - len(p):] = torch.as_tensor(list(p), dtype=torch.long, device=device)
    cols = torch.arange(T, device=device)[None]  # (1, T)
    return idx, cols >= pad[:, None], (cols - pad[:, None]).clamp(min=0)


def prefill_padded(model: GPT, prompts: Sequence[Sequence[int]], cache: KVCache) -> torch.Tensor:
    """Left-pad the prompts, run them in one pass into `cache`; return each row's next-token logits (B, V)."""
    idx, key_mask, positions = left_pad(prompts, cache.k.device)
    logits, _ = model(idx, cache=cache, positions=positions, key_mask=key_mask)
    return logits[:, -1]


@torch.inference_mode()
def generate_batch(model: GPT, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int],
                   stop_token: int | None = None, temperature: float = 0.0, top_k: int | None = None,
                   top_p: float | None = None, generator: torch.Generator | None = None) -> list[list[int]]:
    """New tokens for every prompt, generated together as one padded batch (a static batch).

    Each row stops after its own max_new_tokens or just after emitting `stop_token`; the batch runs until the
    last row stops. Greedy rows equal `generate(model, prompt, n)` for each prompt alone.
    """
    check_sampling(temperature, top_k, top_p)
    check_prompts(prompts, model.config.vocab_size)
    limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != len(prompts) or any(not isinstance(n, int) or n < 0 for n in limits):
        raise ValueError("max_new_tokens must be an integer >= 0 or one such integer per prompt")
    for p, n in zip(prompts, limits):
        _check_fits(len(p), n, model.config.block_size, "a prompt")
    T = max(len(p) for p in prompts)
    # the cache may be wider than block_size: columns hold padding, positions stay inside the window
    cache = KVCache.for_model(model, len(prompts), max_len=T + max(max(limits), 1))
    logits = prefill_padded(model, prompts, cache)
    positions = torch.tensor([[len(p)] for p in prompts], device=cache.k.device)  # (B, 1)
    out: list[list[int]] = [[] for _ in prompts]
    done = [n == 0 for n in limits]
    while not all(done):
        token = sample(logits, temperature, top_k, top_p, generator)  # (B,)
        for b, t in enumerate(token.tolist()):
            if not done[b]:
                out[b].append(t)
                done[b] = len(out[b]) == limits[b] or t == stop_token
        if all(done):
            break
        ones = torch.ones(len(prompts), 1, dtype=torch.bool, device=cache.k.device)
        logits = model(token.view(-1, 1), cache=cache, positions=positions, key_mask=ones)[0][:, -1]
        # finished rows compute on (wasted) at a frozen position, so no position leaves the window
        positions = positions + torch.tensor([[not d] for d in done], device=positions.device)
    return out


def check_prompts(prompts, vocab_size: int) -> None:
    """Raise ValueError unless `prompts` is a non-empty list of non-empty lists of integer ids in [0, vocab_size)."""
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    if len(prompts) == 0:
        raise ValueError("no prompts: give a list of prompts, each a list of token ids")
    for i, p in enumerate(prompts):
        ids = p.tolist() if isinstance(p, torch.Tensor) else p
        if isinstance(ids, (int, str, bytes)) or len(ids) == 0:
            raise ValueError(f"prompt {i} must be a non-empty list of token ids, got {p!r}")
        bad = [t for t in ids if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t < vocab_size]
        if bad:
            raise ValueError(f"prompt {i} holds {bad[:3]!r}: token ids must be integers in [0, {vocab_size - 1}]")


def _check_fits(prompt_len: int, max_new: int, block_size: int, what: str) -> None:
    if prompt_len + max_new > block_size:
        raise ValueError(f"{what} of {prompt_len} tokens + max_new_tokens={max_new} exceeds the context window of "
                         f"{block_size} tokens; shorten the prompt or lower max_new_tokens")


# ---- 2. the serving loop ----

@dataclass(frozen=True)
class Request:
    """One request: prompt token ids, how many tokens it wants, when it arrives (seconds on the virtual clock)."""

    id: int
    prompt: tuple[int, ...]
    max_new_tokens: int
    arrival: float = 0.0
    stop_token: int | None = None  # the request also ends just after emitting this token


@dataclass
class Record:
    """What happened to one request; times are on the virtual clock, in seconds."""

    id: int
    arrival: float
    prompt_len: int
    admitted: float = math.nan  # its prefill started
    first_token: float = math.nan
    finish: float = math.nan
    tokens: list[int] = field(default_factory=list)

    @property
    def ttft(self) -> float:
        return self.first_token - self.arrival

    @property
    def latency(self) -> float:
        return self.finish - self.arrival

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.latency if self.latency > 0 else math.inf


@dataclass(frozen=True)
class Step:
    """One model call: kind, when it began, how long it took, rows computed and how many token-rows were useful."""

    kind: str  # "prefill" or "decode"
    start: float
    seconds: float
    rows: int  # rows in the forward pass
    computed: int  # token positions computed (rows × tokens per row)
    useful: int  # of those, the ones that belong to a live request (not padding, not a finished row)


@dataclass(frozen=True)
class ServeConfig:
    slots: int = 16  # rows the server can hold at once (its maximum batch size)
    policy: str = "continuous"  # "static" or "continuous"
    max_wait: float = 0.0  # static only: seconds the oldest waiting request may wait for a fuller batch
    width: int | None = None  # columns of the shared KV timeline (default 2 × block_size)
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0  # for sampling when temperature > 0

    def __post_init__(self):
        if not isinstance(self.slots, int) or isinstance(self.slots, bool) or self.slots < 1:
            raise ValueError(f"slots must be a positive integer, got {self.slots!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if not (isinstance(self.max_wait, (int, float)) and self.max_wait >= 0):
            raise ValueError(f"max_wait must be a number of seconds >= 0, got {self.max_wait!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 2):
            raise ValueError(f"width must be an integer number of KV columns or None, got {self.width!r}")
        check_sampling(self.temperature)


class SlotCache:
    """`slots` rows of KV on one right-aligned timeline; rows 0..n-1 are in use, each valid from `start[row]` on."""

    def __init__(self, model: GPT, slots: int, width: int):
        self.cache = KVCache.for_model(model, slots, max_len=width)
        self.cache.key_mask = torch.zeros(slots, width, dtype=torch.bool, device=self.cache.k.device)
        self.start: list[int] = []  # first valid column of each row in use

    @property
    def n(self) -> int:
        return len(self.start)

    def view(self) -> KVCache:
        """A KVCache over rows 0..n-1 that shares storage with the full cache (writes go through)."""
        v = object.__new__(KVCache)
        c = self.cache
        v.k, v.v, v.length, v.key_mask = c.k[:, :self.n], c.v[:, :self.n], c.length, c.key_mask[:self.n]
        return v

    def shift(self, by: int) -> None:
        """Move every row's columns by `by` (> 0 right, to make room for a longer prompt; < 0 left, compaction)."""
        c, L, n = self.cache, self.cache.length, self.n
        lo = max(0, -by)  # first column that survives
        for t in (c.k, c.v):
            t[:, :n, :, lo + by:L + by] = t[:, :n, :, lo:L].clone()
        c.key_mask[:n, lo + by:L + by] = c.key_mask[:n, lo:L].clone()
        c.key_mask[:n, L + by:] = False
        if by > 0:
            c.key_mask[:n, :by] = False
        c.length = L + by
        self.start = [max(0, s + by) for s in self.start]

    def insert(self, src: KVCache, row: int, length: int) -> int:
        """Copy the last `length` columns of row `row` of `src` into a new row ending at column cache.length."""
        c, b = self.cache, self.n
        if b == c.batch_size:
            raise RuntimeError("no free slot")
        if length > c.length:
            self.shift(length - c.length)
        L, S = c.length, src.length
        c.k[:, b, :, L - length:L] = src.k[:, row, :, S - length:S]
        c.v[:, b, :, L - length:L] = src.v[:, row, :, S - length:S]
        c.key_mask[b] = False
        c.key_mask[b, L - length:L] = True
        self.start.append(L - length)
        return b

    def remove(self, row: int) -> None:
        """Free `row` by moving the last row in use into it (rows stay packed at the top)."""
        c, last, L = self.cache, self.n - 1, self.cache.length
        if row != last:
            c.k[:, row, :, :L] = c.k[:, last, :, :L]
            c.v[:, row, :, :L] = c.v[:, last, :, :L]
            c.key_mask[row] = c.key_mask[last]
            self.start[row] = self.start[last]
        self.start.pop()
        if not self.start:
            c.length = 0

    def remove_done(self, live: list) -> None:
        """Free every row whose request in `live` (one per row, with a `.done` flag) has finished; `live` is
        rearranged the same way as the rows (the last one moves into each freed place)."""
        for row in reversed(range(len(live))):
            if live[row].done:
                self.remove(row)
                live[row] = live[-1]
                live.pop()

    def reset(self) -> None:
        """Empty every row (the key mask stays all False, so nothing stale can be seen)."""
        self.cache.key_mask[:self.n] = False
        self.start.clear()
        self.cache.length = 0


@dataclass
class _Live:
    request: Request
    record: Record
    next_token: int
    position: int
    done: bool = False


@dataclass
class ServeResult:
    config: ServeConfig
    records: list[Record]
    steps: list[Step]

    def summary(self) -> dict:
        return summarize(self.records, self.steps, self.config.slots)


def _check_requests(requests: Sequence[Request], model: GPT) -> None:
    if not requests:
        raise ValueError("requests is empty: give at least one Request")
    if len({r.id for r in requests}) != len(requests):
        raise ValueError("request ids must be unique")
    V = model.config.vocab_size
    for r in requests:
        if not isinstance(r.max_new_tokens, int) or r.max_new_tokens < 1:
            raise ValueError(f"request {r.id}: max_new_tokens must be an integer >= 1, got {r.max_new_tokens!r}")
        if not r.prompt or not all(0 <= t < V for t in r.prompt):
            raise ValueError(f"request {r.id}: the prompt must be a non-empty sequence of token ids in [0, {V})")
        if not (isinstance(r.arrival, (int, float)) and math.isfinite(r.arrival) and r.arrival >= 0):
            raise ValueError(f"request {r.id}: arrival must be a finite time >= 0, got {r.arrival!r}")
        _check_fits(len(r.prompt), r.max_new_tokens, model.config.block_size, f"request {r.id}'s prompt")


@torch.inference_mode()
def serve(model: GPT, requests: Sequence[Request], config: ServeConfig = ServeConfig(),
          cost_model: Callable[[str, int, int], float] | None = None) -> ServeResult:
    """Serve `requests` (any order) with config.policy over config.slots slots; return records and step log.

    cost_model(kind, rows, tokens_per_row) -> seconds replaces the measured step time when given.
    """
    _check_requests(requests, model)
    device = next(model.parameters()).device
    W = config.width or 2 * model.config.block_size
    if W <= model.config.block_size:
        raise ValueError(f"width must exceed block_size ({model.config.block_size}), got {W}")
    generator = torch.Generator(device=device).manual_seed(config.seed) if config.temperature > 0 else None
    queue = sorted(requests, key=lambda r: (r.arrival, r.id))
    records = {r.id: Record(r.id, float(r.arrival), len(r.prompt)) for r in requests}
    slots, live, waiting, steps = SlotCache(model, config.slots, W), [], [], []
    clock, qi = float(queue[0].arrival), 0
    static = config.policy == "static"

    def clocked(kind: str, rows: int, tokens: int, useful: int, fn):
        """Run fn, advance the clock by its measured (or modelled) time, log the step; return fn's result."""
        nonlocal clock
        synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        synchronize(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # on a CPU, a step is not charged for time the process spent descheduled or paused by others
        seconds = cost_model(kind, rows, tokens) if cost_model else min(wall, cpu) if device.type == "cpu" else wall
        steps.append(Step(kind, clock, seconds, rows, rows * tokens, useful))
        clock += seconds
        return out

    while qi < len(queue) or waiting or live:
        while qi < len(queue) and queue[qi].arrival <= clock:
            waiting.append(queue[qi])
            qi += 1
        if static:  # a new batch only when the server is empty and the batch is full or has waited long enough
            ready = not live and waiting and (len(waiting) >= config.slots or qi == len(queue)
                                              or clock >= waiting[0].arrival + config.max_wait)
            take = waiting[:config.slots] if ready else []
        else:  # continuous: fill whatever slots are free, now, between two decode steps
            take = waiting[:config.slots - len(live)]
        if take:
            del waiting[:len(take)]
            for r in take:
                records[r.id].admitted = clock
            T = max(len(r.prompt) for r in take)
            admitted = clocked("prefill", len(take), T, sum(len(r.prompt) for r in take),
                               lambda: _admit(model, take, records, slots, static, config, generator))
            for s in admitted:
                s.record.first_token = clock
                if s.done:
                    s.record.finish = clock
            live += [s for s in admitted if static or not s.done]
        elif not live:  # idle: jump to the next arrival (or to when the oldest waiting request stops waiting)
            nxt = [queue[qi].arrival] if qi < len(queue) else []
            if waiting:
                nxt.append(waiting[0].arrival + config.max_wait)
            clock = max(clock, min(nxt))
            continue
        if all(s.done for s in live):  # the batch has run to its longest request's end (static), or is empty
            live.clear()
            slots.reset()
            continue
        ended = clocked("decode", len(live), 1, sum(not s.done for s in live),
                        lambda: _decode_step(model, slots, live, static, config, generator, W))
        for s in ended:
            s.record.finish = clock
    return ServeResult(config, [records[r.id] for r in sorted(requests, key=lambda r: r.id)], steps)


def _ends(s: _Live) -> bool:
    return len(s.record.tokens) == s.request.max_new_tokens or s.record.tokens[-1] == s.request.stop_token


def _admit(model, take: list[Request], records, slots: SlotCache, static: bool, config: ServeConfig,
           generator) -> list[_Live]:
    """Prefill the newcomers as one padded batch, sample each one's first token, copy their KV into free slots."""
    prompts = [r.prompt for r in take]
    tmp = KVCache.for_model(model, len(take), max_len=max(len(p) for p in prompts))
    first = sample(prefill_padded(model, prompts, tmp), config.temperature, generator=generator).tolist()
    out = []
    for i, (r, tok) in enumerate(zip(take, first)):
        s = _Live(r, records[r.id], tok, len(r.prompt))
        s.record.tokens.append(tok)
        s.done = _ends(s)
        if static or not s.done:  # a static batch keeps even its finished rows until the end
            slots.insert(tmp, i, len(r.prompt))
        out.append(s)
    return out


def _decode_step(model, slots: SlotCache, live: list[_Live], static: bool, config: ServeConfig, generator,
                 W: int) -> list[_Live]:
    """One decode step over every row in use; returns the requests it finished (continuous: already retired)."""
    device = slots.cache.k.device
    dead = min(slots.start[i] for i, s in enumerate(live) if not s.done)  # columns left of every live row
    if dead and (slots.cache.length == W or dead >= COMPACT_AT):
        slots.shift(-dead)
    n = len(live)
    tokens = torch.tensor([[s.next_token] for s in live], device=device)  # (n, 1)
    positions = torch.tensor([[s.position] for s in live], device=device)  # (n, 1): each row's own count
    view = slots.view()
    logits, _ = model(tokens, cache=view, positions=positions,
                      key_mask=torch.ones(n, 1, dtype=torch.bool, device=device))
    slots.cache.length = view.length
    new = sample(logits[:, -1], config.temperature, generator=generator).tolist()
    ended = []
    for s, tok in zip(live, new):
        if not s.done:  # a finished row (static batches only) keeps its last token and position: wasted work
            s.next_token, s.position = tok, s.position + 1
            s.record.tokens.append(tok)
            s.done = _ends(s)
            if s.done:
                ended.append(s)
    if not static:  # finished requests leave at once; the last row moves into the freed slot
        slots.remove_done(live)
    return ended


# ---- 3. request streams and summaries ----

@dataclass(frozen=True)
class LengthDist:
    """Integer lengths in [low, high]: "uniform" (each length equally likely) or "loguniform" (log-length uniform:
    many short, a few long — widely varying, like real chat outputs)."""

    low: int
    high: int
    kind: str = "uniform"

    def __post_init__(self):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (self.low, self.high)) \
                or not 1 <= self.low <= self.high:
            raise ValueError(f"lengths need integers 1 <= low <= high, got low={self.low!r}, high={self.high!r}")
        if self.kind not in LENGTH_KINDS:
            raise ValueError(f"kind must be one of {LENGTH_KINDS}, got {self.kind!r}")

    def sample(self, n: int, rng: np.random.Generator) -> list[int]:
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, size=n).tolist()
        u = rng.uniform(math.log(self.low), math.log(self.high + 1), size=n)
        return np.minimum(np.floor(np.exp(u)), self.high).astype(int).tolist()


@dataclass(frozen=True)
class StreamConfig:
    n_requests: int = 64
    rate: float = 8.0  # mean arrivals per second (Poisson process); math.inf = everyone at time 0
    prompt_len: LengthDist = LengthDist(8, 64)
    output_len: LengthDist = LengthDist(4, 256, "loguniform")
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.n_requests, int) or isinstance(self.n_requests, bool) or self.n_requests < 1:
            raise ValueError(f"n_requests must be a positive integer, got {self.n_requests!r}")
        if not isinstance(self.rate, (int, float)) or math.isnan(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a number of requests per second > 0 (math.inf allowed), got {self.rate!r}")


def make_stream(config: StreamConfig, tokens: torch.Tensor | None = None, vocab_size: int | None = None,
                block_size: int | None = None) -> list[Request]:
    """Requests with Poisson arrivals (exponential gaps of mean 1/rate); prompts are slices of `tokens` (e.g. the
    validation text) or, without it, uniform random ids below vocab_size. Same config and seed → same stream."""
    c = config
    if block_size is not None and c.prompt_len.high + c.output_len.high > block_size:
        raise ValueError(f"prompt_len.high + output_len.high = {c.prompt_len.high + c.output_len.high} exceeds the "
                         f"context window of {block_size}; lower one of them")
    if tokens is None and not (isinstance(vocab_size, int) and vocab_size > 0):
        raise ValueError("give tokens (a 1-D tensor of token ids to cut prompts from) or a positive vocab_size")
    if tokens is not None and len(tokens) <= c.prompt_len.high:
        raise ValueError(f"tokens has {len(tokens)} ids, fewer than prompt_len.high={c.prompt_len.high}")
    rng = np.random.default_rng(c.seed)
    gaps = np.zeros(c.n_requests) if math.isinf(c.rate) else rng.exponential(1 / c.rate, size=c.n_requests)
    arrivals = np.cumsum(gaps) - gaps[0]  # the first request arrives at time 0
    p_lens, o_lens = c.prompt_len.sample(c.n_requests, rng), c.output_len.sample(c.n_requests, rng)
    out = []
    for i, (t, p, o) in enumerate(zip(arrivals.tolist(), p_lens, o_lens)):
        if tokens is not None:
            s = int(rng.integers(0, len(tokens) - p))
            prompt = tuple(int(x) for x in tokens[s:s + p])
        else:
            prompt = tuple(rng.integers(0, vocab_size, size=p).tolist())
        out.append(Request(i, prompt, o, float(t)))
    return out


def percentiles(values: Sequence[float], qs=(50, 95, 99)) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def summarize(records: Sequence[Record], steps: Sequence[Step], slots: int) -> dict:
    """Throughput, latency percentiles, slot utilization and padding waste of one serving run."""
    n_tokens = sum(len(r.tokens) for r in records)
    makespan = max(r.finish for r in records) - min(r.arrival for r in records)
    decode = [s for s in steps if s.kind == "decode"]
    busy = sum(s.seconds for s in steps)
    computed, useful = sum(s.computed for s in steps), sum(s.useful for s in steps)
    dec_time = sum(s.seconds for s in decode)
    return {
        "requests": len(records), "tokens": n_tokens, "makespan_s": makespan,
        "throughput_tok_s": n_tokens / makespan if makespan > 0 else math.inf,
        "requests_per_s": len(records) / makespan if makespan > 0 else math.inf,
        **{f"ttft_{k}_s": v for k, v in percentiles([r.ttft for r in records]).items()},
        **{f"latency_{k}_s": v for k, v in percentiles([r.latency for r in records]).items()},
        "tokens_per_s_per_request_p50": percentiles([r.tokens_per_s for r in records], (50,))["p50"],
        # share of slot capacity spent on live requests while decoding (time-weighted)
        "slot_utilization": sum(s.seconds * s.useful for s in decode) / (slots * dec_time) if dec_time else 0.0,
        "padding_waste": 1 - useful / computed if computed else 0.0,  # computed token-rows that served no one
        "busy_fraction": busy / makespan if makespan > 0 else 1.0,
        "decode_steps": len(decode),
    }


# ---- measuring decode throughput against batch size ----

def decode_runner(model: GPT, batch_size: int, context: int = 32, steps: int = 32) -> Callable[[], None]:
    """A function that runs `steps` greedy decode steps of `batch_size` rows after a `context`-token prefill
    (done once, here); each call rewinds the cache, so calls can be timed again and again."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_fits(context, steps, model.config.block_size, "a context")
    device = next(model.parameters()).device
    cache = KVCache.for_model(model, batch_size, max_len=context + steps)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, context), generator=gen).to(device)
    with torch.inference_mode():
        first = prefill(model, prompt, cache).argmax(-1)  # (B,)

    @torch.inference_mode()
    def run() -> None:
        cache.truncate(context)
        token = first
        for _ in range(steps):
            token = decode_one_token(model, token, cache).argmax(-1)
    return run


def measure_decode(model: GPT, batch_size: int, context: int = 32, steps: int = 32, repeats: int = 3) -> dict:
    """ms per decode step and tokens/s at one batch size (median of `repeats` timed runs after a warm-up)."""
    device = next(model.parameters()).device
    sec = timed(decode_runner(model, batch_size, context, steps), device, repeats=repeats).median / steps
    return {"batch_size": batch_size, "ms_per_step": 1e3 * sec, "tokens_per_s": batch_size / sec}
