"""The static-shape decode step (GPT.forward with input_pos), its compiled form, and KVCache views."""
from pathlib import Path

import pytest
import torch

import lifecycle
from lifecycle import compiled
from lifecycle.compiled import (compare_compiled, compiler_problem, decode_one_token_static, describe,
                                generate_static)
from lifecycle.generate import decode_one_token, generate, prefill
from lifecycle.model import GPT, KVCache, preset


class GraphCounter:
    """A torch.compile backend that runs each traced graph as is and counts how many were traced."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def test_static_step_gives_the_logits_of_the_eager_step(tiny_model):
    x = torch.randint(0, 32, (2, 5))
    dynamic, static = KVCache.for_model(tiny_model, 2), KVCache.for_model(tiny_model, 2)
    with torch.inference_mode():
        prefill(tiny_model, x, dynamic), prefill(tiny_model, x, static)
        pos = torch.tensor([5])
        for t in range(5):
            token = torch.randint(0, 32, (2,))
            want = decode_one_token(tiny_model, token, dynamic)
            got = decode_one_token_static(tiny_model, token, pos, static)
            pos += 1
            static.length += 1
            assert torch.allclose(got, want, atol=1e-5)
    assert dynamic.length == static.length == 10
    # equal up to float rounding: with several threads a matmul may sum in another order
    assert torch.allclose(static.k[:, :, :, :10], dynamic.k[:, :, :, :10], atol=1e-5)


def test_generate_static_eager_equals_generate(tiny_model):
    prompt = torch.tensor([3, 1, 4, 1, 5])
    assert torch.equal(generate_static(tiny_model, prompt, 20), generate(tiny_model, prompt, 20))


def test_generate_static_refuses_text_past_the_window(tiny_model):
    W = tiny_model.config.block_size
    with pytest.raises(ValueError, match="window"):
        generate_static(tiny_model, torch.zeros(W, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_static(tiny_model, torch.zeros(3, dtype=torch.long), 0)


def test_input_pos_refuses_padded_caches(tiny_model):
    cache = KVCache.for_model(tiny_model)
    cache.key_mask = torch.ones(1, cache.max_len, dtype=torch.bool)
    with pytest.raises(ValueError, match="input_pos"):
        tiny_model(torch.zeros(1, 1, dtype=torch.long), cache=cache, input_pos=torch.tensor([0]))


def test_compiled_static_step_is_traced_once(tiny_model):
    counter = GraphCounter()
    step = torch.compile(decode_one_token_static, backend=counter, fullgraph=True, dynamic=False)
    for prompt in ([1, 2, 3], [7, 7, 7, 7, 7, 7]):  # two requests: another prompt length, a fresh cache
        cache = KVCache.for_model(tiny_model)
        with torch.inference_mode():
            logits = prefill(tiny_model, torch.tensor([prompt]), cache)
            pos = torch.tensor([len(prompt)])
            for _ in range(10):  # every call checks all guards here (no skipping, unlike generate_static)
                logits = step(tiny_model, logits.argmax(dim=-1), pos, cache)
                pos += 1
                cache.length += 1
    assert counter.graphs == 1  # 20 steps at 19 different positions, one graph


def test_generate_static_with_a_compiled_step_follows_a_change_of_model(tiny_model):
    """generate_static skips guard checks after a request's first step: that first step must still see a new model."""
    counter = GraphCounter()
    step = torch.compile(decode_one_token_static, backend=counter, fullgraph=True, dynamic=False)
    torch.manual_seed(1)
    wider = GPT(preset("test", n_embd=48, n_head=3)).eval()
    prompt = torch.tensor([1, 2, 3])
    for model in (tiny_model, wider, tiny_model):
        assert torch.equal(generate_static(model, prompt, 12, step), generate(model, prompt, 12))
    assert counter.graphs == 2


def test_the_eager_step_would_be_traced_again(tiny_model):
    """Why the static path exists: the eager step's shapes follow cache.length, so compiling it re-traces."""
    counter = GraphCounter()
    step = torch.compile(decode_one_token, backend=counter, fullgraph=True)
    cache = KVCache.for_model(tiny_model)
    with torch.inference_mode():
        prefill(tiny_model, torch.tensor([[1, 2, 3]]), cache)
        for t in range(4):
            step(tiny_model, torch.tensor([t]), cache)
    assert counter.graphs > 1


def test_compare_compiled_gives_the_eager_tokens(tiny_model):
    result = compare_compiled(tiny_model, new_tokens=8, repeats=1)
    if not result["available"]:
        pytest.skip(f"torch.compile unavailable here: {result['why_not']}")
    assert result["same_tokens"]
    assert result["speedup"] > 0 and result["compile_s"] >= 0
    assert result["speedup"] == pytest.approx(result["compiled_tokens_per_s"] / result["eager_tokens_per_s"])


def test_without_a_compiler_the_comparison_says_why_and_stays_eager(tiny_model, monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    assert "C++ compiler" in compiler_problem("cpu")
    result = compare_compiled(tiny_model, new_tokens=4, repeats=1)
    assert not result["available"] and "compiled_tokens_per_s" not in result and result["eager_tokens_per_s"] > 0
    assert "not available" in describe(result)


@pytest.mark.parametrize("speedup, word", [(2.0, "faster"), (0.5, "slower"), (1.0, "about as fast")])
def test_describe_follows_the_measurement(speedup, word):
    result = {"available": True, "eager_tokens_per_s": 500.0, "compiled_tokens_per_s": 500.0 * speedup,
              "speedup": speedup, "compile_s": 20.0}
    assert word in describe(result)


def test_kvcache_wraps_existing_tensors_as_a_view(tiny_model):
    full = KVCache.for_model(tiny_model, batch_size=3)
    rows = KVCache(full.k[:, :2], full.v[:, :2])  # rows 0..1, sharing storage
    tiny_model(torch.randint(0, 32, (2, 4)), cache=rows)
    assert rows.length == 4 and full.length == 0
    assert torch.equal(full.k[:, :2, :, :4], rows.k[:, :, :, :4]) and full.k[:, :2, :, :4].abs().sum() > 0
    assert full.k[:, 2].abs().sum() == 0


def test_no_module_builds_objects_behind_their_constructor():
    lib = Path(lifecycle.__file__).parent
    offenders = [str(p.relative_to(lib)) for p in lib.rglob("*.py") if "object.__new__" in p.read_text()]
    assert offenders == []
