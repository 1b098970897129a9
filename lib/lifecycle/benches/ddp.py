"""ddp: steps/s of data-parallel training on 1 and 2 processes, next to one process with two threads, and the share
of a step spent in all-reduce.

Every configuration trains the same model on the same global batch (2 layers at the `cpu` preset's width, 16 × 64
tokens); with two processes each computes half of it. Each DDP process runs one thread, i.e. owns one core, the way
each rank of a GPU run owns one GPU: the ideal is 2× the steps/s of one process, reached only if a second core is
free (on a shared machine it is not). The baseline a CPU user would really run is the third configuration: one
process with two torch threads, which uses both cores without any communication (`one_process_two_threads`).

Two views of communication, both at 2 processes:
- allreduce_share: one standalone `all_reduce` of a tensor as large as all the gradients together, ÷ the time
  of a DDP step. What the step would pay if none of the communication overlapped the backward pass.
- exposed_comm_share: 1 − (step under `DDP.no_sync()`, no communication) ÷ (normal step). What it does pay.
Each configuration runs in its own torchrun launch (inside it, steps with and without all-reduce are interleaved and
medians kept, see lifecycle.distributed); the launches alternate, the order reversed every round (1 and 2 processes,
then 1 process × 2 threads; then the reverse), and the medians over rounds are reported.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict

from ..bench import Report
from ..distributed import DDPConfig
from ..measure.launch import compare_processes, launch
from ..measure.timing import round_order

TIMED = ("seconds_per_step", "seconds_per_step_no_sync", "seconds_allreduce")


def one_process_two_threads(cfg: DDPConfig) -> dict:
    """One launch of one process with two torch threads on the same global batch: its seconds per step."""
    time_cfg = DDPConfig(**(asdict(cfg) | {"mode": "time", "checkpoint": False, "device": "cpu"}))
    result = launch(1, time_cfg, threads=2, stream=False, timeout_s=300).result
    return {k: result[k] for k in TIMED} | {"threads": result.get("threads")}


def run(quick: bool) -> Report:
    cfg = DDPConfig(preset="cpu", n_layer=2, batch_size=16, block_size=64,
                    time_steps=3 if quick else 5, time_repeats=2 if quick else 3)
    rounds = 1 if quick else 2
    pairs, baselines = [], []
    for i in range(rounds):
        for what in round_order(["processes", "threads"], i):
            if what == "processes":
                pairs.append(compare_processes(cfg, (1, 2), rounds=1, stream=False, timeout_s=300))
            else:
                baselines.append(one_process_two_threads(cfg))
    per = {n: {k: statistics.median(p["per_nproc"][n][k] for p in pairs) for k in TIMED}
           | {"threads": pairs[0]["per_nproc"][n]["threads"]} for n in (1, 2)}
    base = {k: statistics.median(b[k] for b in baselines) for k in TIMED} | {"threads": baselines[0]["threads"]}
    configs = {"1 process × 1 thread": per[1], "2 processes × 1 thread": per[2], "1 process × 2 threads": base}
    rows = [{"configuration": name, "threads each": t["threads"], "ms/step": t["seconds_per_step"] * 1e3,
             "steps/s": 1 / t["seconds_per_step"],
             "ms/step without all-reduce": t["seconds_per_step_no_sync"] * 1e3,
             "ms all-reduce alone": t["seconds_allreduce"] * 1e3} for name, t in configs.items()]
    figures = {f"steps_per_s_{n}": 1 / t["seconds_per_step"] for n, t in per.items()}
    figures |= {f"seconds_allreduce_{n}": t["seconds_allreduce"] for n, t in per.items()}
    figures |= {"steps_per_s_1proc_2threads": 1 / base["seconds_per_step"],
                "gradient_bytes": pairs[0]["gradient_bytes"], "n_params": pairs[0]["n_params"],
                "exposed_comm_share": max(0.0, 1 - per[2]["seconds_per_step_no_sync"] / per[2]["seconds_per_step"]),
                "global_batch": cfg.batch_size, "block_size": cfg.block_size, "rounds": rounds}
    two_vs_threads = base["seconds_per_step"] / per[2]["seconds_per_step"]
    notes = ["one thread per DDP process: 2 processes use 2 cores where 1 uses one, so the ideal is 2×; two CPU "
             "cores are not two GPUs (they share memory bandwidth and caches)",
             f"the CPU user's alternative, one process with two threads and no communication: 2 processes ran at "
             f"{two_vs_threads:.2f}× its steps/s",
             "allreduce_share is a standalone all-reduce of every gradient ÷ a step (an upper bound, nothing "
             "overlapped); exposed_comm_share = 1 − step without all-reduce ÷ step"]
    return Report(rows=rows, figures=figures, notes=notes,
                  ratios={"two_vs_one_steps_per_s": per[1]["seconds_per_step"] / per[2]["seconds_per_step"],
                          "two_processes_vs_one_process_two_threads": two_vs_threads,
                          "allreduce_share": per[2]["seconds_allreduce"] / per[2]["seconds_per_step"]})
