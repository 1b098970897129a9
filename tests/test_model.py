import pytest
import torch

from lifecycle.model import GPT, GPTConfig, KVCache, PRESETS, preset, to_hf_gpt2


def test_future_tokens_never_change_past_logits(tiny_model):
    x = torch.randint(0, 32, (2, 20))
    base, _ = tiny_model(x)
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 7) % 32  # change every token from position 12 on
    changed, _ = tiny_model(y)
    assert torch.allclose(base[:, :12], changed[:, :12], atol=1e-6)
    assert not torch.allclose(base[:, 12:], changed[:, 12:], atol=1e-3)


def test_cached_forward_in_pieces_equals_one_full_forward(tiny_model):
    x = torch.randint(0, 32, (3, 24))
    full, _ = tiny_model(x)
    cache = KVCache.for_model(tiny_model, batch_size=3)
    pieces = [tiny_model(x[:, :5], cache=cache)[0], tiny_model(x[:, 5:17], cache=cache)[0]]
    pieces += [tiny_model(x[:, t:t + 1], cache=cache)[0] for t in range(17, 24)]
    assert cache.length == 24
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_left_padded_rows_match_unpadded(tiny_model):
    a = torch.randint(0, 32, (1, 10))
    b = torch.randint(0, 32, (1, 6))
    pad = 4
    batch = torch.cat([a, torch.cat([torch.zeros(1, pad, dtype=torch.long), b], dim=1)])
    key_mask = torch.ones(2, 10, dtype=torch.bool)
    key_mask[1, :pad] = False
    positions = torch.stack([torch.arange(10), (torch.arange(10) - pad).clamp(min=0)])
    cache = KVCache.for_model(tiny_model, batch_size=2)
    logits, _ = tiny_model(batch, cache=cache, positions=positions, key_mask=key_mask)
    assert torch.allclose(logits[0], tiny_model(a)[0][0], atol=1e-5)
    assert torch.allclose(logits[1, pad:], tiny_model(b)[0][0], atol=1e-5)
    # one more decode step for both rows, positions continuing per row
    nxt = torch.tensor([[3], [5]])
    step, _ = tiny_model(nxt, cache=cache, positions=torch.tensor([[10], [6]]), key_mask=torch.ones(2, 1, dtype=torch.bool))
    assert torch.allclose(step[1, 0], tiny_model(torch.cat([b, nxt[1:]], 1))[0][0, -1], atol=1e-5)


def test_exceeding_the_context_window_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="context window"):
        tiny_model(torch.zeros(1, tiny_model.config.block_size + 1, dtype=torch.long))


def test_cache_truncate_and_clone(tiny_model):
    cache = KVCache.for_model(tiny_model)
    tiny_model(torch.randint(0, 32, (1, 8)), cache=cache)
    copy = cache.clone()
    cache.truncate(5)
    assert cache.length == 5 and copy.length == 8
    with pytest.raises(ValueError):
        cache.truncate(9)


def test_param_count_and_flops_follow_the_formulas():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=24)
    m = GPT(cfg)
    C, L, V, T = 24, 3, 50, 16
    per_block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    expected = V * C + T * C + L * per_block + 2 * C
    assert m.num_params() == expected
    n = expected - T * C
    assert m.flops_per_token(training=False) == 2 * n + 4 * L * T * C
    assert m.flops_per_token(training=True) == 3 * (2 * n + 4 * L * T * C)


def test_tied_embeddings():
    m = GPT(preset("test"))
    assert m.lm_head.weight is m.transformer.wte.weight


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(n_layer=0), dict(dropout=1.0), dict(block_size=-1)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        GPTConfig(**bad)


def test_unknown_preset_and_fields():
    with pytest.raises(KeyError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({"n_layers": 3})
    assert set(PRESETS) >= {"cpu", "gpu", "student", "test"}


def test_port_to_hugging_face_gpt2_is_exact(tiny_model):
    hf = to_hf_gpt2(tiny_model)
    x = torch.randint(0, 32, (2, 32))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, tiny_model(x)[0], atol=1e-4)


def test_attention_weights_are_what_sdpa_applies(tiny_model):
    from lifecycle.model import attention_weights
    idx = torch.randint(0, 32, (2, 12))
    att = attention_weights(tiny_model, idx)  # (n_layer, B, nh, T, T)
    cfg = tiny_model.config
    assert att.shape == (cfg.n_layer, 2, cfg.n_head, 12, 12)
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-6)  # each query's weights sum to one
    assert (att.triu(diagonal=1) == 0).all()  # no query looks at a later key
    x = tiny_model.transformer.wte(idx) + tiny_model.transformer.wpe.weight[:12]
    hs = cfg.n_embd // cfg.n_head
    for layer, block in enumerate(tiny_model.transformer.h):
        a = block.ln_1(x)
        v = block.attn.c_attn(a)[..., 2 * cfg.n_embd:].view(2, 12, cfg.n_head, hs).transpose(1, 2)
        y = (att[layer] @ v).transpose(1, 2).reshape(2, 12, cfg.n_embd)  # weights times values, heads joined
        assert torch.allclose(block.attn.c_proj(y), block.attn(a), atol=1e-5)  # = the SDPA path of forward
        x = block(x)
    # the logits computed from those layers are the model's
    assert torch.allclose(tiny_model.lm_head(tiny_model.transformer.ln_f(x)), tiny_model(idx)[0], atol=1e-5)
    with pytest.raises(ValueError, match="context window"):
        attention_weights(tiny_model, torch.zeros(1, cfg.block_size + 1, dtype=torch.long))
