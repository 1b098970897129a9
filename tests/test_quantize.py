"""Tests of lifecycle.quantize: error bounds, lossless packing, forward = dequantized math, exact byte counts."""
import json
import struct
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle import quantize as Q
from lifecycle.model import GPT, preset

# slack for the fp32 division w / s before rounding (|w / s| <= 127.5, relative error 2^-24)
ROUNDING = 1e-5
TINY = torch.finfo(torch.float32).tiny  # the smallest scale the library uses (an all-zero row gets it)


@st.composite
def matrices(draw, max_rows=6, col_choices=(2, 4, 8, 16, 32)):
    """Random float32 matrices with the awkward cases mixed in: all-zero rows, constant rows, huge outliers."""
    rows, cols = draw(st.integers(1, max_rows)), draw(st.sampled_from(col_choices))
    values = draw(st.lists(st.floats(-10, 10, width=32), min_size=rows * cols, max_size=rows * cols))
    w = torch.tensor(values, dtype=torch.float32).view(rows, cols)
    r = draw(st.integers(0, rows - 1))
    kind = draw(st.sampled_from(["random", "zeros", "constant", "outlier", "tiny"]))
    if kind == "zeros":
        w[r] = 0.0
    elif kind == "constant":
        w[r] = draw(st.floats(-1e4, 1e4, width=32))
    elif kind == "outlier":
        w[r, draw(st.integers(0, cols - 1))] = draw(st.sampled_from([1e6, -1e8, 3e30, -65504.0]))
    elif kind == "tiny":
        w[r] *= 1e-30
    return w


@settings(deadline=None, max_examples=200)
@given(w=matrices(), scale_dtype=st.sampled_from(["bf16", "fp32"]))
def test_int8_round_trip_error_is_at_most_half_a_step(w, scale_dtype):
    q, s = Q.quantize_int8(w, scale_dtype)
    assert q.dtype == torch.int8 and s.shape == (w.shape[0],)
    assert q.abs().max() <= 127
    err = (w.double() - Q.dequantize_int8(q, s).double()).abs()
    step = s.double()[:, None]
    assert (err <= step * (0.5 + ROUNDING)).all()
    assert torch.equal(q[w == 0], torch.zeros_like(q[w == 0]))  # zero stays exactly zero
    normal = w.abs().amax(dim=1) >= 127 * TINY  # below that the scale is floored at TINY
    assert (q.abs().amax(dim=1)[normal] == 127).all()  # the grid is as fine as it can be: the largest |w| -> ±127


@settings(deadline=None, max_examples=200)
@given(w=matrices(col_choices=(4, 8, 16, 32)), group_size=st.sampled_from([2, 4]),
       scale_dtype=st.sampled_from(["bf16", "fp32"]))
def test_int4_round_trip_error_is_at_most_half_a_group_step(w, group_size, scale_dtype):
    packed, s = Q.quantize_int4(w, group_size, scale_dtype)
    rows, cols = w.shape
    assert packed.dtype == torch.uint8 and packed.shape == (rows, cols // 2)
    assert s.shape == (rows, cols // group_size)
    assert Q.unpack_int4(packed).abs().max() <= 7
    err = (w.double() - Q.dequantize_int4(packed, s).double()).abs()
    step = s.double().repeat_interleave(group_size, dim=1)  # each column's own group scale
    assert (err <= step * (0.5 + ROUNDING)).all()
    q_groups = Q.unpack_int4(packed).view(rows, -1, group_size)
    normal = w.view(rows, -1, group_size).abs().amax(dim=-1) >= 7 * TINY
    assert (q_groups.abs().amax(dim=-1)[normal] == 7).all()  # each group's largest |w| -> ±7


@given(codes=st.lists(st.integers(-8, 7), min_size=1, max_size=64).map(lambda c: c + c[-1:] * (len(c) % 2)))
def test_int4_pack_unpack_is_lossless(codes):
    q = torch.tensor(codes, dtype=torch.int8).view(1, -1)
    packed = Q.pack_int4(q)
    assert packed.shape == (1, len(codes) // 2)
    assert torch.equal(Q.unpack_int4(packed), q)


def test_int4_layout_is_offset_binary_low_nibble_first():
    packed = Q.pack_int4(torch.tensor([[-3, 5, 7, -8]], dtype=torch.int8))
    assert packed.tolist() == [[0b1101_0101, 0b0000_1111]]  # (5+8)<<4 | (-3+8), (-8+8)<<4 | (7+8)


def test_every_byte_unpacks_and_packs_back():
    every = torch.arange(256, dtype=torch.uint8).view(4, 64)
    assert torch.equal(Q.pack_int4(Q.unpack_int4(every)), every)


def test_pack_rejects_out_of_range_and_odd_widths():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        Q.pack_int4(torch.tensor([[8, 0]], dtype=torch.int8))
    with pytest.raises(ValueError, match="even"):
        Q.pack_int4(torch.zeros(1, 3, dtype=torch.int8))


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_linear_equals_dequantized_fp32_math(scheme):
    torch.manual_seed(0)
    linear = nn.Linear(64, 24)
    layer = Q.quantize_linear(linear, Q.QuantConfig(scheme, group_size=16))
    x = torch.randn(3, 5, 64)
    expected = F.linear(x, layer.dequantized_weight(), linear.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(layer.dequantized_weight(), linear.weight)  # it did round something


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(preset("test")).eval()


CONFIGS = [Q.QuantConfig("int8"), Q.QuantConfig("int4", group_size=16), Q.QuantConfig("int4", group_size=32),
           Q.QuantConfig("int8", embeddings=False), Q.QuantConfig("int4", group_size=8, scale_dtype="fp32")]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.scheme}-g{c.group_size}-{c.scale_dtype}-emb{c.embeddings}")
def test_quantized_model_equals_its_dequantized_weights(model, cfg):
    qmodel = Q.quantize_model(model, cfg)
    x = torch.randint(0, model.config.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(qmodel(x)[0], Q.dequantize_model(qmodel)(x)[0], rtol=1e-4, atol=1e-5)


def test_quantize_model_leaves_the_original_untouched_and_keeps_the_head_tied(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = Q.quantize_model(model, "int8")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.transformer.h[0].mlp.c_fc, nn.Linear)
    assert isinstance(qmodel.transformer.h[0].mlp.c_fc, Q.Int8Linear)
    assert qmodel.lm_head.qweight is qmodel.transformer.wte.qweight
    assert qmodel.lm_head.scales is qmodel.transformer.wte.scales


def _tensor_bytes_in_file(path) -> int:
    """Bytes of tensor data in a safetensors file: its size minus the 8-byte length and the JSON header."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    span = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert len(raw) == 8 + header_len + span  # nothing after the tensors
    return span


@pytest.mark.parametrize("cfg", CONFIGS + [Q.QuantConfig("fp16"), Q.QuantConfig("fp32")], ids=lambda c: c.scheme)
def test_size_accounting_matches_the_file_and_loading_round_trips(model, cfg, tmp_path):
    qmodel = Q.quantize_model(model, cfg)
    path = Q.save_quantized(qmodel, tmp_path / "m")
    assert _tensor_bytes_in_file(path) == Q.nbytes(qmodel)
    loaded = Q.load_quantized(path)
    x = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], qmodel(x)[0])
    assert Q.nbytes(loaded) == Q.nbytes(qmodel)
    assert loaded.lm_head.state_dict().keys() == qmodel.lm_head.state_dict().keys()


def test_sizes_shrink_as_expected(model):
    fp32 = Q.nbytes(model)
    assert fp32 == 4 * model.num_params()  # tied head counted once
    int8 = Q.size_breakdown(Q.quantize_model(model, "int8"))
    int4 = Q.size_breakdown(Q.quantize_model(model, Q.QuantConfig("int4", group_size=16)))
    n_codes = model.num_params() - sum(p.numel() for n, p in model.named_parameters() if p.dim() == 1)
    assert int8["codes"] == n_codes and int4["codes"] == n_codes // 2


def test_a_failed_save_keeps_the_old_file(model, tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    path = Q.save_quantized(Q.quantize_model(model, "int8"), folder / "m")
    good = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError):
        Q.save_quantized(Q.quantize_model(model, Q.QuantConfig("int4", group_size=16)), path)
    assert path.read_bytes() == good
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left behind


def test_clear_errors(model, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization scheme 'int3'"):
        Q.QuantConfig("int3")
    with pytest.raises(ValueError, match="group_size=24 must divide in_features=32"):
        Q.quantize_model(model, Q.QuantConfig("int4", group_size=24))
    with pytest.raises(ValueError, match="group_size must be an even integer"):
        Q.QuantConfig("int4", group_size=3)
    with pytest.raises(ValueError, match="inf or nan"):
        Q.quantize_int8(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="save_quantized needs a model made by"):
        Q.save_quantized(model, tmp_path / "plain")
    with pytest.raises(ValueError, match="already int8; quantize the original fp32 model"):
        Q.quantize_model(Q.quantize_model(model, "int8"), "int4")
    with pytest.raises(FileNotFoundError, match="no quantized model"):
        Q.load_quantized(tmp_path / "missing")
    monkeypatch.setattr(Q, "supports_dtype", lambda device, dtype: dtype != torch.bfloat16)
    expected = r"bf16 is not supported on this device \(cpu\); use one of \['fp32', 'fp16'\]"
    with pytest.raises(ValueError, match=expected):
        Q.quantize_model(model, "bf16")


def test_our_int8_agrees_with_pytorchs_reference(model):
    pytest.importorskip("torchao")
    ref, tool = Q.reference_int8(model)
    ours = Q.quantize_model(model, Q.QuantConfig("int8", embeddings=False, scale_dtype="fp32"))
    for block_ours, block_ref in zip(ours.transformer.h, ref.transformer.h):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            a, b = block_ours.get_submodule(name), block_ref.get_submodule(name)
            # each is within half of its own step of the fp32 weight, so they differ by less than one of our steps
            gap = (a.dequantized_weight() - b.weight.dequantize()).abs()
            assert (gap <= a.scales[:, None] * (1 + ROUNDING)).all(), name
    x = torch.randint(0, model.config.vocab_size, (4, 32))
    with torch.no_grad():
        fp32, a, b = model(x)[0], ours(x)[0], ref(x)[0]
    # the same recipe up to a rounding convention: errors of the same size (torchao's step is 127/127.5 of ours)
    ratio = (a - fp32).pow(2).mean().sqrt() / (b - fp32).pow(2).mean().sqrt()
    assert 0.8 < ratio < 1.25, ratio
    assert tool.startswith("torchao")


def test_reference_falls_back_to_torch_ao_without_torchao(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # makes `import torchao` raise ImportError
    ref, tool = Q.reference_int8(model)
    assert tool.startswith("torch.ao.quantization.quantize_dynamic")
    x = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        fp32, b = model(x)[0], ref(x)[0]
    assert 0 < (b - fp32).abs().max() < 0.05  # int8-sized differences, not a broken model


# --- regression tests (issue 15) ----------------------------------------------------------------------------------

def test_dotted_quantized_names_do_not_collide(model, tmp_path):
    a = Q.save_quantized(Q.quantize_model(model, "int8"), tmp_path / "tiny.v1")
    b = Q.save_quantized(Q.cast(model, torch.float16), tmp_path / "tiny.v2")
    assert a != b and a.exists() and b.exists()
    assert Q.load_quantized(tmp_path / "tiny.v1").quant_config.scheme == "int8"


def test_a_flipped_byte_in_a_quantized_file_is_refused(model, tmp_path):
    path = Q.save_quantized(Q.quantize_model(model, "int8"), tmp_path / "m")
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # inside the last tensor's bytes: the file still parses
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        Q.load_quantized(path)


# ---- PyTorch's fused int8 layer and the width sweep (lesson 04) ----

def test_fused_int8_linear_matches_fp32_within_int8_error():
    from lifecycle.quantize import fused_int8_linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48)
    x = torch.randn(2, 5, 64)  # (B, T, C): any leading shape, like nn.Linear
    fused = fused_int8_linear(layer)
    y, ref = fused(x), layer(x)
    assert y.shape == ref.shape
    # int8 weights and activations: a few percent of the output's scale, far from exact, far from wrong
    err = (y - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.05
    assert layer.weight.dtype == torch.float32  # the original layer is left as it was


def test_fused_int8_linear_refuses_what_it_cannot_fuse():
    from lifecycle.quantize import fused_int8_linear

    with pytest.raises(TypeError, match="nn.Linear"):
        fused_int8_linear(torch.nn.Conv1d(4, 4, 1))
