"""How the course measures: the workloads, predictors, metrics and launchers that lessons and benchmarks share.

The technique modules one level up (`caching`, `batching`, `quantize`, `distributed`, ...) hold only what the
course teaches: the algorithm, its data structures and its correctness rules. What it takes to *measure* a
technique lives here, once, and both the lessons and `python -m lifecycle.bench` call it:

- `quality`   how close a changed model stays to a reference: validation loss, greedy agreement, the
              bits × group-size grid of lesson 04.
- `queries`   a seeded stream of repeated questions (Zipf popularity), the hit rate an LRU cache should see
              on it (Che's approximation), a simulation with the real cache, and what a hit rate saves in dollars.
- `requests`  a seeded stream of requests with Poisson arrivals for the batching server, and the summary of a
              serving run (throughput, latency percentiles, slot utilization, padding waste).
- `decode`    the decode micro-benchmark: time per decode step against batch size.
- `launch`    `torchrun` as a subprocess for notebooks and tests: start ranks, stream their output, kill every
              process of a failed run, and time one process against several.

Dependencies point one way: modules here import the technique modules, never the reverse.
"""
