"""Reference solutions to lesson 05's code exercises (the blanks in 05_batching.ipynb, filled in)."""
import torch

from lifecycle.batching import prefill_padded
from lifecycle.model import KVCache


def padded_causal_mask(key_mask):
    """key_mask (B, T) bool, False at padding → attention mask (B, 1, T, T) bool, True where query i sees key j."""
    B, T = key_mask.shape
    causal = torch.ones(T, T, dtype=torch.bool, device=key_mask.device).tril()  # j <= i
    mask = causal[None, None] & key_mask[:, None, None, :]  # and key j is a real token
    return mask | torch.eye(T, dtype=torch.bool, device=key_mask.device)  # a padding query still sees itself


def admit(model, prompts, slots):
    """Prefill `prompts` together, copy each one's keys and values into a new row of `slots`; return the greedy
    first token of each prompt."""
    tmp = KVCache.for_model(model, len(prompts), max_len=max(len(p) for p in prompts))
    logits = prefill_padded(model, prompts, tmp)  # (B, V): each row's next-token scores
    first = logits.argmax(dim=-1).tolist()
    for i, p in enumerate(prompts):
        slots.insert(tmp, i, len(p))  # only the prompt's own columns, not its padding
    return first
