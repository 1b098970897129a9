"""Reference solutions of lesson 00's code exercises (00_start_here.ipynb)."""
import math


def attainable_flops(intensity, peak_flops, bandwidth):
    """The roofline: memory-bound below the ridge point, compute-bound above it."""
    return min(peak_flops, intensity * bandwidth)


def gpus_for_weights(n_params, bytes_per_param, gpu_memory_bytes):
    """The fewest whole GPUs whose memory holds every weight."""
    return math.ceil(n_params * bytes_per_param / gpu_memory_bytes)
