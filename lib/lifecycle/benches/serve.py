"""`python -m lifecycle.bench serve`: one request load served by the naive server, by each technique alone, and by
the stack of every technique that composes, on the same engine (`lifecycle.serve`), side by side.

The load saturates the naive server: Poisson arrivals far faster than one-at-a-time serving can answer, Zipf-
repeated questions behind lesson 07's 300-character system prompt, mixed output lengths (`lifecycle.loadtest`).
Each configuration runs the load on the engine's virtual clock (each step charged its measured time; see
`serve.simulate`), `repeats` times in turn with the order reversed every round (A B C, C B A, …), and its run of
median makespan counts. Quality is checked against the naive server, i.e. the fp32 teacher alone:
"identical" when every computed (not cached) request's greedy text equals the naive server's; otherwise the share
of output tokens that agree position by position.

Ratios: stack_vs_naive_throughput, stack_vs_naive_p95_latency (naive p95 / stack p95: > 1 is better),
stack_vs_product_of_singles (the measured stack factor / the product of its techniques' single factors), and
stack_identical_to_naive (1 when the stack changed no computed answer). Lesson 10 calls `measure`, so it
measures the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .. import zoo
from ..bench import Report
from ..caching import SYSTEM_PROMPT
from ..costs import SEED, usd_per_million_tokens
from ..device import pick_device
from ..loadtest import LoadConfig, make_load
from ..measure.standin import cached_or_standin
from ..measure.timing import round_order
from ..model import GPT
from ..serve import Engine, RunResult, StackConfig, simulate

MAX_BATCH = 16
NAIVE = StackConfig()
SINGLES: dict[str, StackConfig] = {
    "batching": StackConfig(batching=True, max_batch=MAX_BATCH),
    "int8 weights": StackConfig(weights="int8"),
    "response cache": StackConfig(response_cache=True),
    "prefix cache": StackConfig(prefix_cache=True),
    "speculative": StackConfig(speculative=True, gamma=4),
}
# every technique that composes exactly with batching (speculative does not: see lifecycle.serve)
STACK = StackConfig(batching=True, max_batch=MAX_BATCH, response_cache=True, prefix_cache=True)
STACK_PARTS = ("batching", "response cache", "prefix cache")
STACK_INT8 = replace(STACK, weights="int8")  # the same, with the lossy int8 weights added


@dataclass(frozen=True)
class BenchConfig:
    load: LoadConfig = LoadConfig(n_requests=64, rate=200.0, catalogue_size=24, zipf_s=1.0, one_off_share=0.25)
    repeats: int = 3
    usd_per_hour: float = SEED.usd_per_gpu_hour  # the price lesson 09 puts on an accelerator-hour


QUICK = BenchConfig(load=replace(BenchConfig().load, n_requests=40), repeats=1)


def load_models(allow_stand_in: bool = True) -> tuple[GPT, GPT, object, str]:
    """(teacher, student, tokenizer, note): the trained models if cached; else, if allowed, untrained models of the
    same shapes (speed depends on the shape; quality and the draft's acceptance do not carry over)."""
    device = pick_device()
    teacher, student = (cached_or_standin(name, device, allow_stand_in) for name in ("teacher", "student"))
    return teacher.model, student.model, zoo.corpus().tokenizer, f"{teacher.note}; {student.note}"


def measure(teacher: GPT, student: GPT, tok, load, configs: dict[str, StackConfig], repeats: int = 1,
            system_prompt: str = SYSTEM_PROMPT) -> dict[str, RunResult]:
    """Serve `load` under every configuration (fresh engine and caches each run), `repeats` rounds with the order
    reversed every round; for each configuration, the run of median makespan (the lower median for an even count:
    of two runs, the faster)."""
    served = {w: Engine(teacher, StackConfig(weights=w)).model for w in {c.weights for c in configs.values()}}
    runs: dict[str, list[RunResult]] = {name: [] for name in configs}
    for i in range(repeats):
        for name in round_order(list(configs), i):  # a fresh engine each run: empty caches
            c = configs[name]
            engine = Engine(served[c.weights], c, student if c.speculative else None,
                            [tok.encode(system_prompt)] if c.prefix_cache else [])
            runs[name].append(simulate(engine, tok, load))
    by_makespan = {name: sorted(rs, key=lambda r: r.summary()["makespan_s"]) for name, rs in runs.items()}
    return {name: rs[(len(rs) - 1) // 2] for name, rs in by_makespan.items()}


def quality(result: RunResult, reference: RunResult) -> dict:
    """How the computed answers compare with the reference's (the naive server: the fp32 teacher alone)."""
    pairs = [(r.tokens, ref.tokens) for r, ref, hit in zip(result.records, reference.records, result.cached)
             if not hit]
    same = sum(a == b for x, y in pairs for a, b in zip(x, y))
    total = sum(len(y) for _, y in pairs)
    return {"identical": all(x == y for x, y in pairs), "agreement": same / total if total else 1.0,
            "computed": len(pairs)}


def table(results: dict[str, RunResult], naive: str = "naive", usd_per_hour: float = SEED.usd_per_gpu_hour) -> list[dict]:
    """One row per configuration: throughput and its factor over naive, latency percentiles, hit rate, quality, $."""
    base = results[naive].summary()
    rows = []
    for name, r in results.items():
        s, q = r.summary(), quality(r, results[naive])
        rows.append({"server": name, "stack": r.label, "tok/s": s["throughput_tok_s"],
                     "× naive": s["throughput_tok_s"] / base["throughput_tok_s"],
                     "p50 latency s": s["latency_p50_s"], "p95 latency s": s["latency_p95_s"],
                     "p50 TTFT s": s["ttft_p50_s"], "p50 TPOT ms": 1e3 * s["tpot_p50_s"], "hit rate": s["hit_rate"],
                     "quality": "exact" if q["identical"] else f"{q['agreement']:.1%} agree",
                     "$/M tokens": usd_per_million_tokens(usd_per_hour, s["throughput_tok_s"])})
    return rows


def ratios(results: dict[str, RunResult], stack: str = "stack", parts=STACK_PARTS) -> dict:
    naive, top = results["naive"].summary(), results[stack].summary()
    factor = top["throughput_tok_s"] / naive["throughput_tok_s"]
    product = math.prod(results[p].summary()["throughput_tok_s"] / naive["throughput_tok_s"] for p in parts)
    q = quality(results[stack], results["naive"])
    return {"stack_vs_naive_throughput": factor, "stack_vs_naive_p95_latency": naive["latency_p95_s"] /
            top["latency_p95_s"], "product_of_singles": product, "stack_vs_product_of_singles": factor / product,
            "stack_identical_to_naive": float(q["identical"]), "stack_agreement_with_naive": q["agreement"]}


def run(quick: bool = False) -> Report:
    cfg = QUICK if quick else BenchConfig()
    teacher, student, tok, note = load_models()
    load = make_load(cfg.load, teacher.config.block_size)
    configs = {"naive": NAIVE, **SINGLES, "stack": STACK, "stack + int8": STACK_INT8}
    results = measure(teacher, student, tok, load, configs, cfg.repeats)
    r = ratios(results)
    r["stack_int8_vs_naive_throughput"] = results["stack + int8"].summary()["throughput_tok_s"] / \
        results["naive"].summary()["throughput_tok_s"]
    r["stack_int8_agreement_with_naive"] = quality(results["stack + int8"], results["naive"])["agreement"]
    rows = table(results, usd_per_hour=cfg.usd_per_hour)
    figures = {row["server"]: {k: v for k, v in row.items() if k != "server"} for row in rows}
    notes = [note, f"load: {len(load)} requests, Poisson at {cfg.load.rate:g}/s, catalogue of "
                   f"{cfg.load.catalogue_size} questions (Zipf s={cfg.load.zipf_s:g}, {cfg.load.one_off_share:.0%} "
                   f"one-off), outputs {cfg.load.output_len.low}-{cfg.load.output_len.high} tokens; the run of median "
                   f"makespan of {cfg.repeats} repeat(s) on the virtual clock, the order reversed every round",
             f"$ per million tokens at ${cfg.usd_per_hour:.2f} per hour of the machine",
             "speculative decoding is measured alone: inside a continuous batch it is refused (see lifecycle.serve)"]
    return Report(rows=rows, figures=figures, ratios=r, notes=notes)
