"""Reference solutions of lesson 07's code exercises (07_caching.ipynb)."""
from collections import OrderedDict

import numpy as np


def lru_hits(requests, capacity):
    """For each request, True if an LRU cache of `capacity` entries already held its key (a hit)."""
    cache = OrderedDict()  # keys, least recently used first
    hits = []
    for key in requests:
        if key in cache:
            cache.move_to_end(key)  # now the most recently used
            hits.append(True)
        else:
            cache[key] = None  # a miss: compute the answer, store it
            if len(cache) > capacity:
                cache.popitem(last=False)  # evict the least recently used
            hits.append(False)
    return hits


def che_hit_rate(popularity, cache_size, one_off_share=0.0):
    """Che's approximation of the steady-state LRU hit rate."""
    rate = (1 - one_off_share) * np.asarray(popularity, dtype=np.float64)  # λ_i, per request

    def occupancy(t):  # expected number of cached items when an item survives t requests after its last use
        return (1 - np.exp(-rate * t)).sum() + one_off_share * t

    lo, hi = 0.0, 1.0
    while occupancy(hi) < cache_size:  # grow the bracket until it holds the root
        lo, hi = hi, 2 * hi
    for _ in range(100):  # bisect: occupancy increases with t
        mid = (lo + hi) / 2
        if occupancy(mid) < cache_size:
            lo = mid
        else:
            hi = mid
    return float((rate * (1 - np.exp(-rate * hi))).sum())
