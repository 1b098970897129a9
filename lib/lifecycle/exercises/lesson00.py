"""Lesson 00 exercises: the roofline and the memory a model's weights need.

- `attainable_flops(intensity, peak_flops, bandwidth)`: the FLOP/s a kernel can reach at `intensity` FLOPs per byte
  (checked against `roofline.attainable_flops`, the function that draws lesson 00's roofline plot).
- `gpus_for_weights(n_params, bytes_per_param, gpu_memory_bytes)`: the fewest GPUs whose memory holds the weights
  (checked against `costs.gpus_to_hold(..., usable=1.0)`).
"""
from __future__ import annotations

from .. import costs, roofline
from ..device import ACCELERATORS
from . import Case, check_function

_H100 = ACCELERATORS["H100-SXM5-80GB"]  # its data sheet: dense bf16 FLOP/s and HBM bytes/s
H100_BF16, H100_BW = _H100.bf16_flops, _H100.bandwidth


def check_attainable_flops(fn) -> bool | None:
    """`fn(intensity, peak_flops, bandwidth) -> float` (FLOP/s) against the library's roofline."""
    ridge = H100_BF16 / H100_BW
    cases = [Case("H100, decode at batch 1 (2 FLOPs per 2-byte weight: intensity 1)", (1.0, H100_BF16, H100_BW)),
             Case("H100, a large matmul (intensity 1,000)", (1000.0, H100_BF16, H100_BW)),
             Case("H100, exactly at the ridge point", (ridge, H100_BF16, H100_BW)),
             Case("a laptop CPU: 200 GFLOP/s, 20 GB/s, intensity 4", (4.0, 200e9, 20e9)),
             Case("a laptop CPU: 200 GFLOP/s, 20 GB/s, intensity 40", (40.0, 200e9, 20e9)),
             Case("intensity 0 (a pure copy does no arithmetic)", (0.0, 200e9, 20e9))]
    return check_function("attainable_flops", fn, reference=roofline.attainable_flops, cases=cases, rtol=1e-9,
                          atol=0.0,
                          hint="below the ridge point memory sets the speed (bytes/s × FLOPs per byte); above it, "
                               "the peak does. The answer is the smaller of the two, never more than the peak.")


def library_gpus_for_weights(n_params, bytes_per_param, gpu_memory_bytes):
    """The reference: the library's count with all of each GPU's memory given to the weights."""
    return costs.gpus_to_hold(n_params, bytes_per_param, gpu_memory_bytes, usable=1.0)


def check_gpus_for_weights(fn) -> bool | None:
    """`fn(n_params, bytes_per_param, gpu_memory_bytes) -> int` against `costs.gpus_to_hold`."""
    cases = [Case("1 trillion parameters in 16-bit on 80 GB GPUs", (1e12, 2, 80e9)),
             Case("Llama-2-70B in 16-bit on 80 GB GPUs", (70e9, 2, 80e9)),
             Case("a 7B model in int8 on one 80 GB GPU", (7e9, 1, 80e9)),
             Case("exactly two GPUs' worth: 160B parameters in int8 on 80 GB", (160e9, 1, 80e9)),
             Case("13B in 16-bit on 24 GB GPUs (26 GB: just over one)", (13e9, 2, 24e9)),
             Case("GPT-3 (175B) in 16-bit on 16 GB T4s", (175e9, 2, 16e9))]
    return check_function("gpus_for_weights", fn, reference=library_gpus_for_weights, cases=cases, rtol=0.0, atol=0.0,
                          hint="bytes needed = parameters × bytes per parameter; a GPU cannot be shared in part, "
                               "so round UP (math.ceil), and an exact multiple needs no extra GPU.")


EXERCISES = {"attainable_flops": check_attainable_flops, "gpus_for_weights": check_gpus_for_weights}
