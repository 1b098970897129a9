"""The benchmarks' peers run the same work as ours: same tokens, same training step, a gamma chosen by the formula.

Truths only; the benchmarks themselves report the speeds.
"""
from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("transformers")

from lifecycle.benches import decode as decode_bench  # noqa: E402
from lifecycle.benches import train as train_bench  # noqa: E402
from lifecycle.generate import generate  # noqa: E402
from lifecycle.measure import speculation  # noqa: E402
from lifecycle.model import GPT, preset, to_hf_gpt2  # noqa: E402
from lifecycle.speculative import best_gamma  # noqa: E402


def hf_of(model: GPT):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = to_hf_gpt2(model)
    hf.generation_config.eos_token_id = None
    return hf


def test_every_hf_decode_variant_gives_our_greedy_tokens(tiny_model):
    hf = hf_of(tiny_model)
    hf.set_attn_implementation(decode_bench.HF_ATTENTION)
    prompt = decode_bench.prompt_of(tiny_model, 1, torch.device("cpu"))
    n = 12
    ours = generate(tiny_model, prompt, n)
    for fn in (decode_bench.hf_generate_fn(hf, prompt, n), decode_bench.hf_generate_fn(hf, prompt, n, "static"),
               decode_bench.hf_loop_fn(hf, prompt, n)):
        assert torch.equal(fn(), ours)


def test_hf_loop_runs_one_forward_per_new_token(tiny_model):
    hf = hf_of(tiny_model)
    calls = []
    hf.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape[1]),
                             with_kwargs=True)
    prompt = decode_bench.prompt_of(tiny_model, 5, torch.device("cpu"))
    out = decode_bench.hf_loop_fn(hf, prompt, 7)()
    assert out.shape == (1, 7)
    assert calls == [5] + [1] * 6  # the prompt once, then each fed-back token alone (its cache holds the rest)


def test_one_training_step_keeps_ours_and_hf_equal(tiny_model):
    torch.manual_seed(0)
    ours = GPT(preset("test")).train()
    hf = hf_of(ours)
    hf.config.use_cache = False
    hf.train()
    x = torch.randint(0, ours.config.vocab_size, (2, 16))
    y = torch.randint(0, ours.config.vocab_size, (2, 16))
    train_bench.ours_steps(ours, [(x, y)])()
    train_bench.hf_steps(hf, [(x, y)])()
    # the same loss and the same AdamW step: the two copies still hold the same weights (up to float rounding)
    w_ours = ours.transformer.h[0].mlp.c_fc.weight
    w_hf = dict(hf.named_parameters())["transformer.h.0.mlp.c_fc.weight"].t()  # Conv1D stores the transpose
    assert torch.allclose(w_ours, w_hf, atol=1e-5)


def test_gamma_is_fixed_by_the_formula_at_the_calibration_alpha(tiny_model):
    torch.manual_seed(1)
    draft = GPT(preset("test")).eval()
    prompts = [torch.randint(0, tiny_model.config.vocab_size, (8,))]
    choice = speculation.choose_gamma(tiny_model, draft, prompts, 16, c=0.3, max_gamma=6)
    alpha = speculation.acceptance(tiny_model, draft, prompts, 16, speculation.CALIBRATION_GAMMA)["alpha"]
    assert choice["alpha"] == alpha
    assert choice["gamma"] == (best_gamma(alpha, 0.3, 6) if alpha < 1 else 6)


def test_a_perfect_draft_gets_the_largest_gamma(tiny_model):
    prompts = [torch.randint(0, tiny_model.config.vocab_size, (8,))]
    choice = speculation.choose_gamma(tiny_model, tiny_model, prompts, 16, c=1.0, max_gamma=5)
    assert choice["alpha"] == 1.0 and choice["gamma"] == 5


def test_step_cost_ratio_is_a_positive_ratio(tiny_model):
    c = speculation.step_cost_ratio(tiny_model, tiny_model, context=8, passes=2, repeats=3)
    assert c > 0


class FakeRun:
    """What `batching.serve` returns, reduced to what `fake_summary` reads: which policy ran, on how many requests."""

    def __init__(self, policy: str, n: int):
        self.policy, self.n = policy, n


def fake_summary(run: FakeRun) -> dict:
    """`measure.requests.summarize` of a FakeRun: a throughput that says which policy ran."""
    return {"throughput_tok_s": 200.0 if run.policy == "continuous" else 100.0, "n": run.n}


def test_policies_warm_up_then_alternate(monkeypatch, tiny_model):
    from lifecycle.benches import batching as batching_bench

    calls = []

    def fake_serve(model, requests, config):
        calls.append((config.policy, len(requests)))
        return FakeRun(config.policy, len(requests))

    monkeypatch.setattr(batching_bench, "serve", fake_serve)
    monkeypatch.setattr(batching_bench, "summarize", fake_summary)
    out = batching_bench.policy_comparison(tiny_model, list(range(10)), slots=4, repeats=3, warmup=2)
    assert calls == [("static", 2), ("continuous", 2),  # warm-up on the first requests, untimed
                     ("static", 10), ("continuous", 10), ("continuous", 10), ("static", 10), ("static", 10),
                     ("continuous", 10)]
    assert out["continuous"]["throughput_tok_s"] == 200.0 and out["static"]["n"] == 10


def test_saturating_rate_offers_the_burst_throughput(monkeypatch, tiny_model, small_corpus):
    from lifecycle import zoo
    from lifecycle.benches import batching as batching_bench
    from lifecycle.measure.requests import LengthDist, RequestStreamConfig

    seen = []
    monkeypatch.setattr(zoo, "corpus", lambda path=None: small_corpus)
    monkeypatch.setattr(batching_bench, "serve", lambda model, requests, config: seen.append(requests) or FakeRun(
        config.policy, len(requests)))
    monkeypatch.setattr(batching_bench, "summarize", fake_summary)
    stream = RequestStreamConfig(8, 5.0, LengthDist(4, 8), LengthDist(2, 10), seed=0)
    tok_s, rate = batching_bench.saturating_rate(tiny_model, stream, slots=4)
    (requests,) = seen
    assert all(r.arrival == 0 for r in requests)  # a burst
    mean_out = sum(r.max_new_tokens for r in requests) / len(requests)
    assert tok_s == 200.0 and rate == pytest.approx(200.0 / mean_out)


def test_torchao_int4_reference_agrees_with_ours_within_a_step(tiny_model):
    pytest.importorskip("torchao")
    from lifecycle.measure import precisions
    from lifecycle.quantize import QuantConfig, quantize_model

    group = 16  # the test model is 32 wide: two groups per row
    ref, tool = precisions.reference_int4(tiny_model, group_size=group)
    ours = quantize_model(tiny_model, QuantConfig("int4", group_size=group, embeddings=False))
    assert "IntxWeightOnlyConfig" in tool
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 16))
    with torch.no_grad():
        fp32, a, b = tiny_model(x)[0], ours(x)[0], ref(x)[0]
    # both are int4 with one scale per 16 input columns: each is close to fp32, and so to each other
    spread = fp32.abs().max()
    assert (a - fp32).abs().max() < 0.08 * spread and (b - fp32).abs().max() < 0.08 * spread
    assert (a - b).abs().max() < 0.08 * spread
    assert not torch.equal(b, fp32)  # the reference really quantized the blocks


def test_stacks_alternate_and_keep_the_run_of_median_makespan(monkeypatch):
    """measure_stacks: order reversed every round, fresh engine each run, the run of median makespan kept."""
    from lifecycle.engine import StackConfig
    from lifecycle.measure import serving

    class FakeEngine:
        def __init__(self, model, config, draft=None, prefixes=()):
            self.model, self.config = model, config

    class FakeResult:
        def __init__(self, name: str, makespan: float):
            self.name, self.makespan = name, makespan

        def summary(self) -> dict:
            return {"makespan_s": self.makespan}

    configs = {"a": StackConfig(), "b": StackConfig(response_cache=True)}
    order, makespans = [], {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 4.0, 6.0])}

    def fake_simulate(engine, tok, load):
        name = next(k for k, c in configs.items() if c is engine.config)
        order.append(name)
        return FakeResult(name, next(makespans[name]))

    class Tok:
        def encode(self, text):
            return [0]

    monkeypatch.setattr(serving, "Engine", FakeEngine)
    monkeypatch.setattr(serving, "simulate", fake_simulate)
    out = serving.measure_stacks(None, None, Tok(), load=[], configs=configs, repeats=3)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert out["a"].makespan == 2.0 and out["b"].makespan == 5.0  # the median of three runs each
