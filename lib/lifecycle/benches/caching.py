"""`python -m lifecycle.bench caching`: one query stream served four ways, and the two caching claims checked.

1. The same seeded stream (Zipf-popular questions behind a 300-character system prompt) is served with no cache,
   with the response cache, with the prefix cache, and with both, interleaved (A B C D, D C B A, …), each run from
   empty caches; medians give the throughput ratios, and the answers of all four must be identical.
2. Time to first token with and without the cached system prompt (prefill + first sample), interleaved.
3. Hit rate of the response cache vs Che's approximation, swept over cache sizes and Zipf exponents. These runs
   use the real `ResponseCache` on the key stream alone: a hit depends only on which key comes when, so the
   model's answers are not needed (their cost per query is measured in part 1).

Lesson 07 measures the same way: `measure.speed.prefix_ttft` and `measure.queries.hit_rate_sweep` are parts 2 and 3.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .. import zoo
from ..bench import Report
from ..caching import PrefixCache, ResponseCache, serve_with_caches
from ..device import pick_device
from ..measure.queries import QueryStreamConfig, hit_rate_sweep, query_stream
from ..measure.speed import prefix_ttft
from ..measure.standin import cached_or_standin
from ..measure.timing import interleaved
from ..model import GPT


@dataclass(frozen=True)
class BenchConfig:
    stream: QueryStreamConfig = QueryStreamConfig(n_queries=120, catalogue_size=40, zipf_s=1.0, one_off_share=0.2,
                                                  seed=0)
    max_new_tokens: int = 16
    response_capacity: int = 20
    repeats: int = 3
    ttft_repeats: int = 15
    sweep_queries: int = 40_000
    sweep_warmup: int = 10_000  # requests served before counting, so the cache is in its steady state
    sweep_catalogue: int = 1000
    sweep_s: tuple[float, ...] = (0.8, 1.0, 1.2)
    sweep_sizes: tuple[int, ...] = (10, 30, 100, 300)
    sweep_one_off: float = 0.2


QUICK = BenchConfig(stream=replace(BenchConfig().stream, n_queries=40), max_new_tokens=8, repeats=1,
                    ttft_repeats=7, sweep_queries=20_000, sweep_warmup=5_000, sweep_s=(1.0,))


def load_model(allow_stand_in: bool = True) -> tuple[GPT, object, str]:
    """(model, tokenizer, note): the trained teacher if it is cached; else, if allowed, an untrained model of the
    same shape (speed depends on the shape, not on the weights), so the benchmark never waits for training."""
    loaded = cached_or_standin("teacher", pick_device(), allow_stand_in)
    return loaded.model, zoo.corpus().tokenizer, loaded.note


def serve_variants(model: GPT, tok, prompts: list[str], max_new_tokens: int, capacity: int, system_prompt: str,
                   repeats: int = 3, warmup: int = 1) -> dict[str, dict]:
    """Serve `prompts` four ways, interleaved, each run from empty caches.

    Returns {variant: {"seconds": median seconds for the whole stream, "served": the last run's list of Served}}.
    The prefix-cache variants include the one prefill of the system prompt in their time and in their count of
    prefilled tokens ("prefill_tokens": every token run through the model before the first answer token).
    """
    device = next(model.parameters()).device
    last: dict[str, list] = {}

    def run(name: str, responses: bool, prefixes: bool):
        def fn():
            pc = None
            if prefixes:
                pc = PrefixCache(model, max_bytes=64 * 2**20)
                pc.add(tok.encode(system_prompt))
            rc = ResponseCache(capacity=capacity) if responses else None
            last[name] = serve_with_caches(model, tok, prompts, max_new_tokens, responses=rc, prefixes=pc)
            last[name + "/prefixes"] = pc
        return fn

    variants = {"no cache": run("no cache", False, False), "response cache": run("response cache", True, False),
                "prefix cache": run("prefix cache", False, True), "both": run("both", True, True)}
    times = interleaved(variants, repeats=repeats, warmup=warmup, device=device)
    out = {}
    for name in variants:
        served, pc = last[name], last[name + "/prefixes"]
        prefilled = pc.stats.tokens_prefilled if pc is not None else sum(s.tokens_prefilled for s in served)
        out[name] = {"seconds": times[name].median, "served": served, "prefill_tokens": prefilled}
    return out


def run(quick: bool = False) -> Report:
    cfg = QUICK if quick else BenchConfig()
    model, tok, note = load_model()
    prompts = query_stream(cfg.stream)
    res = serve_variants(model, tok, prompts, cfg.max_new_tokens, cfg.response_capacity, cfg.stream.system_prompt,
                         repeats=cfg.repeats, warmup=0 if quick else 1)
    texts = {name: [s.text for s in r["served"]] for name, r in res.items()}
    identical = all(t == texts["no cache"] for t in texts.values())
    rows = []
    for name, r in res.items():
        served = r["served"]
        rows.append({"variant": name, "queries": len(served), "seconds": r["seconds"],
                     "queries_per_s": len(served) / r["seconds"], "ms_per_query": 1e3 * r["seconds"] / len(served),
                     "response_hit_rate": sum(s.hit for s in served) / len(served),
                     "prefill_tokens": r["prefill_tokens"],
                     "reused_tokens": sum(s.tokens_reused for s in served)})
    t = prefix_ttft(model, tok.encode(prompts[0]), tok.encode(cfg.stream.system_prompt), cfg.ttft_repeats)
    sweep = hit_rate_sweep(cfg.sweep_catalogue, cfg.sweep_s, cfg.sweep_sizes, cfg.sweep_one_off,
                           cfg.sweep_queries, cfg.sweep_warmup)
    base = res["no cache"]["seconds"]
    by = {r["variant"]: r for r in rows}
    ratios = {"prefix_ttft_speedup": t["speedup"],
              "response_cache_hit_rate_error_pp": max(abs(r["error_pp"]) for r in sweep),
              "response_vs_none_throughput": base / res["response cache"]["seconds"],
              "prefix_vs_none_throughput": base / res["prefix cache"]["seconds"],
              "both_vs_none_throughput": base / res["both"]["seconds"]}
    figures = {"ttft": t, "stream_hit_rate": by["response cache"]["response_hit_rate"],
               "prefill_tokens_saved_share": 1 - by["prefix cache"]["prefill_tokens"] / by["no cache"]["prefill_tokens"],
               "identical_outputs": identical, "hit_rate_sweep": sweep, "stream": vars(cfg.stream) | {
                   "system_prompt_chars": len(cfg.stream.system_prompt), "max_new_tokens": cfg.max_new_tokens,
                   "response_capacity": cfg.response_capacity}}
    notes = [note, f"threads: {torch.get_num_threads()}; the hit-rate sweep runs the cache on keys only "
             f"({cfg.sweep_queries:,} requests per point, first {cfg.sweep_warmup:,} not counted)",
             "all four variants gave identical answers" if identical else "WARNING: the variants' answers differ"]
    return Report(rows=rows, figures=figures, ratios=ratios, notes=notes)
