"""Sampled answers of the composed engine come from the teacher's own distribution, switch by switch.

Greedy exactness (tests/test_serve.py) says nothing about sampling: a batched row that read a neighbour's keys, a
prefix copied from the wrong place, or a speculative round that kept a draft without the rejection step would all
still give plausible-looking text. Here each server answers many seeded requests for two tokens at temperature 0.8;
the first token's counts and the (first, second) pairs' counts are compared with the exact probabilities computed
from the teacher alone, by Pearson's chi-square test. Seeds are fixed, so a run is deterministic; a negative control
(the same draws against the distribution at another temperature) shows that the test can fail.
"""
import pytest
import torch

from lifecycle.engine import StackConfig, load_engine
from test_speculative import chisquare_pvalue

T, N, PROMPT = 0.8, 3000, "be kind. what?"


def sharpen(model) -> None:
    """A random-weight model predicts almost uniformly, where any temperature looks alike. Scaling the final
    LayerNorm's gain by 6 multiplies the logits by 6 and nothing else: the keys and values every layer caches
    (the prefix cache holds them already) are computed before it."""
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(6.0)
        model.transformer.ln_f.bias.mul_(6.0)


def draws(config: StackConfig) -> tuple[list[tuple[int, int]], object, object]:
    """N two-token answers at temperature T, seeds 0..N-1, all submitted at once (so batching really batches)."""
    engine, tok = load_engine("test", config, system_prompt="be kind. ")
    sharpen(engine.model)
    jobs = [engine.submit(tok.encode(PROMPT), 2, temperature=T, seed=i) for i in range(N)]
    while not all(j.done for j in jobs):
        engine.step()
    return [tuple(j.tokens) for j in jobs], engine, tok


@torch.inference_mode()
def exact(engine, tok, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P(first) (V,) and P(first, second) (V, V) of the served model alone, at `temperature`."""
    model = engine.model
    ids = torch.tensor([tok.encode(PROMPT)])
    p1 = torch.softmax(model(ids)[0][0, -1] / temperature, -1)
    V = p1.numel()
    both = torch.cat([ids.expand(V, -1), torch.arange(V)[:, None]], 1)  # every first token appended
    p2 = torch.softmax(model(both)[0][:, -1] / temperature, -1)  # (V, V): P(second | first)
    return p1.double(), (p1[:, None] * p2).double()


def pooled_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square p-value after pooling every cell expected below 5 draws into one (the textbook condition)."""
    expected = probs.flatten() * counts.sum()
    counts = counts.flatten().double()
    small = expected < 5
    o, e = counts[~small], expected[~small]
    if small.any():
        o, e = torch.cat([o, counts[small].sum()[None]]), torch.cat([e, expected[small].sum()[None]])
    return chisquare_pvalue(o, e)


CONFIGS = [StackConfig(),
           StackConfig(batching=True, max_batch=8),
           StackConfig(batching=True, max_batch=8, prefix_cache=True, response_cache=True),
           StackConfig(speculative=True, gamma=3)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.label)
def test_sampled_answers_follow_the_teachers_distribution(config):
    answers, engine, tok = draws(config)
    assert len(set(answers)) > 20, "sampling at temperature 0.8 should give many different answers"
    assert engine.stats is not None
    p1, p12 = exact(engine, tok, T)
    V = p1.numel()
    first = torch.bincount(torch.tensor([a[0] for a in answers]), minlength=V)
    pairs = torch.bincount(torch.tensor([a[0] * V + a[1] for a in answers]), minlength=V * V)
    assert pooled_pvalue(first, p1) > 1e-3
    assert pooled_pvalue(pairs, p12) > 1e-3
    # negative control: the same draws are NOT from the distribution at temperature 0.9 (the test can tell 0.8
    # from 0.9 with this many draws: p was about 1e-9 when written)
    q1, q12 = exact(engine, tok, 0.9)
    assert pooled_pvalue(pairs, q12) < 1e-3


def test_the_response_cache_does_not_replay_unseeded_samples():
    engine, tok = load_engine("test", StackConfig(response_cache=True, batching=True), system_prompt="be kind. ")
    jobs = [engine.submit(tok.encode(PROMPT), 6, temperature=T) for _ in range(40)]
    while not all(j.done for j in jobs):
        engine.step()
    assert not any(j.cached for j in jobs)
    assert len({tuple(j.tokens) for j in jobs}) > 20
