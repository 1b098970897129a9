"""Reference solutions to lesson 10's code exercises (the blanks in 10_serve_millions.ipynb, filled in)."""
import numpy as np


def serving_summary(arrivals, first_tokens, finishes, n_tokens):
    """Throughput (tokens/s over the run), p95 end-to-end latency and median time per output token, in seconds."""
    arrivals, first, finishes, n = (np.asarray(x, dtype=float) for x in (arrivals, first_tokens, finishes, n_tokens))
    span = finishes.max() - arrivals.min()  # from the first arrival to the last answer
    many = n > 1  # a one-token answer has no time between tokens
    tpot = (finishes[many] - first[many]) / (n[many] - 1)
    return {"throughput_tok_s": float(n.sum() / span),
            "latency_p95_s": float(np.percentile(finishes - arrivals, 95)),
            "tpot_p50_s": float(np.percentile(tpot, 50))}


def max_batch(memory_bytes, n_params, bytes_per_param, n_layer, n_kv_heads, head_dim, context, bytes_per_value):
    """Requests of `context` tokens whose KV caches fit beside the weights."""
    kv_per_request = 2 * n_layer * n_kv_heads * head_dim * context * bytes_per_value  # keys and values
    free = memory_bytes - n_params * bytes_per_param
    return int(free // kv_per_request)
