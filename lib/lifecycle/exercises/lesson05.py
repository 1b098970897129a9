"""Lesson 05 exercises: the attention mask of a left-padded batch, and the admit step of continuous batching.

- `padded_causal_mask(key_mask)`: from a left-padded batch's key mask (B, T) (False at padding), the boolean
  attention mask (B, 1, T, T): query i of row b may see key j when j <= i and key j is not padding; a query on a
  padding position sees only itself, so its softmax stays finite (checked against the mask `GPT.forward` builds,
  `GPT._attention_mask`).
- `admit(model, prompts, slots)`: prefill newly admitted prompts as one left-padded batch into a temporary KV
  cache, take each one's greedy first token, and copy each prompt's keys and values into a free row of the
  server's `SlotCache` (checked against `batching._admit`, the admit step `batching.serve` runs, on the same
  model, prompts and slot state).
"""
from __future__ import annotations

import copy

import torch

from ..batching import Record, Request, ServeConfig, SlotCache, _admit, left_pad
from ..generate import prefill
from ..model import GPT, KVCache, preset
from . import Case, adapt, check_function


# ---- 1. the attention mask of a left-padded batch ----

def reference_padded_causal_mask(key_mask: torch.Tensor) -> torch.Tensor:
    B, T = key_mask.shape
    mask = GPT._attention_mask(B, T, 0, None, key_mask, key_mask.device)  # (B, 1, T, T) bool, True = attend
    return mask.expand(B, 1, T, T)


def check_padded_causal_mask(fn) -> bool | None:
    """`fn(key_mask (B, T) bool) -> (B, 1, T, T) bool` against the mask the model builds for padded rows."""
    def mask_of(*lengths: int) -> torch.Tensor:
        return left_pad([[1] * n for n in lengths])[1]

    cases = [Case("prompts of 5, 2 and 4 tokens", (mask_of(5, 2, 4),)),
             Case("no padding at all (the plain causal mask)", (mask_of(4, 4),)),
             Case("one row of a single token among longer ones", (mask_of(1, 6),)),
             Case("one prompt", (mask_of(3),))]
    return check_function("padded_causal_mask", fn, reference=reference_padded_causal_mask, cases=cases,
                          hint="causal = torch.ones(T, T, dtype=torch.bool).tril() (query i sees keys j <= i); "
                               "combine it with the KEYS' mask, key_mask[:, None, None, :], with &; then let every "
                               "query see itself (| torch.eye(T, dtype=torch.bool)), or a padding query would have "
                               "no key at all. Shape (B, 1, T, T), dtype torch.bool.")


# ---- 2. the admit step of continuous batching ----

def _tiny_model() -> GPT:
    with torch.random.fork_rng(devices=[]):  # seeded without touching the notebook's own random state
        torch.manual_seed(0)
        return GPT(preset("test")).eval()  # block_size 32, vocabulary 32


def _slot_state(first_tokens, slots: SlotCache) -> dict:
    c, n, L = slots.cache, slots.n, slots.cache.length
    return {"first tokens": first_tokens, "slots in use": n, "cache.length": L, "start of each row": list(slots.start),
            "key_mask": c.key_mask[:n, :L].clone(), "keys": c.k[:, :n, :, :L].clone(),
            "values": c.v[:, :n, :, :L].clone()}


@torch.inference_mode()
def reference_admit(model: GPT, prompts: list[list[int]], slots: SlotCache) -> dict:
    """The library's admit step (greedy, continuous policy), on Request objects that are far from finished."""
    take = [Request(i, tuple(p), max_new_tokens=16) for i, p in enumerate(prompts)]
    records = {r.id: Record(r.id, 0.0, len(r.prompt)) for r in take}
    live = _admit(model, take, records, slots, static=False, config=ServeConfig(), generator=None)
    return _slot_state([s.next_token for s in live], slots)


def _learner_admit(fn):
    def run(model, prompts, slots):
        with torch.inference_mode():
            first = fn(model, prompts, slots)
        if isinstance(first, torch.Tensor):
            first = first.tolist()
        return _slot_state(first, slots)
    return run


def _slots_holding(model: GPT, prompts: list[list[int]], width: int = 64, n_slots: int = 4) -> SlotCache:
    """A SlotCache that already serves `prompts` (admitted earlier), built with library calls only."""
    slots = SlotCache(model, n_slots, width)
    with torch.inference_mode():
        for p in prompts:
            tmp = KVCache.for_model(model, 1, max_len=len(p))
            prefill(model, torch.tensor([p]), tmp)
            slots.insert(tmp, 0, len(p))
    return slots


def check_admit(fn) -> bool | None:
    """`fn(model, prompts, slots) -> list of first tokens`, filling `slots` in place, against `batching._admit`."""
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)

    def prompt(n: int) -> list[int]:
        return torch.randint(0, 32, (n,), generator=g).tolist()

    empty = SlotCache(model, 4, 64)
    busy = _slots_holding(model, [prompt(6), prompt(3)])
    cases = [Case("three prompts (5, 12 and 1 tokens) into an empty server", (model, [prompt(5), prompt(12), prompt(1)],
                                                                              copy.deepcopy(empty))),
             Case("one prompt", (model, [prompt(7)], copy.deepcopy(empty))),
             Case("two newcomers (4 and 10 tokens) beside two requests already running (6 and 3 tokens): the "
                  "10-token prompt is longer than the timeline so far", (model, [prompt(4), prompt(10)], busy))]
    return check_function("admit", adapt(fn, _learner_admit), reference=reference_admit, cases=cases,
                          rtol=1e-4, atol=1e-5,
                          hint="tmp = KVCache.for_model(model, len(prompts), max_len=the longest prompt); logits = "
                               "batching.prefill_padded(model, prompts, tmp) (left-pads and prefills in one pass); "
                               "first = logits.argmax(-1); then for each row i, slots.insert(tmp, i, len(prompts[i])) "
                               "copies only that prompt's own columns (not its padding). Return first as a list.")


EXERCISES = {"padded_causal_mask": check_padded_causal_mask, "admit": check_admit}
