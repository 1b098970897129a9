"""Reference solutions to lesson 03's code exercises (the blanks in 03_inference.ipynb, filled in)."""
import math

import torch


def top_p_probs(logits, top_p):
    """Nucleus filtering: probabilities (..., V) from logits (..., V), keeping the smallest top set whose mass
    reaches top_p (the token that crosses it included), renormalised."""
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    above = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass ranked above each token
    sorted_probs = sorted_probs.masked_fill(above >= top_p, 0.0)  # the most likely token has 0 above it: it stays
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)  # back to vocabulary order
    return kept / kept.sum(dim=-1, keepdim=True)


def decode_attention(q, k_new, v_new, cache_k, cache_v, pos):
    """Write position `pos` into one layer's cache (B, nh, max_len, hs), in place; attend q (B, nh, 1, hs) over
    positions 0..pos; return (B, nh, 1, hs)."""
    cache_k[:, :, pos] = k_new[:, :, 0]
    cache_v[:, :, pos] = v_new[:, :, 0]
    keys, values = cache_k[:, :, :pos + 1], cache_v[:, :, :pos + 1]  # (B, nh, pos + 1, hs)
    scores = q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, 1, pos + 1)
    return scores.softmax(dim=-1) @ values
