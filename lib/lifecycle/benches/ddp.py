"""ddp: steps/s of data-parallel training on 1 and 2 processes, and the share of a step spent in all-reduce.

Both counts train the same model on the same global batch (2 layers at the `cpu` preset's width, 16 × 64 tokens);
with two processes each computes half of it. Each process runs one thread, i.e. owns one core, the way each
rank of a GPU run owns one GPU: the ideal is 2× the steps/s of one process, reached only if a second core is free
(on a shared machine it is not), and a single process with two threads could use both cores without DDP.

Two views of communication, both at 2 processes:
- allreduce_share: one standalone `all_reduce` of a tensor as large as all the gradients together, ÷ the time
  of a DDP step. What the step would pay if none of the communication overlapped the backward pass.
- exposed_comm_share: 1 − (step under `DDP.no_sync()`, no communication) ÷ (normal step). What it does pay.
Each process count runs in its own torchrun launch; counts alternate (1, 2, 1, 2) and medians are reported.
"""
from __future__ import annotations

from ..bench import Report
from ..distributed import DDPConfig
from ..measure.launch import compare_processes


def run(quick: bool) -> Report:
    cfg = DDPConfig(preset="cpu", n_layer=2, batch_size=16, block_size=64,
                    time_steps=3 if quick else 5, time_repeats=2 if quick else 3)
    c = compare_processes(cfg, (1, 2), rounds=1 if quick else 2, stream=False, timeout_s=300)
    rows = []
    for n, t in c["per_nproc"].items():
        rows.append({"processes": n, "threads each": t["threads"], "ms/step": t["seconds_per_step"] * 1e3,
                     "steps/s": 1 / t["seconds_per_step"],
                     "ms/step without all-reduce": t["seconds_per_step_no_sync"] * 1e3,
                     "ms all-reduce alone": t["seconds_allreduce"] * 1e3})
    figures = {f"steps_per_s_{n}": 1 / t["seconds_per_step"] for n, t in c["per_nproc"].items()}
    figures |= {f"seconds_allreduce_{n}": t["seconds_allreduce"] for n, t in c["per_nproc"].items()}
    figures |= {"gradient_bytes": c["gradient_bytes"], "n_params": c["n_params"],
                "exposed_comm_share": c["exposed_comm_share"], "global_batch": cfg.batch_size,
                "block_size": cfg.block_size}
    notes = ["one thread per process: 2 processes use 2 cores where 1 uses one, so the ideal is 2×; two CPU "
             "cores are not two GPUs (they share memory bandwidth and caches), and one process with two threads "
             "could use both cores without any communication",
             "allreduce_share is a standalone all-reduce of every gradient ÷ a step (an upper bound, nothing "
             "overlapped); exposed_comm_share = 1 − step without all-reduce ÷ step"]
    return Report(rows=rows, figures=figures, notes=notes,
                  ratios={"two_vs_one_steps_per_s": c["two_vs_one_steps_per_s"],
                          "allreduce_share": c["allreduce_share"]})
