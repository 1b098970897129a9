"""How the course measures a server: a seeded request load, and a client that sends it over HTTP and times it.

The load (`LoadConfig`, `make_load`) models chat traffic the way lessons 05 and 07 do, with their generators:
- arrivals are a Poisson process at `rate` requests per second (exponential gaps; `measure.requests.make_stream`'s rule);
- questions follow Zipf popularity over a catalogue, plus a share of one-off questions, all behind one shared
  system prompt (`measure.queries.query_ids`, `question_text`, `SYSTEM_PROMPT`);
- output lengths are mixed, drawn from a `measure.requests.LengthDist`, one length per distinct question (the same
  question asked again asks for the same answer, as a user repeating it would).

`run_load(url, load, concurrency)` replays the load against `POST /v1/completions` with streaming on, at most
`concurrency` requests in flight, and records per request (times from its scheduled arrival, so a request the
client or server kept waiting is charged for the wait): TTFT (time to the first streamed token), TPOT (time per
output token after the first), end-to-end latency, and the tokens received. `summarize` reports throughput
(output tokens per second of the run) and p50/p95 of each, as vLLM's serving benchmark does
(vllm/benchmarks/benchmark_serving.py: TTFT, TPOT, ITL and end-to-end latency percentiles).
"""
from __future__ import annotations

import http.client
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

from .checks import require_int
from .engine import StreamRequest
from .measure.queries import SYSTEM_PROMPT, QueryStreamConfig, query_ids, question_text
from .measure.requests import LengthDist, percentiles


@dataclass(frozen=True)
class LoadConfig:
    n_requests: int = 48
    rate: float = 20.0  # mean arrivals per second (Poisson); math.inf = all at time 0
    catalogue_size: int = 24  # distinct questions that recur
    zipf_s: float = 1.0  # popularity exponent
    one_off_share: float = 0.25  # share of requests nobody asks again
    output_len: LengthDist = LengthDist(4, 48, "loguniform")  # tokens each question asks for
    system_prompt: str = SYSTEM_PROMPT
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.rate, (int, float)) or math.isnan(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a number of requests per second > 0 (math.inf allowed), got {self.rate!r}")
        self.stream()  # the caching stream's checks: counts, zipf_s, one_off_share

    def stream(self) -> QueryStreamConfig:
        return QueryStreamConfig(n_queries=self.n_requests, catalogue_size=self.catalogue_size, zipf_s=self.zipf_s,
                            one_off_share=self.one_off_share, seed=self.seed, system_prompt=self.system_prompt)


def make_load(config: LoadConfig, block_size: int | None = None) -> list[StreamRequest]:
    """The requests of one load, in arrival order: same config, same load."""
    ids = query_ids(config.stream())
    rng = np.random.default_rng(config.seed + 1)
    gaps = np.zeros(len(ids)) if math.isinf(config.rate) else rng.exponential(1 / config.rate, size=len(ids))
    arrivals = np.cumsum(gaps) - gaps[0]
    out = []
    for qid, t in zip(ids.tolist(), arrivals.tolist()):
        prompt = f"{config.system_prompt}{question_text(qid)}\n"
        n = config.output_len.sample(1, np.random.default_rng([config.seed, qid]))[0]  # one length per question
        if block_size is not None and len(prompt) + n > block_size:
            raise ValueError(f"a prompt of {len(prompt)} characters + {n} tokens exceeds the context window of "
                             f"{block_size}; lower output_len.high or shorten the system prompt")
        out.append(StreamRequest(prompt, n, float(t)))
    return out


@dataclass
class HttpRecord:
    """One request sent over HTTP; times in seconds from its scheduled arrival."""

    arrival: float
    ttft: float = math.nan
    latency: float = math.nan
    tokens: int = 0
    text: str = ""
    status: int = 0

    @property
    def tpot(self) -> float:
        return (self.latency - self.ttft) / (self.tokens - 1) if self.tokens > 1 else math.nan


def _post_stream(url: str, request: StreamRequest, start: float, record: HttpRecord, timeout: float) -> None:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        body = json.dumps({"prompt": request.prompt, "max_tokens": request.max_tokens, "stream": True})
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        record.status = resp.status
        if resp.status != 200:
            record.text = resp.read().decode()
            return
        for line in resp:  # server-sent events: "data: {...}" lines, then "data: [DONE]"
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            piece = json.loads(line[6:])["choices"][0]["text"]
            now = time.perf_counter() - start - record.arrival
            if record.tokens == 0:
                record.ttft = now
            record.tokens += len(piece)  # one character per token (the course's tokenizer)
            record.text += piece
        record.latency = time.perf_counter() - start - record.arrival
    finally:
        conn.close()


def run_load(url: str, load: list[StreamRequest], concurrency: int = 16, timeout: float = 60.0) -> list[HttpRecord]:
    """Send `load` to the server at `url` at its arrival times, at most `concurrency` in flight; one record each."""
    require_int("concurrency", concurrency, low=1)
    records = [HttpRecord(r.arrival) for r in load]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = []
        for r, rec in zip(load, records):
            wait = r.arrival - (time.perf_counter() - start)
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(_post_stream, url, r, start, rec, timeout))
        for f in futures:
            f.result()  # raises what a request raised (e.g. a refused connection)
    return records


def summarize(records: list[HttpRecord]) -> dict:
    """Throughput (output tokens / s of the run) and p50/p95 of TTFT, TPOT and end-to-end latency."""
    ok = [r for r in records if r.status == 200]
    if not ok:
        raise ValueError("no request succeeded; look at the records' status and text")
    makespan = max(r.arrival + r.latency for r in ok) - min(r.arrival for r in ok)
    tokens = sum(r.tokens for r in ok)
    out = {"requests": len(records), "failed": len(records) - len(ok), "tokens": tokens, "makespan_s": makespan,
           "throughput_tok_s": tokens / makespan}
    tpot = [r.tpot for r in ok if r.tokens > 1]
    for name, values in (("ttft", [r.ttft for r in ok]), ("latency", [r.latency for r in ok]), ("tpot", tpot or [0.0])):
        out |= {f"{name}_{k}_s": v for k, v in percentiles(values, (50, 95)).items()}
    return out
