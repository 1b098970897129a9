"""The serving engine: every technique of the course as a switch, composed in one engine.

`StackConfig` holds the switches; `Engine` composes the pieces that lessons 04-08 built and measured alone:

  batching        continuous (iteration-level) batching over `max_batch` slots: `batching.SlotCache`, lesson 05
  weights         fp32, int8 or int4 weight-only quantization: `quantize.quantize_model`, lesson 04
  response_cache  whole answers of repeated greedy requests, LRU: `caching.ResponseCache`, lesson 07
  prefix_cache    the KV state of the server's system prompt(s), copied instead of prefilled: `caching.PrefixCache`
  speculative     the distilled student drafts `gamma` tokens, the teacher verifies: `speculative`, lessons 06 and 08

All switches off is the naive server: one request at a time, fp32, no cache.

How they compose (each is exact: greedy output equals that of the served weights alone, `generate` on them; a test
checks every combination):
- batching + prefix cache: a newcomer is prefilled alone through the prefix cache (copy the system prompt's keys
  and values, prefill the rest) and its KV is copied into a free slot; the slot then decodes with the others. The
  keys and values of a prompt do not depend on how they were computed, so rows see what they would see alone.
- any + response cache: looked up when a request arrives (a hit is answered at once, and is not "computed")
  and again when a queued request is taken up; a computed greedy answer is stored when its request finishes. A
  request identical to one still being computed waits for that one's tokens instead of computing them again
  (request coalescing, "collapsed forwarding" in web caches): without it, a busy batched server, which takes
  requests up at once, would compute most repeats twice. Sampling without a seed is never cached.
- any + int8/int4: the served model is the quantized teacher. Its greedy text is the quantized model's, so it is
  compared with the fp32 teacher by greedy agreement (not exact); every other switch stays exact relative to it.
- speculative + response cache, + int8/int4: supported (the quantized teacher is the target; the draft stays fp32).

Not supported, refused by `StackConfig` with a ValueError:
- speculative + batching. A batch of speculative rows accepts a different number of drafts in every row, so the
  rows' KV timelines stop being aligned after the first round; the right-aligned shared timeline of
  `batching.SlotCache` (one write column for every row) cannot hold them. It needs per-row lengths (a paged KV
  cache, as in vLLM) and a batched draft model; this course does not build that. Speculative decoding spends
  compute a batch-1 decode step leaves idle; a full batch leaves little, so on a saturated server batching is
  usually the larger win (lesson 10 measures both alone).
- speculative + prefix cache. `speculative.SpeculativeDecoder` fills its target and draft caches itself; seeding
  both from stored prefixes is not wired in.

Time: `Engine.step()` does one unit of work (naive: one token of the current request; speculative: one round;
batching: admit newcomers, then one decode step for every live row). `simulate` drives the engine on a virtual
clock exactly as `batching.serve` does (each step advances it by the step's measured time: min(wall, CPU) on a
CPU). `lifecycle.serve` puts the same engine behind an HTTP endpoint (`python -m lifecycle.serve`).
One concept, one file: the switches, the engine that composes them and the clock that drives it.
References: Yu et al. 2022 "Orca" (OSDI); Kwon et al. 2023 "vLLM" (SOSP).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .batching import Record, SlotCache
from .caching import PrefixCache, ResponseCache, fingerprint, response_key
from .checks import is_int, require_bool, require_int
from .generate import GREEDY, Sampling, as_sampling, decode_one_token, prefill, require_sampling, sample
from .measure.requests import percentiles
from .measure.timing import step_seconds
from .model import GPT, KVCache
from .quantize import QuantConfig, quantize_model
from .speculative import SpeculativeDecoder

WEIGHTS = ("fp32", "int8", "int4")
COMPACT_AT = 64  # as batching.COMPACT_AT: dead columns left of every live row that trigger a compaction


# ---- the switches ----

@dataclass(frozen=True)
class StackConfig:
    """Which techniques the engine uses. All off (the default) is the naive server."""

    batching: bool = False  # continuous batching (else one request at a time)
    max_batch: int = 16  # slots of the continuous batch
    weights: str = "fp32"  # "fp32", "int8" or "int4" (weight-only)
    response_cache: bool = False  # answer repeated greedy requests from memory
    cache_size: int = 256  # entries of the response cache
    prefix_cache: bool = False  # reuse the KV state of the system prompt(s)
    prefix_bytes: int = 64 * 2**20  # memory for stored prefixes
    speculative: bool = False  # the draft model proposes, the teacher verifies
    gamma: int = 4  # draft tokens per round

    def __post_init__(self):
        for name in ("batching", "response_cache", "prefix_cache", "speculative"):
            require_bool(f"StackConfig.{name}", getattr(self, name), hint="a switch")
        for name in ("max_batch", "cache_size", "prefix_bytes", "gamma"):
            require_int(f"StackConfig.{name}", getattr(self, name), low=1)
        if self.weights not in WEIGHTS:
            raise ValueError(f"StackConfig.weights must be one of {WEIGHTS}, got {self.weights!r}")
        if self.speculative and self.batching:
            raise ValueError("speculative decoding inside a continuous batch is not supported: rows accept different "
                             "numbers of drafts, and the batch's shared KV timeline needs every row at the same "
                             "column (see lifecycle.serve's docstring). Turn off batching or speculative.")
        if self.speculative and self.prefix_cache:
            raise ValueError("speculative decoding with the prefix cache is not supported: the speculative decoder "
                             "fills its own caches. Turn off prefix_cache or speculative.")

    @property
    def label(self) -> str:
        """A short name: 'naive', or the switches that are on joined by '+'."""
        on = [f"batch{self.max_batch}" if self.batching else "", "" if self.weights == "fp32" else self.weights,
              "response-cache" if self.response_cache else "", "prefix-cache" if self.prefix_cache else "",
              f"speculative(γ={self.gamma})" if self.speculative else ""]
        return "+".join(s for s in on if s) or "naive"


# ---- the engine ----

@dataclass
class Job:
    """One request inside the engine: its record (times, tokens) and its decoding state."""

    record: Record
    prompt: tuple[int, ...]
    max_new_tokens: int
    sampling: Sampling = GREEDY
    generator: torch.Generator | None = None
    key: tuple | None = None  # response-cache key; None = not cacheable
    cached: bool = False  # answered from the response cache (or by a twin in flight: see followers)
    followers: list = field(default_factory=list)  # identical requests that arrived while this one was computed
    done: bool = False
    # decoding state (one of these is used, by mode)
    cache: KVCache | None = None  # naive: this request's own KV cache
    logits: torch.Tensor | None = None  # naive: next-token logits (1, V)
    decoder: SpeculativeDecoder | None = None
    next_token: int = 0  # batched: the token the next decode step feeds
    position: int = 0  # batched: that token's position

    @property
    def tokens(self) -> list[int]:
        return self.record.tokens


@dataclass
class EngineStats:
    """Work counts of one engine: what the time was spent on (to explain a measurement, not to time it)."""

    gamma: int = 4
    prefill_tokens: int = 0  # prompt tokens run through the model (a prefix-cache hit skips the stored ones)
    prefill_s: float = 0.0  # time spent prefilling, by `step_seconds` (naive and batched modes)
    decode_steps: int = 0  # model calls that each advanced every live row by one token (or one speculative round)
    decode_rows: int = 0  # rows over all decode steps: decode_rows / decode_steps is the mean batch
    accepted: int = 0  # speculative: drafts accepted, and rounds that ended in a rejection (alpha = a / (a + r))
    rejected: int = 0

    @property
    def mean_batch(self) -> float:
        return self.decode_rows / self.decode_steps if self.decode_steps else 0.0

    @property
    def acceptance_rate(self) -> float:
        examined = self.accepted + self.rejected
        return self.accepted / examined if examined else 0.0


class Engine:
    """The teacher served under `config`; `draft` is needed when config.speculative. `model` is the fp32 teacher
    (quantized here when config.weights asks for it) or a model already quantized to config.weights (used as is).

    submit(prompt ids, max_new_tokens, ...) -> Job queues a request (a response-cache hit comes back done);
    step() does one unit of work and returns the jobs that received tokens. Single-threaded: call from one thread.
    """

    def __init__(self, model: GPT, config: StackConfig = StackConfig(), draft: GPT | None = None,
                 system_prompts: Sequence[Sequence[int]] = ()):
        if config.speculative and draft is None:
            raise ValueError("config.speculative needs a draft model: Engine(teacher, config, draft=student)")
        if config.prefix_cache and not system_prompts:
            raise ValueError("config.prefix_cache needs the prefixes to keep: system_prompts=[token ids, ...]")
        self.config = config
        # int4 groups of 64 input columns, or fewer where the model is narrower (every width here is a power of 2)
        quant = QuantConfig(config.weights, group_size=math.gcd(64, model.config.n_embd))
        done = config.weights == "fp32" or getattr(getattr(model, "quant_config", None), "scheme", "") == config.weights
        self.model = model if done else quantize_model(model, quant)
        self.model.eval()
        self.draft = draft
        self.block_size = model.config.block_size
        self.vocab_size = model.config.vocab_size
        self.model_id = fingerprint(self.model) if config.response_cache else ""
        self.responses = ResponseCache(capacity=config.cache_size) if config.response_cache else None
        self.prefixes = PrefixCache(self.model, config.prefix_bytes) if config.prefix_cache else None
        for p in system_prompts if config.prefix_cache else ():
            self.prefixes.add(p)
        self.slots = SlotCache(self.model, config.max_batch, 2 * self.block_size) if config.batching else None
        self.waiting: list[Job] = []
        self.inflight: dict[tuple, Job] = {}  # response-cache key -> the job computing it
        self.stats = EngineStats(gamma=config.gamma)
        self.live: list[Job] = []  # batched: rows of the slot cache, in order; naive/speculative: the current job
        self._ids = 0

    # -- requests in --

    def check(self, prompt: Sequence[int], max_new_tokens: int, sampling: Sampling = GREEDY) -> None:
        """Raise ValueError naming the problem when a request cannot be served (the server answers 400)."""
        require_int("max_tokens", max_new_tokens, low=1)
        require_sampling(sampling)
        if not prompt:
            raise ValueError("the prompt is empty: give at least one character")
        if not all(is_int(t) and 0 <= t < self.vocab_size for t in prompt):
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")
        if len(prompt) + max_new_tokens > self.block_size:
            raise ValueError(f"a prompt of {len(prompt)} tokens + max_tokens={max_new_tokens} exceeds the context "
                             f"window of {self.block_size} tokens; shorten the prompt or lower max_tokens")

    def submit(self, prompt: Sequence[int], max_new_tokens: int, *, sampling: Sampling | None = None,
               temperature: float | None = None, seed: int | None = None, arrival: float = 0.0) -> Job:
        """Queue a request picking tokens by `sampling` (or the loose `temperature`; default greedy); a
        response-cache hit is returned already done (job.cached)."""
        sampling = as_sampling(sampling, temperature)
        prompt = tuple(int(t) for t in prompt)
        self.check(prompt, max_new_tokens, sampling)
        self._ids += 1
        job = Job(Record(self._ids, arrival, len(prompt)), prompt, max_new_tokens, sampling)
        device = next(self.model.parameters()).device
        if not sampling.greedy:
            job.generator = torch.Generator(device=device)
            job.generator.manual_seed(seed) if seed is not None else job.generator.seed()
        if self.responses is not None:
            job.key = response_key(",".join(map(str, prompt)), max_new_tokens, model_id=self.model_id,
                                   sampling=sampling, seed=seed)
            if self._lookup(job):
                return job
            if job.key is not None and (twin := self.inflight.get(job.key)) is not None:
                twin.followers.append(job)  # coalesced: it gets its twin's tokens as they come
                job.cached = True
                job.record.tokens[:] = twin.tokens
                return job
            if job.key is not None:
                self.inflight[job.key] = job
        self.waiting.append(job)
        return job

    def _lookup(self, job: Job) -> bool:
        """Answer `job` from the response cache if it holds the answer (job.cached, job.done)."""
        hit = self.responses.get(job.key) if self.responses is not None and job.key is not None else None
        if hit is not None:
            job.record.tokens[:] = hit
            job.cached = job.done = True
        return job.cached

    def _next(self, touched: list[Job]) -> Job | None:
        """The next queued job to compute. The cache is asked again here: an answer may have been stored while the
        job waited (its twin, queued earlier, has finished); such jobs are answered now and added to `touched`."""
        while self.waiting:
            job = self.waiting.pop(0)
            if not self._lookup(job):
                return job
            touched.append(job)
        return None

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.live

    # -- one unit of work --

    @torch.inference_mode()
    def step(self) -> list[Job]:
        """One unit of work; returns the jobs that got new tokens (finished ones have job.done)."""
        if self.config.batching:
            touched = self._batched_step()
        else:
            touched = self._single_step()
        for job in list(touched):
            for f in job.followers:
                f.record.tokens[:] = job.tokens
                f.done = job.done
                touched.append(f)
            if job.done and not job.cached and self.responses is not None:
                self.responses.put(job.key, tuple(job.tokens))
                self.inflight.pop(job.key, None)
        return touched

    def _emit(self, job: Job, tokens: list[int]) -> None:
        job.tokens.extend(tokens[:job.max_new_tokens - len(job.tokens)])
        job.done = len(job.tokens) >= job.max_new_tokens

    def _prefill(self, job: Job) -> torch.Tensor:
        """Prefill one request alone (through the prefix cache when on): next-token logits (1, V); fills job.cache."""
        seconds, logits = step_seconds(lambda: self._prefill_once(job), next(self.model.parameters()).device)
        self.stats.prefill_s += seconds
        return logits

    def _prefill_once(self, job: Job) -> torch.Tensor:
        if self.prefixes is not None:
            before = self.prefixes.stats.tokens_prefilled
            logits, job.cache = self.prefixes.prefill(job.prompt)
            self.stats.prefill_tokens += self.prefixes.stats.tokens_prefilled - before
            return logits
        self.stats.prefill_tokens += len(job.prompt)
        job.cache = KVCache.for_model(self.model, 1)
        device = job.cache.k.device
        return prefill(self.model, torch.tensor([job.prompt], device=device), job.cache)

    def _single_step(self) -> list[Job]:
        """Naive or speculative: one token (or one round) of the request at the head of the queue."""
        touched: list[Job] = []
        if not self.live:
            job = self._next(touched)
            if job is None:
                return touched
            self.live.append(job)
            if self.config.speculative:
                self.stats.prefill_tokens += len(job.prompt)
                job.decoder = SpeculativeDecoder(self.model, self.draft, list(job.prompt), job.max_new_tokens,
                                                 gamma=self.config.gamma, sampling=job.sampling,
                                                 generator=job.generator)
            else:
                job.logits = self._prefill(job)
        job = self.live[0]
        self.stats.decode_steps += 1
        self.stats.decode_rows += 1
        if job.decoder is not None:
            r = job.decoder.step()
            self._emit(job, r.new_tokens)
            self.stats.accepted += r.accepted
            self.stats.rejected += r.accepted < len(r.proposed)
        else:
            token = sample(job.logits, job.sampling, job.generator)  # (1,)
            self._emit(job, [int(token)])
            if not job.done:
                job.logits = decode_one_token(self.model, token, job.cache)
        if job.done:
            job.cache = job.logits = job.decoder = None
            self.live.clear()
        return touched + [job]

    def _batched_step(self) -> list[Job]:
        """Continuous batching: admit newcomers into free slots (first token each), then one decode step for all."""
        touched: list[Job] = []
        while len(self.live) < self.config.max_batch and (job := self._next(touched)) is not None:
            logits = self._prefill(job)
            token = int(sample(logits, job.sampling, job.generator))
            self._emit(job, [token])
            touched.append(job)
            if not job.done:
                self.slots.insert(job.cache, 0, len(job.prompt))
                job.next_token, job.position = token, len(job.prompt)
                self.live.append(job)
            job.cache = None
        if self.live:
            touched += [j for j in self._decode_all() if j not in touched]
        return touched

    def _decode_all(self) -> list[Job]:
        """One decode step over every slot in use; finished rows leave their slot at once."""
        slots, live, device = self.slots, self.live, self.slots.cache.k.device
        dead = min(slots.start)  # columns left of every row
        if dead and (slots.cache.length == slots.cache.max_len or dead >= COMPACT_AT):
            slots.shift(-dead)
        n = len(live)
        self.stats.decode_steps += 1
        self.stats.decode_rows += n
        tokens = torch.tensor([[j.next_token] for j in live], device=device)  # (n, 1)
        positions = torch.tensor([[j.position] for j in live], device=device)  # (n, 1)
        view = slots.view()
        logits = self.model(tokens, cache=view, positions=positions,
                            key_mask=torch.ones(n, 1, dtype=torch.bool, device=device))[0][:, -1]  # (n, V)
        slots.cache.length = view.length
        greedy = logits.argmax(-1).tolist()
        for i, job in enumerate(live):
            token = greedy[i] if job.sampling.greedy else int(sample(logits[i:i + 1], job.sampling, job.generator))
            job.next_token, job.position = token, job.position + 1
            self._emit(job, [token])
        touched = list(live)
        slots.remove_done(live)  # the last row moves into a freed slot, as in batching
        return touched


# ---- driving the engine on a virtual clock ----

@dataclass(frozen=True)
class StreamRequest:
    """One request of a load: prompt text, tokens wanted, arrival time in seconds from the start."""

    prompt: str
    max_tokens: int
    arrival: float


@dataclass
class RunResult:
    """Per-request records of one run (same order as the requests), which were cache hits, and the busy time."""

    label: str
    records: list[Record]
    cached: list[bool]
    busy_s: float = 0.0
    stats: EngineStats | None = None

    def summary(self) -> dict:
        return summarize(self.records, self.cached) | {"busy_s": self.busy_s}


def summarize(records: Sequence[Record], cached: Sequence[bool] | None = None) -> dict:
    """Throughput and the latency percentiles a serving benchmark reports: TTFT, time per output token (TPOT) and
    end-to-end latency, over every request (cache hits included: they are served too)."""
    cached = cached or [False] * len(records)
    n_tokens = sum(len(r.tokens) for r in records)
    makespan = max(r.finish for r in records) - min(r.arrival for r in records)
    tpot = [(r.finish - r.first_token) / (len(r.tokens) - 1) for r in records if len(r.tokens) > 1]
    out = {"requests": len(records), "tokens": n_tokens, "hit_rate": sum(cached) / len(records),
           "makespan_s": makespan, "throughput_tok_s": n_tokens / makespan if makespan > 0 else math.inf}
    for name, values in (("ttft", [r.ttft for r in records]), ("latency", [r.latency for r in records]),
                         ("tpot", tpot or [0.0])):
        out |= {f"{name}_{k}_s": v for k, v in percentiles(values, (50, 95)).items()}
    return out


def simulate(engine: Engine, tokenizer, requests: Sequence[StreamRequest]) -> RunResult:
    """Serve `requests` (greedy) on a virtual clock: arrivals at their times, each engine step advancing the clock by
    its measured time (min(wall, CPU time) on a CPU, as in `batching.serve`); an idle engine jumps to the next arrival.
    """
    if not requests:
        raise ValueError("requests is empty")
    device = next(engine.model.parameters()).device
    order = sorted(range(len(requests)), key=lambda i: requests[i].arrival)
    jobs: list[Job | None] = [None] * len(requests)
    clock, busy, qi = requests[order[0]].arrival, 0.0, 0

    def on_clock(fn):  # run one engine call and advance the virtual clock by its measured time
        nonlocal clock, busy
        seconds, out = step_seconds(fn, device)
        clock += seconds
        busy += seconds
        return out

    while qi < len(order) or not engine.idle:
        while qi < len(order) and requests[order[qi]].arrival <= clock:
            i = order[qi]
            r = requests[i]
            job = on_clock(lambda: engine.submit(tokenizer.encode(r.prompt), r.max_tokens, arrival=r.arrival))
            job.record.arrival = r.arrival
            if job.done:  # a response-cache hit: answered by the lookup
                job.record.first_token = job.record.finish = clock
            jobs[i] = job
            qi += 1
        if engine.idle:  # jump to the next arrival (the loop ends when there is none)
            if qi < len(order):
                clock = max(clock, requests[order[qi]].arrival)
            continue
        touched = on_clock(engine.step)
        for job in touched:
            if math.isnan(job.record.first_token):
                job.record.first_token = clock
            if job.done:
                job.record.finish = clock
    return RunResult(engine.config.label, [j.record for j in jobs], [j.cached for j in jobs], busy, engine.stats)


def load_engine(model_name: str, config: StackConfig, system_prompt: str | None = None, seed: int = 0):
    """(engine, tokenizer) for a zoo model ('teacher') or a random-weight test model ('test', for tests)."""
    from .measure.queries import SYSTEM_PROMPT
    system_prompt = SYSTEM_PROMPT if system_prompt is None else system_prompt
    if model_name == "test":
        from .data import CharTokenizer
        from .model import preset
        torch.manual_seed(seed)
        tokenizer = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,?!\n")
        model = GPT(preset("test", vocab_size=tokenizer.vocab_size)).eval()
        draft = GPT(preset("test", vocab_size=tokenizer.vocab_size, n_layer=1)).eval() if config.speculative else None
    else:
        from . import zoo
        tokenizer = zoo.corpus().tokenizer
        model = zoo.get(model_name, progress=False)
        draft = zoo.get("student", progress=False) if config.speculative else None
    prefixes = [tokenizer.encode(system_prompt)] if config.prefix_cache and system_prompt else []
    return Engine(model, config, draft, prefixes), tokenizer
