"""Tests of lifecycle.speculative: the draft changes the speed, never the output.

Truths only: greedy speculative output equals the target's own greedy output (many prompts, every gamma, across
the sliding window); the accept/resample rule reproduces the target distribution exactly (on known distributions,
and through real models); after every round both KV caches equal a fresh prefill of the kept text; the
expected-speedup formula on hand-computed cases; and the documented error for each bad input.
"""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.device import num_threads
from lifecycle.generate import generate, logits_to_probs
from lifecycle.model import GPT, KVCache, preset
from lifecycle.speculative import (SpecStats, SpeculativeDecoder, best_gamma, expected_speedup,
                                   expected_tokens_per_call, iter_rounds, residual, speculative_generate,
                                   speedup_from_counts, verify_greedy, verify_sampling)

W = preset("test").block_size  # 32: generation crosses the window within a few dozen tokens
V = preset("test").vocab_size


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def _scrambled(config, seed: int) -> GPT:
    """Weights of std 0.3 (and large position rows), so greedy text is varied and changes with position."""
    torch.manual_seed(seed)
    m = GPT(config).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
        m.transformer.wpe.weight.normal_(0.0, 2.0)
    return m


@pytest.fixture(scope="module")
def target() -> GPT:
    return _scrambled(preset("test"), 0)


@pytest.fixture(scope="module")
def draft(target) -> GPT:
    """A noisy copy of the target: it agrees often but not always, so rounds accept some drafts and reject others."""
    torch.manual_seed(1)
    d = copy.deepcopy(target)
    with torch.no_grad():
        for p in d.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return d


@pytest.fixture(scope="module")
def small_draft(target) -> GPT:
    """A one-layer draft of a different shape (as the course's student is)."""
    return _scrambled(preset("test", n_layer=1, n_head=1, n_embd=16), 2)


def _prompt(length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, V, (length,), generator=torch.Generator().manual_seed(seed))


# ---- greedy: token for token the target's own output ----

@pytest.mark.parametrize("gamma", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("prompt_len,new", [(1, 45), (5, 70), (20, 40), (31, 3), (32, 33), (40, 50), (70, 20)])
def test_greedy_equals_target_greedy(target, draft, gamma, prompt_len, new):
    prompt = _prompt(prompt_len, prompt_len * 100 + new)
    expected = generate(target, prompt, new, temperature=0)
    out, stats = speculative_generate(target, draft, prompt, new, gamma=gamma)
    assert torch.equal(out, expected)
    assert stats.new_tokens == new and 0 < stats.rounds <= new
    assert stats.new_tokens == stats.accepted + stats.rounds  # each round: its accepted drafts + one


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt_len=st.integers(1, 3 * W), new=st.integers(0, 3 * W), gamma=st.integers(1, 9),
       keep=st.one_of(st.none(), st.integers(1, W)), seed=st.integers(0, 10_000), small=st.booleans(),
       confidence=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_greedy_equals_target_greedy_property(target, draft, small_draft, prompt_len, new, gamma, keep, seed, small,
                                              confidence):
    prompt = _prompt(prompt_len, seed)
    expected = generate(target, prompt, new, temperature=0, keep=keep)
    out, _ = speculative_generate(target, small_draft if small else draft, prompt, new, gamma=gamma, keep=keep,
                                  confidence=confidence)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("confidence", [0.25, 0.4])
def test_an_unsure_draft_stops_early_and_changes_nothing_but_the_speed(target, draft, confidence):
    prompt, new = _prompt(5, 3), W - 5  # inside one window, so the draft's view is the plain text
    fixed, s_fixed = speculative_generate(target, draft, prompt, new, gamma=6)
    early, s_early = speculative_generate(target, draft, prompt, new, gamma=6, confidence=confidence)
    assert torch.equal(early, fixed) and torch.equal(early, generate(target, prompt, new, temperature=0))
    assert s_fixed.drafts_per_round == pytest.approx(s_fixed.proposed / s_fixed.rounds)
    assert s_early.drafts_per_round < s_fixed.drafts_per_round  # some rounds ended before gamma drafts
    text = torch.cat([prompt, fixed[0]])
    stopped = 0
    with torch.inference_mode():  # the rule: a round ends early exactly after a draft given < confidence
        for r in iter_rounds(target, draft, prompt, new, gamma=6, confidence=confidence):
            if not r.proposed:  # the last token of the budget: the target alone
                continue
            seen = torch.cat([text[:r.position], torch.tensor(r.proposed[:-1], dtype=torch.long)]).view(1, -1)
            top = torch.softmax(draft(seen)[0][0, -len(r.proposed):], -1).max(-1).values.tolist()
            assert all(p >= confidence for p in top[:-1])
            if len(r.proposed) < min(6, len(text) - r.position - 1, W - r.position):  # not cut by the budget
                assert top[-1] < confidence
                stopped += 1
    assert stopped > 0


def test_a_perfect_draft_is_always_accepted(target):
    out, stats = speculative_generate(target, target, _prompt(3, 0), 25, gamma=4)
    assert torch.equal(out, generate(target, _prompt(3, 0), 25, temperature=0))
    assert stats.rejected == 0 and stats.accepted == stats.proposed and stats.acceptance_rate == 1.0
    assert stats.tokens_per_target_call > 4  # five tokens per call, except near the window slide and the end


def test_rounds_report_what_happened(target, draft):
    prompt = _prompt(4, 3)
    text = prompt.tolist()
    for r in iter_rounds(target, draft, prompt, 40, gamma=3):
        assert 0 <= r.accepted <= len(r.proposed) <= 3
        assert r.new_tokens == r.proposed[:r.accepted] + [r.token]
        assert r.bonus == (0 < r.accepted == len(r.proposed))
        assert r.position == len(text)
        text += r.new_tokens
    assert text[4:] == generate(target, prompt, 40, temperature=0)[0].tolist()


# ---- the KV caches after a round equal a fresh prefill of the kept text ----

def _fresh(model: GPT, tokens: torch.Tensor) -> KVCache:
    cache = KVCache.for_model(model)
    if len(tokens):
        with torch.inference_mode():
            model(tokens.view(1, -1), cache=cache)
    return cache


def _assert_cache_equals(cache: KVCache, fresh: KVCache):
    assert cache.length == fresh.length
    L = cache.length
    torch.testing.assert_close(cache.k[:, :, :, :L], fresh.k[:, :, :, :L], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache.v[:, :, :, :L], fresh.v[:, :, :, :L], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("confidence", [0.0, 0.5])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("drafter", ["draft", "small_draft"])
def test_cache_rollback_equals_fresh_prefill(target, drafter, temperature, confidence, request):
    draft = request.getfixturevalue(drafter)
    dec = SpeculativeDecoder(target, draft, _prompt(6, 7), 80, gamma=4, temperature=temperature, seed=0,
                             confidence=confidence)
    saw_rejection = saw_slide = False
    while not dec.done:
        window = dec.s
        r = dec.step()
        saw_rejection |= r.accepted < len(r.proposed)
        saw_slide |= dec.s != window
        text = dec.tokens
        _assert_cache_equals(dec.target_cache, _fresh(target, text[dec.s:dec.n - 1]))
        _assert_cache_equals(dec.draft_cache, _fresh(draft, text[dec.s:dec.draft_len]))
        assert dec.s <= dec.draft_len <= dec.n
    assert saw_rejection and saw_slide  # both rollback paths were exercised


# ---- sampling: every emitted token is a draw from the target's distribution ----

def chisquare_pvalue(observed: torch.Tensor, expected: torch.Tensor) -> float:
    """Pearson's chi-square goodness-of-fit p-value (what scipy.stats.chisquare returns, without scipy): the
    statistic sum((o - e)^2 / e) against a chi-square law with k - 1 degrees of freedom, whose survival function
    is the regularized upper incomplete gamma Q(df / 2, x / 2)."""
    o, e = observed.double(), expected.double()
    stat = ((o - e) ** 2 / e).sum()
    df = torch.tensor(len(o) - 1, dtype=torch.float64)
    return torch.special.gammaincc(df / 2, stat / 2).item()


def test_chisquare_pvalue_matches_the_tables():
    # 5% critical values of the chi-square law (any statistics table): 3.841 for 1 degree of freedom, 9.488 for 4
    d = (3.841 * 50) ** 0.5  # two cells expecting 100 each, observed 100 ± d: statistic 2 d² / 100 = 3.841
    assert chisquare_pvalue(torch.tensor([100 + d, 100 - d]), torch.tensor([100.0, 100.0])) == pytest.approx(0.05,
                                                                                                            abs=1e-4)
    d = (9.488 * 50) ** 0.5  # five cells expecting 100: two off by ±d give 2 d² / 100 = 9.488
    assert chisquare_pvalue(torch.tensor([100 + d, 100 - d, 100, 100, 100]),
                            torch.full((5,), 100.0)) == pytest.approx(0.05, abs=1e-4)
    assert chisquare_pvalue(torch.tensor([10.0, 20.0, 30.0]), torch.tensor([10.0, 20.0, 30.0])) == 1.0


def test_verify_sampling_follows_the_target_distribution():
    """Context-free p and q: each emitted token (accepted drafts, corrections, bonuses) must be distributed as p."""
    p = torch.tensor([0.50, 0.25, 0.15, 0.07, 0.03])
    q = torch.tensor([0.10, 0.10, 0.30, 0.30, 0.20])  # a poor draft: most of its mass where p has little
    gamma, rounds = 3, 6000
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    accepted = examined = 0
    for _ in range(rounds):
        drafts = torch.multinomial(q, gamma, replacement=True, generator=gen)
        j, token = verify_sampling(p.expand(gamma + 1, -1), q.expand(gamma, -1), drafts, gen)
        for t in drafts[:j].tolist() + [token]:
            counts[t] += 1
        accepted, examined = accepted + j, examined + min(j + 1, gamma)
    n = counts.sum()
    assert chisquare_pvalue(counts, p * n) > 1e-3
    assert 0.5 * (counts / n - p).abs().sum() < 0.02
    # acceptance per examined draft equals sum_x min(p, q) (Leviathan et al., the definition of beta)
    assert accepted / examined == pytest.approx(torch.minimum(p, q).sum().item(), abs=0.02)


def test_verify_sampling_with_a_perfect_draft_accepts_everything():
    p = torch.softmax(torch.randn(4, 6, generator=torch.Generator().manual_seed(0)), -1)
    drafts = torch.tensor([1, 2, 3])
    for seed in range(20):
        j, _ = verify_sampling(p, p[:3], drafts, torch.Generator().manual_seed(seed))
        assert j == 3


def test_verify_greedy_is_verify_sampling_with_point_masses():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        logits = torch.randn(5, 7, generator=gen)
        drafts = torch.where(torch.rand(4, generator=gen) < 0.7, logits[:4].argmax(-1), torch.randint(0, 7, (4,), generator=gen))
        one_hot = torch.nn.functional.one_hot(logits.argmax(-1), 7).float()
        q = torch.nn.functional.one_hot(drafts, 7).float()
        assert verify_greedy(logits, drafts) == verify_sampling(one_hot, q, drafts, gen)


def test_residual_is_a_distribution_where_p_exceeds_q():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.5, 0.3])
    torch.testing.assert_close(residual(p, q), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(residual(p, p), p)  # no mass left over: fall back to p


@pytest.mark.slow
@pytest.mark.parametrize("confidence", [0.0, 0.4])
def test_sampled_text_follows_the_target_through_real_models(target, small_draft, confidence):
    """First and second new tokens of speculative sampling, against the target's exact marginals."""
    temperature, draws = 1.5, 2500
    prompt = _prompt(5, 11)
    with torch.inference_mode():
        p1 = logits_to_probs(target(prompt.view(1, -1))[0][0, -1], temperature)  # (V,)
        nxt = torch.cat([prompt.expand(V, -1), torch.arange(V).view(V, 1)], 1)  # every possible first token
        p2 = p1 @ logits_to_probs(target(nxt)[0][:, -1], temperature)  # marginal of the second token
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(2, V)
    for _ in range(draws):
        out, _ = speculative_generate(target, small_draft, prompt, 2, gamma=3, temperature=temperature, generator=gen,
                                      confidence=confidence)
        counts[0, out[0, 0]] += 1
        counts[1, out[0, 1]] += 1
    for row, p in zip(counts, (p1, p2)):
        assert 0.5 * (row / draws - p).abs().sum() < 0.07  # sampling noise at 2500 draws is about 0.04


def test_sampling_is_reproducible_with_a_seed(target, draft):
    a, _ = speculative_generate(target, draft, _prompt(4, 0), 30, gamma=3, temperature=1.0, seed=5)
    b, _ = speculative_generate(target, draft, _prompt(4, 0), 30, gamma=3, temperature=1.0, seed=5)
    assert torch.equal(a, b) and a.shape == (1, 30)


# ---- the expected-speedup arithmetic ----

def test_expected_speedup_hand_cases():
    assert expected_tokens_per_call(0.0, 5) == 1.0  # every draft rejected: one token per call
    assert expected_tokens_per_call(1.0, 5) == 6.0  # all accepted plus the bonus
    assert expected_tokens_per_call(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    assert expected_speedup(0.5, 2, 0.0) == pytest.approx(1.75)
    assert expected_speedup(0.8, 4, 0.25) == pytest.approx((1 - 0.8 ** 5) / (0.2 * 2.0))
    assert expected_speedup(0.0, 3, 0.5) < 1  # a useless draft only costs time
    assert best_gamma(0.9, 0.05) > best_gamma(0.6, 0.05) > 0  # better drafts deserve longer rounds
    assert expected_speedup(0.8, 4, 0.25, verify_cost=1.0) == expected_speedup(0.8, 4, 0.25)  # the paper's model
    assert expected_speedup(0.8, 4, 0.25, verify_cost=1.5) == pytest.approx((1 - 0.8 ** 5) / (0.2 * 2.5))
    assert speedup_from_counts(3.0, 4.0, 0.25) == pytest.approx(1.5)  # 3 tokens for 4 draft steps and one pass
    assert speedup_from_counts(3.0, 2.0, 0.25, verify_cost=1.5) == pytest.approx(1.5)
    assert speedup_from_counts(expected_tokens_per_call(0.8, 4), 4, 0.25) == pytest.approx(expected_speedup(0.8, 4, 0.25))


def test_stats_properties():
    s = SpecStats(gamma=4, rounds=10, proposed=40, accepted=27, rejected=8, new_tokens=37)
    assert s.acceptance_rate == pytest.approx(27 / 35)
    assert s.tokens_per_target_call == pytest.approx(3.7)
    assert s.summary()["acceptance_rate"] == pytest.approx(27 / 35)
    assert SpecStats(gamma=2).acceptance_rate == 0.0


# ---- bad input is refused with a message that names the parameter ----

@pytest.mark.parametrize("fn,args,match", [
    (expected_tokens_per_call, (1.2, 3), "alpha"),
    (expected_tokens_per_call, (0.5, -1), "gamma"),
    (expected_speedup, (0.5, 3, -0.1), "c "),
    (expected_speedup, (0.5, 3, 0.1, 0.0), "verify_cost"),
    (speedup_from_counts, (-1.0, 3, 0.1), "tokens_per_call"),
    (speedup_from_counts, (2.0, float("nan"), 0.1), "drafts_per_round"),
    (speedup_from_counts, (2.0, 3, 0.1, 0.0), "verify_cost"),
])
def test_formula_validates(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_decoder_validates(target, draft):
    with pytest.raises(ValueError, match="gamma"):
        SpeculativeDecoder(target, draft, [1, 2], 5, gamma=0)
    with pytest.raises(ValueError, match="one sequence"):
        SpeculativeDecoder(target, draft, [[1, 2], [3, 4]], 5)
    with pytest.raises(ValueError, match="temperature"):
        SpeculativeDecoder(target, draft, [1, 2], 5, temperature=-1)
    with pytest.raises(ValueError, match="context window"):
        SpeculativeDecoder(target, GPT(preset("test", block_size=16)), [1, 2], 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SpeculativeDecoder(target, draft, [1, 2], -1)
    for bad in (-0.1, 1.0, float("nan"), "0.4", None):
        with pytest.raises(ValueError, match="confidence"):
            SpeculativeDecoder(target, draft, [1, 2], 5, confidence=bad)
    dec = SpeculativeDecoder(target, draft, [1, 2], 0)
    assert dec.done
    with pytest.raises(RuntimeError, match="max_new_tokens"):
        dec.step()


# ---- acceptance beyond greedy continuations: sampling, and held-out text (lesson 08) ----

def test_acceptance_probability_is_one_minus_total_variation():
    from lifecycle.speculative import acceptance_probability

    p = torch.tensor([[0.50, 0.25, 0.15, 0.07, 0.03], [1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0]])
    q = torch.tensor([[0.10, 0.10, 0.30, 0.30, 0.20], [1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    beta = acceptance_probability(p, q)
    assert beta.shape == (3,)
    assert beta[0].item() == pytest.approx(1 - 0.5 * (p[0] - q[0]).abs().sum().item())
    assert beta[1:].tolist() == [1.0, 0.0]  # point masses: greedy agreement
    with pytest.raises(ValueError, match="same shape"):
        acceptance_probability(p, q[:, :4])


def test_heldout_acceptance_is_one_for_the_target_itself_and_matches_the_definition(target, draft):
    from lifecycle.measure.speculation import heldout_acceptance
    from lifecycle.speculative import acceptance_probability

    data = torch.randint(0, V, (500,), generator=torch.Generator().manual_seed(3))
    for temperature in (0.0, 0.8):
        assert heldout_acceptance(target, target, data, temperature, windows=3, length=W) == pytest.approx(1.0)
    got = heldout_acceptance(target, draft, data, 0.8, windows=3, length=W, seed=5)
    starts = torch.randint(len(data) - W, (3,), generator=torch.Generator().manual_seed(5))
    x = data[starts[:, None] + torch.arange(W)]
    with torch.no_grad():
        p, q = (logits_to_probs(m(x)[0], 0.8) for m in (target, draft))
    assert got == pytest.approx(acceptance_probability(p, q).mean().item(), rel=1e-5)
    assert 0 < heldout_acceptance(target, draft, data, 0.0, windows=3, length=W) < 1


def test_sampled_speed_counts_and_a_perfect_draft(target, draft):
    from lifecycle.measure.speculation import sampled_speed

    prompts = [_prompt(5, 1), _prompt(7, 2)]
    perfect = sampled_speed(target, target, prompts, 12, gamma=3, c=1.0, repeats=1)
    assert perfect["alpha"] == 1.0 and perfect["temperature"] == 0.8  # p == q: every sampled draft is kept
    assert perfect["predicted_speedup"] == pytest.approx(expected_speedup(1.0, 3, 1.0))
    noisy = sampled_speed(target, draft, prompts, 12, gamma=3, c=0.5, repeats=1)
    assert 0 < noisy["alpha"] < 1 and 1 <= noisy["tokens_per_call"] <= 4
    assert noisy["measured_speedup"] > 0 and noisy["ms_per_token"] > 0
