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
stack_identical_to_naive (1 when the stack changed no computed answer). The servers and the measuring are
`lifecycle.measure.serving`, which lesson 10 calls too, so it measures the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..bench import Report
from ..costs import SEED
from ..loadtest import LoadConfig, make_load
from ..measure.serving import NAIVE, SINGLES, STACK, STACK_INT8, answer_quality, load_models, measure_stacks, \
    stack_ratios, stack_table


@dataclass(frozen=True)
class BenchConfig:
    load: LoadConfig = LoadConfig(n_requests=64, rate=200.0, catalogue_size=24, zipf_s=1.0, one_off_share=0.25)
    repeats: int = 3
    usd_per_hour: float = SEED.usd_per_gpu_hour  # the price lesson 09 puts on an accelerator-hour


QUICK = BenchConfig(load=replace(BenchConfig().load, n_requests=40), repeats=1)


def run(quick: bool = False) -> Report:
    cfg = QUICK if quick else BenchConfig()
    teacher, student, tok, note = load_models()
    load = make_load(cfg.load, teacher.config.block_size)
    configs = {"naive": NAIVE, **SINGLES, "stack": STACK, "stack + int8": STACK_INT8}
    results = measure_stacks(teacher, student, tok, load, configs, cfg.repeats)
    r = stack_ratios(results)
    r["stack_int8_vs_naive_throughput"] = results["stack + int8"].summary()["throughput_tok_s"] / \
        results["naive"].summary()["throughput_tok_s"]
    r["stack_int8_agreement_with_naive"] = answer_quality(results["stack + int8"], results["naive"])["agreement"]
    rows = stack_table(results, usd_per_hour=cfg.usd_per_hour)
    figures = {row["server"]: {k: v for k, v in row.items() if k != "server"} for row in rows}
    notes = [note, f"load: {len(load)} requests, Poisson at {cfg.load.rate:g}/s, catalogue of "
                   f"{cfg.load.catalogue_size} questions (Zipf s={cfg.load.zipf_s:g}, {cfg.load.one_off_share:.0%} "
                   f"one-off), outputs {cfg.load.output_len.low}-{cfg.load.output_len.high} tokens; the run of median "
                   f"makespan of {cfg.repeats} repeat(s) on the virtual clock, the order reversed every round",
             f"$ per million tokens at ${cfg.usd_per_hour:.2f} per hour of the machine",
             "speculative decoding is measured alone: inside a continuous batch it is refused (see lifecycle.serve)"]
    return Report(rows=rows, figures=figures, ratios=r, notes=notes)
