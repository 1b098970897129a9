"""The servers lesson 10 compares, and how: one request load served naive, by each technique alone, and by the stack.

`NAIVE`, `SINGLES` (batching, int8 weights, response cache, prefix cache, speculative decoding, each alone), `STACK`
(every technique that composes exactly with batching: `STACK_PARTS`) and `STACK_INT8` (the stack plus lossy int8
weights) are `serve.StackConfig`s. `measure_stacks` serves the same load (`lifecycle.loadtest`) under each on the
engine's virtual clock, fresh engine and empty caches every run, `repeats` rounds with the order reversed every
round, and keeps each configuration's run of median makespan.
`answer_quality` compares a run's computed (not cached) answers with the naive server's; `stack_table` and
`stack_ratios` give the rows and ratios that lesson 10 and `python -m lifecycle.bench serve` report.
"""
from __future__ import annotations

import math
from dataclasses import replace

from .. import zoo
from ..costs import SEED, usd_per_million_tokens
from ..device import pick_device
from ..engine import Engine, RunResult, StackConfig, simulate
from ..model import GPT
from .queries import SYSTEM_PROMPT
from .standin import cached_or_standin
from .timing import round_order

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


def load_models(allow_stand_in: bool = True) -> tuple[GPT, GPT, object, str]:
    """(teacher, student, tokenizer, note): the trained models if cached; else, if allowed, untrained models of the
    same shapes (speed depends on the shape; quality and the draft's acceptance do not carry over)."""
    device = pick_device()
    teacher, student = (cached_or_standin(name, device, allow_stand_in) for name in ("teacher", "student"))
    return teacher.model, student.model, zoo.corpus().tokenizer, f"{teacher.note}; {student.note}"


def measure_stacks(teacher: GPT, student: GPT, tok, load, configs: dict[str, StackConfig], repeats: int = 1,
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


def answer_quality(result: RunResult, reference: RunResult) -> dict:
    """How the computed answers compare with the reference's (the naive server: the fp32 teacher alone)."""
    pairs = [(r.tokens, ref.tokens) for r, ref, hit in zip(result.records, reference.records, result.cached)
             if not hit]
    same = sum(a == b for x, y in pairs for a, b in zip(x, y))
    total = sum(len(y) for _, y in pairs)
    return {"identical": all(x == y for x, y in pairs), "agreement": same / total if total else 1.0,
            "computed": len(pairs)}


def stack_table(results: dict[str, RunResult], naive: str = "naive", usd_per_hour: float = SEED.usd_per_gpu_hour) -> list[dict]:
    """One row per configuration: throughput and its factor over naive, latency percentiles, hit rate, quality, $."""
    base = results[naive].summary()
    rows = []
    for name, r in results.items():
        s, q = r.summary(), answer_quality(r, results[naive])
        rows.append({"server": name, "stack": r.label, "tok/s": s["throughput_tok_s"],
                     "× naive": s["throughput_tok_s"] / base["throughput_tok_s"],
                     "p50 latency s": s["latency_p50_s"], "p95 latency s": s["latency_p95_s"],
                     "p50 TTFT s": s["ttft_p50_s"], "p50 TPOT ms": 1e3 * s["tpot_p50_s"], "hit rate": s["hit_rate"],
                     "quality": "exact" if q["identical"] else f"{q['agreement']:.1%} agree",
                     "$/M tokens": usd_per_million_tokens(usd_per_hour, s["throughput_tok_s"])})
    return rows


def stack_ratios(results: dict[str, RunResult], stack: str = "stack", parts=STACK_PARTS) -> dict:
    naive, top = results["naive"].summary(), results[stack].summary()
    factor = top["throughput_tok_s"] / naive["throughput_tok_s"]
    product = math.prod(results[p].summary()["throughput_tok_s"] / naive["throughput_tok_s"] for p in parts)
    q = answer_quality(results[stack], results["naive"])
    return {"stack_vs_naive_throughput": factor, "stack_vs_naive_p95_latency": naive["latency_p95_s"] /
            top["latency_p95_s"], "product_of_singles": product, "stack_vs_product_of_singles": factor / product,
            "stack_identical_to_naive": float(q["identical"]), "stack_agreement_with_naive": q["agreement"]}
