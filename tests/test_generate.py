"""Tests of lifecycle.generate: the KV cache changes nothing, our model is GPT-2, sampling obeys its filters.

Truths only: cached vs uncached logits and tokens (across the sliding-window boundary too), our logits vs
Hugging Face's GPT2LMHeadModel with the same weights, reproducible seeded sampling, top-k/top-p support
(property tests), streaming and stop strings, and the documented error for every bad input.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.data import CharTokenizer
from lifecycle.device import num_threads
from lifecycle.generate import (GREEDY, Sampling, as_sampling, context_start, decode_one_token, encode_prompt, generate,
                                generate_text, iter_steps, iter_tokens, logits_to_probs, prefill, sample,
                                time_request)
from lifecycle.model import GPT, KVCache, preset, to_hf_gpt2

W = preset("test").block_size  # 32: small, so generation crosses the window within a few dozen tokens


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread; one keeps the tests quick on a busy machine."""
    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def model() -> GPT:
    """The `test` preset with scrambled weights (std 0.3): at GPT-2's small init an untrained model repeats one
    token with near-equal logits; larger weights give varied text, clear greedy winners and logits of magnitude
    ~5, like a trained model's."""
    torch.manual_seed(0)
    m = GPT(preset("test")).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return m


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    chars = "\n abcdefghijklmnopqrstuvwxyz,.;"  # 31 + ... padded to the test preset's 32 tokens below
    return CharTokenizer(chars + "!")


def _steps(model, prompt, n, **kw):
    steps = list(iter_steps(model, prompt, n, **kw))
    return torch.stack([t for t, _ in steps], 1), torch.stack([lg for _, lg in steps], 1)


# ---- the KV cache changes nothing ----

@pytest.mark.parametrize("prompt_len,new,keep", [
    (1, 1, None), (1, 31, None), (1, 32, None), (5, 28, None), (31, 2, None), (32, 1, None), (32, 40, None),
    (40, 5, None), (3, 70, None), (70, 40, None), (1, 45, 1), (10, 50, 7), (1, 40, W), (33, 10, W)])
def test_cache_matches_no_cache(model, prompt_len, new, keep):
    """Greedy tokens identical and logits within 1e-5, including across one or more window slides."""
    g = torch.Generator().manual_seed(prompt_len * 1000 + new)
    prompt = torch.randint(0, model.config.vocab_size, (prompt_len,), generator=g)
    tok_c, log_c = _steps(model, prompt, new, use_cache=True, keep=keep)
    tok_n, log_n = _steps(model, prompt, new, use_cache=False, keep=keep)
    assert torch.equal(tok_c, tok_n)
    torch.testing.assert_close(log_c, log_n, atol=1e-5, rtol=0)
    assert tok_c.shape == (1, new)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cache_matches_no_cache_random(model, data):
    B = data.draw(st.integers(1, 3))
    T = data.draw(st.integers(1, 2 * W + 3))
    new = data.draw(st.integers(1, W + 8))
    keep = data.draw(st.one_of(st.none(), st.integers(1, W)))
    prompt = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, model.config.vocab_size - 1), min_size=T,
                                                       max_size=T), min_size=B, max_size=B)))
    tok_c, log_c = _steps(model, prompt, new, use_cache=True, keep=keep)
    tok_n, log_n = _steps(model, prompt, new, use_cache=False, keep=keep)
    assert torch.equal(tok_c, tok_n)
    torch.testing.assert_close(log_c, log_n, atol=1e-5, rtol=0)


def test_no_cache_logits_are_a_plain_forward_over_the_window(model):
    """The uncached path is the definition: logits of the last token of seq[context_start(n):n]."""
    prompt = torch.arange(20) % model.config.vocab_size
    tokens, logits = _steps(model, prompt, 50, use_cache=False)
    seq = torch.cat([prompt, tokens[0]])
    for i in range(50):
        n = 20 + i
        s = context_start(n, W)
        with torch.no_grad():
            expected = model(seq[None, s:n])[0][0, -1]
        torch.testing.assert_close(logits[0, i], expected, atol=1e-6, rtol=0)


def test_kv_cache_built_by_hand_equals_one_pass(model):
    """prefill + decode_one_token one token at a time give the logits of one full forward pass."""
    idx = torch.randint(0, model.config.vocab_size, (2, W))
    with torch.no_grad():
        full = model(idx)[0]  # (B, T, V)
    cache = KVCache.for_model(model, batch_size=2)
    steps = [prefill(model, idx[:, :3], cache)]
    for t in range(3, W):
        steps.append(decode_one_token(model, idx[:, t], cache))
    assert cache.length == W
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 2:], atol=1e-5, rtol=0)


# ---- the sliding-window rule ----

@given(W_=st.integers(1, 64), keep=st.integers(1, 64), n=st.integers(1, 500))
def test_context_start_rule(W_, keep, n):
    keep = min(keep, W_)
    s = context_start(n, W_, keep)
    assert 1 <= n - s <= W_  # never empty, never more than the window
    assert s == 0 if n <= W_ else s > 0
    assert context_start(n + 1, W_, keep) >= s  # the window only moves forward
    if n > W_ and context_start(n - 1, W_, keep) != s:
        assert n - s == keep  # right after a slide, exactly `keep` tokens remain in view


def test_prompt_longer_than_the_window_is_handled(model):
    prompt = torch.randint(0, model.config.vocab_size, (3 * W + 5,), generator=torch.Generator().manual_seed(1))
    out = generate(model, prompt, 10)
    assert out.shape == (1, 10)
    s = context_start(len(prompt), W)
    with torch.no_grad():
        first = model(prompt[None, s:])[0][0, -1].argmax()
    assert out[0, 0] == first


# ---- our GPT is Hugging Face's GPT-2 ----

@pytest.fixture(scope="module")
def hf_model(model):
    pytest.importorskip("transformers")
    hf = to_hf_gpt2(model)
    hf.generation_config.eos_token_id = None  # token 0 is ordinary text here: never stop at it
    return hf


@pytest.mark.parametrize("B,T", [(1, 1), (1, 17), (3, W)])
def test_logits_equal_hugging_face_gpt2(model, hf_model, B, T):
    idx = torch.randint(0, model.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        ours = model(idx)[0]
        theirs = hf_model(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_greedy_tokens_equal_hugging_face_generate(model, hf_model):
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    new = W - prompt.shape[1] + 1  # fills the window exactly (the last token is never fed back)
    with torch.no_grad():
        theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                   max_new_tokens=new, pad_token_id=0)[:, prompt.shape[1]:]
    assert torch.equal(generate(model, prompt, new), theirs)


# ---- sampling ----

def test_seeded_sampling_is_reproducible(model):
    kw = dict(temperature=2.0, top_k=10, top_p=0.95)
    a = generate(model, [1, 2, 3], 40, seed=7, **kw)
    assert torch.equal(a, generate(model, [1, 2, 3], 40, seed=7, **kw))
    assert torch.equal(a, generate(model, [1, 2, 3], 40, generator=torch.Generator().manual_seed(7), **kw))
    assert torch.equal(a, generate(model, [1, 2, 3], 40, seed=7, use_cache=False, **kw))
    assert not torch.equal(a, generate(model, [1, 2, 3], 40, seed=8, **kw))  # the seed matters
    torch.manual_seed(3)
    b = generate(model, [1, 2, 3], 40, temperature=2.0)
    torch.manual_seed(3)
    assert torch.equal(b, generate(model, [1, 2, 3], 40, temperature=2.0))  # global generator, seeded


def test_temperature_zero_and_top_k_one_are_greedy(model):
    greedy = generate(model, [5, 6], 40)
    assert torch.equal(generate(model, [5, 6], 40, temperature=0.7, top_k=1, seed=0), greedy)


def _allowed(logits: torch.Tensor, temperature: float, top_k, top_p) -> torch.Tensor:
    """Tokens a filter may emit (B, V) bool, computed independently of the library (ties kept, small slack)."""
    scaled = logits.float() / temperature
    allowed = torch.ones_like(scaled, dtype=torch.bool)
    if top_k is not None and top_k < scaled.shape[-1]:
        allowed &= scaled >= torch.topk(scaled, top_k, dim=-1).values[..., -1:]
    if top_p is not None:
        p = torch.softmax(scaled.double().masked_fill(~allowed, float("-inf")), -1)
        above = (p[..., None, :] > p[..., :, None]).double() @ p[..., :, None]  # mass strictly more likely
        allowed &= above[..., 0] < top_p + 1e-5
    return allowed


logit_rows = st.integers(2, 40).flatmap(lambda V: st.lists(
    st.floats(-30, 30, allow_nan=False, width=32), min_size=V, max_size=V))


@settings(max_examples=100, deadline=None)
@given(row=logit_rows, temperature=st.floats(0.05, 5.0), k=st.one_of(st.none(), st.integers(1, 45)),
       top_p=st.one_of(st.none(), st.floats(1e-3, 1.0)), seed=st.integers(0, 2**31 - 1))
def test_top_k_top_p_never_emit_a_token_outside_the_allowed_set(row, temperature, k, top_p, seed):
    logits = torch.tensor(row).expand(64, -1)  # 64 draws from one distribution
    probs = logits_to_probs(logits, temperature, k, top_p)
    allowed = _allowed(logits, temperature, k, top_p)
    torch.testing.assert_close(probs.sum(-1), torch.ones(64), atol=1e-5, rtol=0)
    assert not (probs[~allowed] > 0).any()  # no probability outside the allowed set
    tokens = sample(logits, Sampling(temperature, k, top_p), generator=torch.Generator().manual_seed(seed))
    assert allowed.gather(-1, tokens[:, None]).all()
    assert probs[0, logits[0] == logits[0].max()].sum() > 0  # a most likely token always survives


def test_top_k_keeps_exactly_k_without_ties():
    logits = torch.arange(10.0)[None]
    assert (logits_to_probs(logits, 1.0, top_k=3) > 0).sum() == 3
    probs = logits_to_probs(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])), 1.0, top_p=0.8)
    assert (probs > 0).tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8


# ---- text in, text out: streaming and stop strings ----

def test_stream_and_stop_strings(model, tokenizer):
    full = generate_text(model, tokenizer, "ab", 60)
    assert full == tokenizer.decode(generate(model, tokenizer.encode("ab"), 60)[0])
    stop = full[20:23]
    pieces: list[str] = []
    text = generate_text(model, tokenizer, "ab", 60, stop=[stop, "never-there"], on_text=pieces.append)
    assert text == full[:full.find(stop)]
    assert "".join(pieces) == text  # the stop string itself is never streamed
    streamed: list[str] = []
    assert generate_text(model, tokenizer, "ab", 60, on_text=streamed.append) == "".join(streamed) == full


def test_iter_tokens_streams_one_step_at_a_time(model):
    it = iter_tokens(model, [1, 2], 5)
    first = next(it)
    assert first.shape == (1,)
    assert torch.cat([first, *it]).tolist() == generate(model, [1, 2], 5)[0].tolist()


def test_time_request_times_every_token(model):
    timing = time_request(model, [1, 2, 3], 12, keep_logits=True)
    assert len(timing.arrivals) == 12 and len(timing.gaps_s) == 11
    assert timing.ttft_s > 0 and all(g >= 0 for g in timing.gaps_s)
    assert timing.prompt_tokens == 3 and timing.total_s == timing.arrivals[-1]
    tokens, logits = _steps(model, [1, 2, 3], 12)
    assert torch.equal(torch.stack(timing.tokens, 1), tokens)
    torch.testing.assert_close(torch.stack(timing.logits, 1), logits, atol=0, rtol=0)
    assert time_request(model, [1], 3).logits == []


# ---- bad input ----

def test_unknown_prompt_characters_are_named(model, tokenizer):
    with pytest.raises(ValueError, match="é") as e:
        generate_text(model, tokenizer, "abé€", 5)
    assert "€" in str(e.value)
    assert encode_prompt(tokenizer, "aé", on_unknown="replace") == tokenizer.encode("a ")
    with pytest.raises(ValueError, match="on_unknown"):
        encode_prompt(tokenizer, "a", on_unknown="drop")
    with pytest.raises(TypeError, match="prompt"):
        encode_prompt(tokenizer, 42)


def test_empty_prompt(model, tokenizer):
    assert encode_prompt(tokenizer, "") == tokenizer.encode("\n")  # '' means: text starts on a fresh line
    assert generate_text(model, tokenizer, "", 10) == generate_text(model, tokenizer, "\n", 10)
    for empty in ([], torch.empty(0, dtype=torch.long), torch.empty(2, 0, dtype=torch.long)):
        with pytest.raises(ValueError, match="empty"):
            generate(model, empty, 5)


@pytest.mark.parametrize("kwargs,name", [
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(max_new_tokens=2.5), "max_new_tokens"),
    (dict(max_new_tokens=True), "max_new_tokens"),
    (dict(temperature=-0.1), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"), (dict(temperature="hot"), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_p=-0.2), "top_p"),
    (dict(top_p=float("nan")), "top_p"), (dict(top_k=0), "top_k"), (dict(top_k=2.0), "top_k"),
    (dict(keep=0), "keep"), (dict(keep=W + 1), "keep"),
    (dict(seed=1, generator=torch.Generator()), "seed or generator"),
])
def test_bad_arguments_raise_at_the_call(model, kwargs, name):
    kwargs = dict(max_new_tokens=5, temperature=1.0) | kwargs
    with pytest.raises(ValueError, match=name):
        iter_tokens(model, [1, 2], **kwargs)  # raises before the first token, without iterating
    with pytest.raises(ValueError, match=name):
        generate(model, [1, 2], **kwargs)


def test_bad_prompts(model, tokenizer):
    with pytest.raises(ValueError, match="vocab_size"):
        generate(model, [1, model.config.vocab_size], 3)
    with pytest.raises(ValueError, match="vocab_size"):
        generate(model, [-1], 3)
    with pytest.raises(ValueError, match="integer"):
        generate(model, [1.5], 3)
    with pytest.raises(ValueError, match="shape"):
        generate(model, torch.zeros(1, 1, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="stop"):
        generate_text(model, tokenizer, "a", 3, stop="")
    with pytest.raises(ValueError, match="max_new_tokens"):
        time_request(model, [1], 1)


def test_top_p_one_and_no_filters_accepted():
    assert Sampling(0.0, None, None) == GREEDY and Sampling(1.0, 5, 1.0).top_p == 1.0
    assert generate(GPT(preset("test")).eval(), [1], 0).shape == (1, 0)  # zero new tokens: an empty result


# --- regression tests (issue 15) ----------------------------------------------------------------------------------

def test_top_p_zero_keeps_the_top_token_instead_of_nan():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.5, 0.5, -1.0]])
    probs = logits_to_probs(logits, temperature=1.0, top_p=0.0)
    assert not probs.isnan().any()
    assert torch.equal(probs, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))  # greedy, ties to the lowest id


def test_an_unbounded_max_new_tokens_is_refused_before_any_work(model):
    from lifecycle.generate import MAX_NEW_TOKENS

    with pytest.raises(ValueError, match=r"max_new_tokens must be an integer in \[0, 100,000\]"):
        generate(model, [1, 2], 10**9)
    with pytest.raises(ValueError, match="max_new_tokens"):
        iter_tokens(model, [1, 2], MAX_NEW_TOKENS + 1, use_cache=False)


def test_speculative_decoding_refuses_an_unbounded_max_new_tokens(model):
    from lifecycle.speculative import speculative_generate

    with pytest.raises(ValueError, match="max_new_tokens must be an integer in"):
        speculative_generate(model, model, [1, 2], 10**9)


def test_one_sampling_type_checked_when_made():
    """Sampling is the one sampling-settings type: frozen, checked on construction, greedy at temperature 0; the
    loose keywords build the same value, and giving both is an error."""
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)
    with pytest.raises(TypeError, match="top_k"):  # a bool is not an integer, whatever isinstance says
        Sampling(1.0, top_k=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        GREEDY.temperature = 1.0
    assert GREEDY.greedy and not Sampling(0.5).greedy
    assert as_sampling(temperature=0.8, top_k=5) == Sampling(0.8, 5) and as_sampling() == GREEDY
    with pytest.raises(ValueError, match="not both"):
        as_sampling(Sampling(0.8), temperature=0.8)
    with pytest.raises(TypeError, match="Sampling"):
        as_sampling({"temperature": 0.8})
    # canonical: filters cannot matter when greedy, and top_p=1 is no filter
    assert Sampling(0.0, 5, 0.5).canonical() == GREEDY and Sampling(1, 3, 1.0).canonical() == Sampling(1.0, 3, None)


def test_sampling_keyword_and_loose_keywords_give_the_same_tokens(model):
    a = generate(model, [1, 2], 8, sampling=Sampling(1.0, top_k=5), seed=3)
    b = generate(model, [1, 2], 8, temperature=1.0, top_k=5, seed=3)
    assert torch.equal(a, b)
