"""How the course measures: the workloads, predictors, metrics, launchers and comparisons that lessons and
benchmarks share.

The technique modules one level up (`caching`, `batching`, `quantize`, `distributed`, `speculative`, ...) hold only
what the course teaches: the algorithm, its data structures and its correctness rules. What it takes to *measure*
a technique lives here, once; the lessons and `python -m lifecycle.bench` (whose `benches/` only assemble reports)
both call it:

- `timing`       the one timing helper (`interleaved`: a warm-up round, then rounds of one call of each variant with
                 the order reversed every round; medians, quartiles and every round kept in a `Timing`), `timed` for
                 one variant, `paired_ratios`, and `synchronize` (wait for a GPU's queue before reading a clock).
- `standin`      the model a benchmark or lesson times: the trained one from the zoo if cached, else a seeded
                 random-weight stand-in of its shape, and a sentence saying which.
- `quality`      how close a changed model stays to a reference: validation loss, greedy agreement, the
                 bits × group-size grid of lesson 04's sliders.
- `queries`      a seeded stream of repeated questions (Zipf popularity), the hit rate an LRU cache should see on it
                 (Che's approximation) against a simulation with the real cache, and what a hit rate saves.
- `requests`     a seeded stream of requests with Poisson arrivals for the batching server, and the summary of a
                 serving run (throughput, latency percentiles, slot utilization, padding waste).
- `speed`        micro-benchmarks: a decode step against batch size or at a fixed context, time to first token
                 with and without a cached prefix.
- `precisions`   the teacher at every precision (lesson 04): variants, quality, speed, the fused-int8 width sweep.
- `speculation`  speculative decoding's acceptance, cost ratio and speedup against its prediction (lesson 08).
- `serving`      the servers lesson 10 compares (naive, each technique alone, the stack) and how they are run.
- `launch`       `torchrun` as a subprocess: start ranks, stream their output, end every process of a failed run,
                 time one process against several (lesson 02).

Dependencies point one way: modules here import the technique modules (`model`, `generate`, `train`, `quantize`,
`batching`, `caching`, `speculative`, `distributed`), which never import this layer; the layers above both (the
serving stack `serve`, the load generator `loadtest`, the dashboards `widgets`) may use it. The one exception is
`timing`, a leaf that imports only torch: `synchronize` lives there, and `device` (the hardware probe) and the
technique modules that read a clock on a GPU import it from there.
"""
