"""lifecycle.caching: key rules, LRU behaviour against a reference model, prefix caching against plain generation."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lifecycle import caching as C
from lifecycle.generate import Sampling, generate, prefill
from lifecycle.model import GPT, KVCache, preset

BASE = dict(model_id="m1", temperature=0.8, top_k=10, top_p=0.9, seed=3, stop="\n")


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(preset("test", block_size=64)).eval()


# ---- response keys: a hit only for a request whose answer is the same ----

def test_identical_requests_share_a_key_and_every_output_changing_parameter_changes_it():
    key = C.response_key("To be", 16, **BASE)
    assert key == C.response_key("To be", 16, **BASE)
    changes = [("prompt", "To be "), ("max_new_tokens", 17), ("model_id", "m2"), ("temperature", 0.7),
               ("top_k", 11), ("top_p", 0.8), ("seed", 4), ("stop", "."), ("top_p", None), ("top_k", None)]
    for name, value in changes:
        args = {"prompt": "To be", "max_new_tokens": 16, **BASE, name: value}
        other = C.response_key(args.pop("prompt"), args.pop("max_new_tokens"), **args)
        assert other != key, f"changing {name} must change the key"


def test_cache_returns_an_answer_only_for_the_identical_key():
    cache = C.ResponseCache(capacity=8)
    key = C.response_key("To be", 16, **BASE)
    cache.put(key, "or not")
    assert cache.get(C.response_key("To be", 16, **BASE)) == "or not"
    for name, value in [("seed", 4), ("temperature", 0.9), ("top_k", 5), ("top_p", 0.5), ("model_id", "m2")]:
        assert cache.get(C.response_key("To be", 16, **(BASE | {name: value}))) is None
    assert cache.get(C.response_key("To be", 15, **BASE)) is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 6)


def test_canonical_forms_that_cannot_change_the_output_share_a_key():
    greedy = C.response_key("x", 4)
    assert C.response_key("x", 4, top_k=3, top_p=0.5, seed=9) == greedy  # argmax ignores them
    assert C.response_key("x", 4, temperature=1.0, seed=1, top_p=1.0) == C.response_key("x", 4, temperature=1.0, seed=1)
    assert C.response_key("x", 4, stop=["b", "a", "a"]) == C.response_key("x", 4, stop=["a", "b"])
    assert C.response_key("caf\u00e9", 4) == C.response_key("cafe\u0301", 4)  # the same text, two encodings


def test_unseeded_sampling_is_never_cached():
    assert C.response_key("x", 4, temperature=0.7) is None
    cache = C.ResponseCache(capacity=4)
    calls = []
    for _ in range(3):
        cache.get_or_compute(None, lambda: calls.append(1) or "fresh")
    assert len(calls) == 3 and len(cache) == 0 and cache.stats.bypassed == 3 and cache.stats.requests == 0


def test_serve_answers_repeats_from_the_cache_with_the_same_text(model, small_corpus):
    tok = small_corpus.tokenizer
    torch.manual_seed(0)
    model = GPT(preset("test", vocab_size=tok.vocab_size, block_size=64)).eval()
    prompts = ["The tide", "A lamp", "The tide", "The tide", "A lamp"]
    plain = C.serve_with_caches(model, tok, prompts, 6)
    cache = C.ResponseCache(capacity=4)
    cached = C.serve_with_caches(model, tok, prompts, 6, responses=cache)
    assert [s.text for s in cached] == [s.text for s in plain]
    assert [s.hit for s in cached] == [False, False, True, True, True]
    # unseeded sampling goes to the model every time
    C.serve_with_caches(model, tok, prompts, 6, responses=cache, sampling=Sampling(1.0))
    assert cache.stats.bypassed == len(prompts)


# ---- the LRU against a reference model, under random operation sequences ----

class ReferenceLRU:
    """The obvious O(n) LRU: a list of [key, size, written], least recently used first."""

    def __init__(self, capacity, max_bytes, ttl):
        self.capacity, self.max_bytes, self.ttl = capacity, max_bytes, ttl
        self.items: list[list] = []
        self.hits = self.misses = self.evictions = self.expirations = 0

    def expire(self, now):
        if self.ttl is not None:
            kept = [it for it in self.items if now - it[2] < self.ttl]
            self.expirations += len(self.items) - len(kept)
            self.items = kept

    def get(self, key, now):
        self.expire(now)
        for i, it in enumerate(self.items):
            if it[0] == key:
                self.items.append(self.items.pop(i))
                self.hits += 1
                return it[1]
        self.misses += 1
        return None

    def put(self, key, size, now):
        self.expire(now)
        self.items = [it for it in self.items if it[0] != key]
        if self.max_bytes is not None and size > self.max_bytes:
            return
        self.items.append([key, size, now])
        while (self.capacity is not None and len(self.items) > self.capacity) or \
                (self.max_bytes is not None and sum(it[1] for it in self.items) > self.max_bytes):
            self.items.pop(0)
            self.evictions += 1


class LRUMachine(RuleBasedStateMachine):
    @initialize(capacity=st.none() | st.integers(1, 5), max_bytes=st.none() | st.integers(1, 20),
                ttl=st.none() | st.integers(1, 6))
    def setup(self, capacity, max_bytes, ttl):
        if capacity is None and max_bytes is None:
            capacity = 3
        self.now = 0.0
        self.cache = C.ResponseCache(capacity, max_bytes, ttl, clock=lambda: self.now, sizeof=lambda k, v: v)
        self.ref = ReferenceLRU(capacity, max_bytes, ttl)

    @rule(key=st.integers(0, 7))
    def get(self, key):
        assert self.cache.get(key) == self.ref.get(key, self.now)

    @rule(key=st.integers(0, 7), size=st.integers(1, 12))
    def put(self, key, size):
        self.cache.put(key, size)
        self.ref.put(key, size, self.now)

    @rule(dt=st.integers(0, 3))
    def tick(self, dt):
        self.now += dt

    @invariant()
    def same_order_and_bounds(self):
        if not hasattr(self, "cache"):
            return
        assert self.cache.keys() == [it[0] for it in self.ref.items]
        assert self.cache.nbytes == sum(it[1] for it in self.ref.items)
        if self.cache.capacity is not None:
            assert len(self.cache) <= self.cache.capacity
        if self.cache.max_bytes is not None:
            assert self.cache.nbytes <= self.cache.max_bytes
        s, r = self.cache.stats, self.ref
        assert (s.hits, s.misses, s.evictions) == (r.hits, r.misses, r.evictions)
        assert s.expirations == r.expirations


TestLRUAgainstReference = LRUMachine.TestCase
TestLRUAgainstReference.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_ttl_expires_by_write_time_not_by_reads():
    now = [0.0]
    cache = C.ResponseCache(capacity=4, ttl=10, clock=lambda: now[0])
    cache.put("a", "1")
    now[0] = 9.0
    assert cache.get("a") == "1"  # a read does not renew the entry
    now[0] = 10.0
    assert cache.get("a") is None and cache.stats.expirations == 1


def test_byte_budget_counts_key_and_value_and_rejects_oversized_entries():
    cache = C.ResponseCache(max_bytes=10)
    assert cache.put("k", "123456789")  # 1 + 9 bytes
    assert cache.nbytes == 10
    assert not cache.put("k2", "x" * 20) and cache.stats.rejected == 1 and len(cache) == 1


# ---- prefix caching: the same logits and the same tokens as a full prefill ----

def test_prefix_cached_generation_equals_plain_generation(model):
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, model.config.vocab_size, (20,), generator=g).tolist()
    prefixes = C.PrefixCache(model, max_bytes=10**7)
    prefixes.add(prefix)
    for n_rest in (1, 7):
        ids = prefix + torch.randint(0, model.config.vocab_size, (n_rest,), generator=g).tolist()
        with torch.inference_mode():
            full = prefill(model, torch.tensor([ids]), KVCache.for_model(model))
            cached, cache = prefixes.prefill(ids)
        assert cache.length == len(ids)
        assert torch.allclose(full, cached, atol=1e-5, rtol=0)
        assert torch.equal(generate(model, ids, 30), C.generate_with_prefix(prefixes, ids, 30))
        sampled = dict(sampling=Sampling(temperature=1.0, top_k=8), seed=5)
        assert torch.equal(generate(model, ids, 20, **sampled), C.generate_with_prefix(prefixes, ids, 20, **sampled))
    assert prefixes.stats.hits == 6 and prefixes.stats.tokens_reused == 6 * 20  # 2 lengths × 3 calls
    assert prefixes.stats.tokens_prefilled == 20 + 3 * (1 + 7)  # the prefix once, then only the remainders


def test_a_request_equal_to_a_cached_prefix_reuses_its_logits(model):
    prefix = list(range(10))
    prefixes = C.PrefixCache(model, max_bytes=10**7)
    prefixes.add(prefix)
    with torch.inference_mode():
        full = prefill(model, torch.tensor([prefix]), KVCache.for_model(model))
    logits, cache = prefixes.prefill(prefix)
    assert torch.allclose(full, logits, atol=1e-5, rtol=0) and cache.length == 10
    assert torch.equal(generate(model, prefix, 12), C.generate_with_prefix(prefixes, prefix, 12))


def test_lookup_finds_the_longest_cached_prefix(model):
    prefixes = C.PrefixCache(model, max_bytes=10**7)
    short, long = [1, 2, 3], [1, 2, 3, 4, 5, 6]
    prefixes.add(short)
    prefixes.add(long)
    assert prefixes.lookup(long + [7]).ids == tuple(long)
    assert prefixes.lookup([1, 2, 3, 4, 9]).ids == tuple(short)
    assert prefixes.lookup([2, 3]) is None
    assert prefixes.prefixes()[-1] == tuple(short)  # the last lookup made it most recently used


def test_prefix_memory_is_bounded_and_evicts_least_recently_used(model):
    one = C.PrefixCache(model, max_bytes=10**7).add(list(range(8))).nbytes
    assert one == C.kv_bytes_per_token(model) * 8 + model.config.vocab_size * 4
    prefixes = C.PrefixCache(model, max_bytes=2 * one + 1)
    a, b, c = [[i] * 8 for i in (1, 2, 3)]
    prefixes.add(a)
    prefixes.add(b)
    prefixes.lookup(a + [0])  # a is now more recently used than b
    prefixes.add(c)
    assert prefixes.prefixes() == [tuple(a), tuple(c)] and prefixes.stats.evictions == 1
    assert prefixes.nbytes <= prefixes.max_bytes


@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=12), budget_tokens=st.integers(30, 80))
@settings(max_examples=25, deadline=None)
def test_prefix_memory_bound_holds_for_any_sequence_of_adds(lengths, budget_tokens):
    torch.manual_seed(0)
    model = GPT(preset("test", block_size=64)).eval()
    per_token = C.kv_bytes_per_token(model)
    prefixes = C.PrefixCache(model, max_bytes=budget_tokens * per_token + 4 * model.config.vocab_size)
    for i, n in enumerate(lengths):
        prefixes.add([i % model.config.vocab_size] + [0] * (n - 1))
        assert prefixes.nbytes <= prefixes.max_bytes
        assert prefixes.prefixes()[-1][0] == i % model.config.vocab_size


def test_prefill_flops_sums_the_per_token_rule(model):
    expected = sum(model.flops_per_token(context=t + 1, training=False) for t in range(5, 12))
    assert math.isclose(C.prefill_flops(model, 7, start=5), expected, rel_tol=1e-12)


# ---- bad input: clear errors ----

@pytest.mark.parametrize("kwargs, match", [
    (dict(capacity=0), "capacity"), (dict(capacity=-3), "capacity"), (dict(capacity=2.5), "capacity"),
    (dict(capacity=True), "capacity"), (dict(max_bytes=0), "max_bytes"), (dict(), "capacity"),
    (dict(capacity=2, ttl=0), "ttl"), (dict(capacity=2, ttl=-1.0), "ttl"),
])
def test_invalid_response_caches_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.ResponseCache(**kwargs)


def test_invalid_prefixes_and_requests_are_refused(model):
    with pytest.raises(ValueError, match="max_bytes"):
        C.PrefixCache(model, max_bytes=0)
    prefixes = C.PrefixCache(model, max_bytes=10**7)
    with pytest.raises(ValueError, match="empty"):
        prefixes.add([])
    with pytest.raises(ValueError, match="token ids"):
        prefixes.add([model.config.vocab_size])
    with pytest.raises(ValueError, match="token ids"):
        prefixes.add("abc")
    with pytest.raises(ValueError, match="no room"):
        prefixes.add([0] * model.config.block_size)
    with pytest.raises(ValueError, match="max_bytes"):
        C.PrefixCache(model, max_bytes=100).add([0] * 10)
    with pytest.raises(ValueError, match="window"):
        C.generate_with_prefix(prefixes, [0] * 60, 10)
    with pytest.raises(ValueError, match="max_new_tokens"):
        C.response_key("x", -1)
    with pytest.raises(ValueError, match="temperature"):
        C.response_key("x", 4, temperature=-1)


def test_fingerprint_names_the_weights(model):
    same = GPT(preset("test", block_size=64)).eval()
    same.load_state_dict(model.state_dict())
    assert C.fingerprint(same) == C.fingerprint(model)
    with torch.no_grad():
        same.lm_head.weight[0, 0] += 1e-6
    assert C.fingerprint(same) != C.fingerprint(model)
    assert C.fingerprint(model.to(torch.bfloat16))  # any dtype can be hashed
