"""Batching: many requests through one forward pass, and a server loop that batches at every decode step.

Two pieces, each usable on its own from a notebook cell:

1. Padded batch generation — `left_pad → prefill_padded → generate_batch`. Prompts of different lengths are
   left-padded into one (B, T) tensor; a key mask hides the padding and per-row position ids make every row see
   exactly what it would see alone, so greedy output per request equals `lifecycle.generate.generate`.
2. A serving loop, `serve(model, requests, ServeConfig(...))`, with two policies over a fixed number of slots:
   * "static" (request-level batching): wait for a batch, run it until its longest request ends; rows whose
     request already ended keep occupying (and computing) their slot until then.
   * "continuous" (iteration-level batching, Yu et al. 2022, "Orca", OSDI): between two decode steps, finished
     requests leave and waiting ones are prefilled into the free slots.

The requests a server is measured on (a seeded stream with Poisson arrivals) and the summary of a run
(TTFT, latency and throughput percentiles, slot utilization, padding waste) are in
`lifecycle.measure.requests`; the decode micro-benchmark is `lifecycle.measure.decode`.

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
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .checks import is_int, require_int, require_number
from .generate import GREEDY, Sampling, require_sampling, sample
from .measure.timing import step_seconds
from .model import GPT, KVCache

POLICIES = ("static", "continuous")
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
                   stop_token: int | None = None, sampling: Sampling = GREEDY,
                   generator: torch.Generator | None = None) -> list[list[int]]:
    """New tokens for every prompt, generated together as one padded batch (a static batch).

    Each row stops after its own max_new_tokens or just after emitting `stop_token`; the batch runs until the
    last row stops. Greedy rows equal `generate(model, prompt, n)` for each prompt alone; `sampling` draws with
    `generator` otherwise.
    """
    require_sampling(sampling)
    check_prompts(prompts, model.config.vocab_size)
    limits = [max_new_tokens] * len(prompts) if is_int(max_new_tokens) else list(max_new_tokens)
    if len(limits) != len(prompts) or any(not is_int(n) or n < 0 for n in limits):
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
        token = sample(logits, sampling, generator)  # (B,)
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
        bad = [t for t in ids if not is_int(t) or not 0 <= t < vocab_size]
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
    sampling: Sampling = GREEDY  # how each token is picked (greedy by default)
    seed: int = 0  # for sampling when not greedy

    def __post_init__(self):
        require_int("slots", self.slots, low=1, hint="rows the server holds at once")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        require_number("max_wait", self.max_wait, low=0, hint="seconds")
        require_int("width", self.width, low=2, optional=True, hint="KV columns")
        require_sampling(self.sampling)


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
        c = self.cache
        return KVCache(c.k[:, :self.n], c.v[:, :self.n], c.length, c.key_mask[:self.n])

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
    """What `serve` returns: the config, one Record per request and every model call (`measure.requests.summarize`
    turns it into throughput and latency percentiles)."""

    config: ServeConfig
    records: list[Record]
    steps: list[Step]


def _check_requests(requests: Sequence[Request], model: GPT) -> None:
    if not requests:
        raise ValueError("requests is empty: give at least one Request")
    if len({r.id for r in requests}) != len(requests):
        raise ValueError("request ids must be unique")
    V = model.config.vocab_size
    for r in requests:
        require_int(f"request {r.id}: max_new_tokens", r.max_new_tokens, low=1)
        if not r.prompt or not all(0 <= t < V for t in r.prompt):
            raise ValueError(f"request {r.id}: the prompt must be a non-empty sequence of token ids in [0, {V})")
        require_number(f"request {r.id}: arrival", r.arrival, low=0, hint="seconds from the start")
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
    generator = torch.Generator(device=device).manual_seed(config.seed) if not config.sampling.greedy else None
    queue = sorted(requests, key=lambda r: (r.arrival, r.id))
    records = {r.id: Record(r.id, float(r.arrival), len(r.prompt)) for r in requests}
    slots, live, waiting, steps = SlotCache(model, config.slots, W), [], [], []
    clock, qi = float(queue[0].arrival), 0
    static = config.policy == "static"

    def clocked(kind: str, rows: int, tokens: int, useful: int, fn):
        """Run fn, advance the clock by its measured (or modelled) time, log the step; return fn's result."""
        nonlocal clock
        measured, out = step_seconds(fn, device)
        seconds = cost_model(kind, rows, tokens) if cost_model else measured
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
    first = sample(prefill_padded(model, prompts, tmp), config.sampling, generator).tolist()
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
    new = sample(logits[:, -1], config.sampling, generator).tolist()
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
