"""Quantization: keep a trained model's weights in fewer bits, run it that way, and count the bytes honestly.

Schemes (`QuantConfig.scheme`):
  fp32        the trained model, 4 bytes per weight (the baseline)
  fp16, bf16  every tensor cast to a 2-byte float (IEEE 754 half; bfloat16 keeps fp32's exponent range)
  int8        weight-only, symmetric, one scale per output channel (row): w ≈ q · s, q in [-127, 127]
  int4        weight-only, symmetric, one scale per group of `group_size` input columns, q in [-7, 7],
              two 4-bit codes packed into each byte

"Weight-only" means activations stay in floating point: a quantized layer turns its integer codes back into
floats when it multiplies (for int8 the per-row scale factors out of the dot product, so it is applied to the
output instead: y = (x @ qᵀ) · s + b). The integers save memory, not arithmetic. They save memory *traffic* only
where a kernel expands the codes right where it multiplies; the eager layers here expand them into a temporary
float matrix on every call, which is simple and exact but slower than fp32 (lesson 04 measures by how much).

What is quantized: every nn.Linear inside the transformer blocks and, with `embeddings=True` (the default),
the token and position tables too. The output head is tied to the token table (GPT-2's weight tying), and the
two stay tied: one set of codes and scales serves the embedding lookup (row = token) and the head (row = output
channel), and is stored and counted once. Biases and LayerNorm gains stay fp32. In a tiny model the tables are
a noticeable share of all weights, so leaving them fp32 (`embeddings=False`) keeps the saving well below 4×.

References: Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
Only Inference" (the affine/symmetric scheme); Dettmers et al. 2022, "LLM.int8()" (per-channel int8 for
transformers); Frantar et al. 2023 "GPTQ" and Lin et al. 2024 "AWQ" (group-wise 4-bit weights); Kalamkar et al.
2019, "A Study of BFLOAT16 for Deep Learning Training"; pytorch-labs/gpt-fast `quantize.py` (weight-only
int8/int4 linear layers); torchao (PyTorch's maintained quantization library, the reference in `reference_int8`).
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import is_int, require_int
from .device import supports_dtype
from .model import GPT, GPTConfig

SCHEMES = ("fp32", "fp16", "bf16", "int8", "int4")
FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SCALE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
QMAX = {8: 127, 4: 7}  # symmetric ranges: the code -2^(b-1) is left unused so that -w always maps to -q


@dataclass(frozen=True)
class QuantConfig:
    scheme: str = "int8"
    group_size: int = 64  # int4: input columns sharing one scale
    scale_dtype: str = "bf16"  # bf16 keeps fp32's range in 2 bytes; the scale's own rounding costs no accuracy
    embeddings: bool = True  # also quantize the token/position tables (and with them the tied head)

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown quantization scheme {self.scheme!r}; choose one of {SCHEMES}")
        if not is_int(self.group_size) or self.group_size < 2 or self.group_size % 2:
            raise ValueError(f"group_size must be an even integer >= 2 (e.g. 32, 64, 128), got {self.group_size!r}")
        if self.scale_dtype not in SCALE_DTYPES:
            raise ValueError(f"scale_dtype must be one of {sorted(SCALE_DTYPES)}, got {self.scale_dtype!r}")

    @property
    def bits(self) -> int:
        return {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}[self.scheme]

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "group_size": self.group_size, "scale_dtype": self.scale_dtype,
                "embeddings": self.embeddings}


# ---- the arithmetic: tensors in, codes and scales out, and back ----

def _check_weight(w: torch.Tensor) -> None:
    if w.dim() != 2:
        raise ValueError(f"expected a weight matrix (out_features, in_features), got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError("the weight holds inf or nan; quantization needs finite values")


def _scales(amax: torch.Tensor, qmax: int, scale_dtype: str) -> torch.Tensor:
    """amax / qmax in the storage dtype, never zero (an all-zero row gets the smallest normal scale)."""
    tiny = torch.finfo(torch.float32).tiny
    return (amax.float() / qmax).clamp(min=tiny).to(SCALE_DTYPES[scale_dtype]).clamp(min=tiny)


def quantize_int8(w: torch.Tensor, scale_dtype: str = "bf16") -> tuple[torch.Tensor, torch.Tensor]:
    """w (out, in) → codes q int8 (out, in) and scales (out,), with w ≈ q · scales[:, None]."""
    _check_weight(w)
    scales = _scales(w.abs().amax(dim=1), QMAX[8], scale_dtype)  # (out,): the row's largest |w| maps to ±127
    q = torch.round(w.float() / scales.float()[:, None]).clamp(-QMAX[8], QMAX[8])
    return q.to(torch.int8), scales


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Codes (..., in) and per-row scales (...,) → float32 (..., in)."""
    return q.float() * scales.float()[..., None]


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 codes (..., n) in [-8, 7], n even → uint8 (..., n/2): column 2j in the low nibble, 2j+1 in the high."""
    if q.shape[-1] % 2:
        raise ValueError(f"pack_int4 needs an even number of columns, got {q.shape[-1]}")
    if q.numel() and (q.min() < -8 or q.max() > 7):
        raise ValueError("int4 codes must lie in [-8, 7]")
    u = (q.to(torch.int16) + 8).to(torch.uint8)  # offset binary: -8..7 → 0..15
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 (..., n/2) → int8 codes (..., n), the exact inverse of pack_int4."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2).to(torch.int8) - 8  # (..., n/2, 2) → (..., n)


def quantize_int4(w: torch.Tensor, group_size: int = 64,
                  scale_dtype: str = "bf16") -> tuple[torch.Tensor, torch.Tensor]:
    """w (out, in) → packed codes uint8 (out, in/2) and scales (out, in/group_size), one per group of columns."""
    _check_weight(w)
    out_f, in_f = w.shape
    if in_f % group_size:
        raise ValueError(f"group_size={group_size} must divide in_features={in_f}; pick a divisor such as "
                         f"{[g for g in (16, 32, 64, 128) if in_f % g == 0] or 'a smaller even number'}")
    groups = w.float().reshape(out_f, in_f // group_size, group_size)  # (out, G, gs)
    scales = _scales(groups.abs().amax(dim=-1), QMAX[4], scale_dtype)  # (out, G)
    q = torch.round(groups / scales.float()[..., None]).clamp(-QMAX[4], QMAX[4])
    return pack_int4(q.to(torch.int8).reshape(out_f, in_f)), scales


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Packed codes (..., n/2) and group scales (..., G) → float32 (..., n); the group size is n / G."""
    q = unpack_int4(packed).float()  # (..., n)
    G = scales.shape[-1]
    grouped = q.unflatten(-1, (G, q.shape[-1] // G)) * scales.float()[..., None]  # (..., G, gs)
    return grouped.flatten(-2)


# ---- modules swapped in for nn.Linear / nn.Embedding ----

class Int8Linear(nn.Module):
    """nn.Linear with int8 weight codes (out, in) and one scale per output channel (after gpt-fast)."""

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    def forward(self, x):
        # the row scale factors out of each dot product, so scale the (..., out) result instead of the matrix
        y = F.linear(x, self.qweight.to(x.dtype)) * self.scales.to(x.dtype)
        return y if self.bias is None else y + self.bias

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize_int8(self.qweight, self.scales)


class Int4Linear(nn.Module):
    """nn.Linear with packed int4 codes (out, in/2) and one scale per group of input columns (out, in/gs)."""

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = qweight.shape[0], 2 * qweight.shape[1]
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    def forward(self, x):
        # eager PyTorch has no int4 matmul on CPU: unpack and scale the whole matrix on every call (kept transient)
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize_int4(self.qweight, self.scales)


class _Rows:
    """`QuantEmbedding.weight`: indexing it (the GPT reads `wpe.weight[start:S]`) dequantizes only those rows."""

    def __init__(self, emb: "QuantEmbedding"):
        self.emb, self.shape = emb, (emb.num_embeddings, emb.embedding_dim)

    def __getitem__(self, index) -> torch.Tensor:
        return self.emb.dequantize(self.emb.qweight[index], self.emb.scales[index])


class QuantEmbedding(nn.Module):
    """nn.Embedding whose table is int8 (a scale per row) or packed int4 (scales per group of each row)."""

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        self.num_embeddings = qweight.shape[0]
        self.embedding_dim = qweight.shape[1] * (2 if bits == 4 else 1)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)

    def dequantize(self, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return dequantize_int8(q, s) if self.bits == 8 else dequantize_int4(q, s)

    def forward(self, idx):  # (B, T) → (B, T, C)
        return self.dequantize(self.qweight[idx], self.scales[idx])

    @property
    def weight(self) -> _Rows:
        return _Rows(self)

    def as_linear(self) -> nn.Module:
        """The tied output head: the same codes and scales (a table row is an output channel), not a copy."""
        return (Int8Linear if self.bits == 8 else Int4Linear)(self.qweight, self.scales)


def _quantize_matrix(w: torch.Tensor, cfg: QuantConfig):
    if cfg.scheme == "int8":
        return quantize_int8(w, cfg.scale_dtype)
    return quantize_int4(w, cfg.group_size, cfg.scale_dtype)


def quantize_linear(linear: nn.Linear, cfg: QuantConfig) -> nn.Module:
    """An Int8Linear / Int4Linear holding `linear`'s weights quantized (bias kept fp32)."""
    q, s = _quantize_matrix(linear.weight.detach(), cfg)
    bias = None if linear.bias is None else linear.bias.detach().clone()
    return (Int8Linear if cfg.scheme == "int8" else Int4Linear)(q, s, bias)


def quantize_embedding(emb: nn.Embedding, cfg: QuantConfig) -> QuantEmbedding:
    q, s = _quantize_matrix(emb.weight.detach(), cfg)
    return QuantEmbedding(q, s, cfg.bits)


# ---- whole models ----

def _as_config(cfg: QuantConfig | str) -> QuantConfig:
    return QuantConfig(cfg) if isinstance(cfg, str) else cfg


def _check_unquantized(model: GPT) -> None:
    done = getattr(model, "quant_config", None)
    if done is not None and done.scheme != "fp32":
        raise ValueError(f"this model is already {done.scheme}; quantize the original fp32 model instead")


def cast(model: GPT, dtype: str | torch.dtype) -> GPT:
    """A copy of `model` with every tensor in `dtype` ('fp32', 'fp16' or 'bf16'); refuses dtypes the device lacks."""
    name = next((k for k, v in FLOAT_DTYPES.items() if v == dtype), dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(f"cast() takes one of {sorted(FLOAT_DTYPES)}, got {dtype!r}")
    _check_unquantized(model)
    device = next(model.parameters()).device
    if not supports_dtype(device, FLOAT_DTYPES[name]):
        others = [k for k, v in FLOAT_DTYPES.items() if k != name and supports_dtype(device, v)]
        raise ValueError(f"{name} is not supported on this device ({device}); use one of {others} instead")
    out = copy.deepcopy(model).to(FLOAT_DTYPES[name]).eval()
    out.quant_config = QuantConfig(name)
    return out


def quantize_model(model: GPT, cfg: QuantConfig | str = "int8") -> GPT:
    """A quantized deep copy of `model`: quantized layers swapped in for nn.Linear (and nn.Embedding); the original
    is untouched. Float schemes ('fp16', 'bf16', 'fp32') are plain casts."""
    cfg = _as_config(cfg)
    _check_unquantized(model)
    if cfg.scheme in FLOAT_DTYPES:
        return cast(model, cfg.scheme)
    out = copy.deepcopy(model).eval()  # deepcopy keeps the head tied to the token table
    tied = out.lm_head.weight is out.transformer.wte.weight
    for block in out.transformer.h:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, quantize_linear(child, cfg))
    if cfg.embeddings:
        wte = quantize_embedding(out.transformer.wte, cfg)
        out.transformer.wte = wte
        out.transformer.wpe = quantize_embedding(out.transformer.wpe, cfg)
        out.lm_head = wte.as_linear() if tied else quantize_linear(out.lm_head, cfg)
    out.quant_config = cfg
    return out


def dequantize_model(qmodel: GPT) -> GPT:
    """A plain fp32 GPT holding the weights `qmodel` actually computes with (codes × scales): it isolates the
    rounding error of quantization from everything else (its logits equal qmodel's up to float rounding)."""
    out = GPT(qmodel.config)
    state = {}
    for name, module in qmodel.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (Int8Linear, Int4Linear)):
            state[f"{prefix}weight"] = module.dequantized_weight()
            if module.bias is not None:
                state[f"{prefix}bias"] = module.bias.float()
        elif isinstance(module, QuantEmbedding):
            state[f"{prefix}weight"] = module.weight[:]
        elif not module._modules:  # a leaf left in float: LayerNorm, or an unquantized Linear / Embedding
            state |= {f"{prefix}{k}": v.float() for k, v in module.state_dict().items()}
    out.load_state_dict(state, strict=True)
    return out.to(next(qmodel.parameters()).device).eval()


def unique_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's tensors with shared ones (the tied head) kept once: ({name: tensor}, {alias: name})."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, t in _plain_tensors(model.state_dict()):
        key = (t.data_ptr(), tuple(t.shape), t.dtype)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            kept[name] = t
    return kept, aliases


def _plain_tensors(state: dict):
    """(name, tensor) pairs, with tensor subclasses (torchao's quantized weights) opened into their parts."""
    for name, t in state.items():
        if hasattr(t, "__tensor_flatten__") and type(t) is not torch.nn.Parameter:
            parts, _ = t.__tensor_flatten__()  # e.g. qdata, scale, zero_point
            yield from _plain_tensors({f"{name}.{p}": getattr(t, p) for p in parts if getattr(t, p) is not None})
        else:
            yield name, t


def size_breakdown(model: nn.Module) -> dict[str, int]:
    """Bytes in memory by kind: integer codes, scales, other floats (biases, LayerNorm, unquantized weights)."""
    out = {"codes": 0, "scales": 0, "floats": 0}
    for name, t in unique_tensors(model)[0].items():
        kind = "scales" if name.endswith(("scales", "scale", "zero_point")) else \
            "floats" if t.is_floating_point() else "codes"
        out[kind] += t.numel() * t.element_size()
    return out | {"total": sum(out.values())}


def nbytes(model: nn.Module) -> int:
    """Exact bytes of the model's tensors, each shared tensor counted once (= the tensor bytes of its file)."""
    return size_breakdown(model)["total"]


# ---- saving and loading (safetensors: tensors only, no pickle) ----

def save_quantized(model: GPT, path: Path | str) -> Path:
    """Write the (quantized or cast) model to one .safetensors file, atomically; the recipe goes in its header."""
    from safetensors.torch import save_file

    from .train import _atomic_write, checkpoint_files, tensors_sha256

    cfg = getattr(model, "quant_config", None)
    if cfg is None:
        raise ValueError("save_quantized needs a model made by quantize_model() or cast(); got a plain model")
    path = checkpoint_files(path)[0]  # suffix appended: "int8.v1" and "int8.v2" are two files
    tensors, aliases = unique_tensors(model)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"format": "lifecycle-quantized/1", "config": json.dumps(model.config.to_dict()),
            "quant": json.dumps(cfg.to_dict()), "aliases": json.dumps(aliases), "sha256": tensors_sha256(tensors)}
    _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_quantized(path: Path | str, device: torch.device | str = "cpu") -> GPT:
    """Rebuild a model saved by save_quantized: same layers, same codes and scales, the head tied again."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from .train import checkpoint_files, tensors_sha256

    path = checkpoint_files(path)[0]
    if not path.exists():
        raise FileNotFoundError(f"no quantized model at {path}; write one with save_quantized(model, path)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} cannot be read ({e}): truncated or changed; save the model again") from e
    if meta.get("format") != "lifecycle-quantized/1":
        raise ValueError(f"{path} was not written by save_quantized (format {meta.get('format')!r})")
    # files from before the checksum have no "sha256"; every file written now is verified
    if "sha256" in meta and tensors_sha256(state) != meta["sha256"]:
        raise ValueError(f"{path} does not match the checksum in its header: the file was changed or damaged; "
                         "save the model again with save_quantized")
    config = GPTConfig.from_dict(json.loads(meta["config"]))
    cfg = QuantConfig(**json.loads(meta["quant"]))
    model = quantize_model(GPT(config), cfg)  # the right layer types and shapes; the values come from the file
    state |= {alias: state[name] for alias, name in json.loads(meta["aliases"]).items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# ---- PyTorch's own int8 (the reference) ----

def reference_int8(model: GPT, dynamic: bool = False) -> tuple[nn.Module, str]:
    """A copy of `model` whose block Linear layers are int8 by PyTorch's own tooling: torchao's `quantize_` with
    Int8WeightOnlyConfig (or Int8DynamicActivationInt8WeightConfig), falling back to torch.ao's quantize_dynamic.
    Returns (model, which tool). Embeddings and the tied head stay fp32 (compare with `embeddings=False`)."""
    out = copy.deepcopy(model).eval()
    in_blocks = lambda m, fqn: isinstance(m, nn.Linear) and fqn.startswith("transformer.h.")  # noqa: E731
    try:
        with _quiet("torchao", "torch.utils._pytree"):
            import torchao
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
        config = Int8DynamicActivationInt8WeightConfig() if dynamic else Int8WeightOnlyConfig()
        quantize_(out, config, filter_fn=in_blocks)
        return out, f"torchao {torchao.__version__} {type(config).__name__}"
    except ImportError:  # no torchao (e.g. Colab): the older, deprecated torch.ao path, per-channel int8
        if next(model.parameters()).device.type != "cpu":
            raise RuntimeError("the int8 reference needs torchao on a GPU (torch.ao's dynamic int8 runs on CPU "
                               "only): `pip install torchao` matching your torch, or move the model to the CPU")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
            for block in out.transformer.h:  # dynamic int8 activations and weights, blocks only
                quantize_dynamic(block, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
        return out, f"torch.ao.quantization.quantize_dynamic (torch {torch.__version__}, per-channel)"


def fused_int8_linear(linear: nn.Linear) -> nn.Module:
    """A copy of `linear` as PyTorch's fused int8 layer for the CPU: int8 weights (one scale per tensor) and int8
    activations quantized on the fly, multiplied by one integer kernel (fbgemm on x86, qnnpack on ARM), so the codes
    are never expanded to a float matrix in memory. Same call, same output shape: (..., in) -> (..., out).

    This is `torch.ao.quantization.quantize_dynamic`, the fused int8 path eager PyTorch has on a CPU (torchao's
    int8 configs run without a fused kernel on a CPU unless compiled). CPU only: on a GPU use torchao.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"fused_int8_linear takes an nn.Linear, got {type(linear).__name__}")
    if linear.weight.device.type != "cpu":
        raise RuntimeError("PyTorch's fused dynamic int8 Linear runs on the CPU only; move the layer to the CPU "
                           "(on a GPU, torchao's int8 configs with torch.compile are the fused path)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic
        wrapped = quantize_dynamic(nn.Sequential(copy.deepcopy(linear).float().eval()), {nn.Linear},
                                   dtype=torch.qint8)
    return wrapped[0]


class _quiet:
    """Raise the named loggers to ERROR while importing (torchao logs missing optional CUDA kernels on CPU)."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n) for n in names]

    def __enter__(self):
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


# ---- fake quantization at any bit width, for lesson 04's sliders ----
# The library's layers store int8 (per row) and int4 (per group); to let a learner slide through other widths too,
# the grid rounds each weight matrix to `bits`-bit codes and straight back to float32 ("fake quantization"): the
# model computes with exactly the values a `bits`-bit layer would hold, and the bytes are those such a layer would
# store. At bits=8 per row and bits=4 per group this is the library's own arithmetic (tests/test_widgets.py checks).

def fake_quantize(w: torch.Tensor, bits: int, group_size: int | None = None,
                  scale_dtype: str = "bf16") -> torch.Tensor:
    """w (out, in) rounded to symmetric `bits`-bit codes, one scale per `group_size` input columns (None: per row),
    and back to float32 (out, in)."""
    _check_weight(w)
    require_int("bits", bits, low=2, high=8)
    out_f, in_f = w.shape
    gs = in_f if group_size is None else group_size
    if not is_int(gs) or gs < 1 or in_f % gs:
        raise ValueError(f"group_size must be None (one scale per row) or a divisor of in_features={in_f}, "
                         f"got {group_size!r}")
    qmax = 2 ** (bits - 1) - 1  # symmetric: -2^(b-1) unused, as in QMAX
    groups = w.float().reshape(out_f, in_f // gs, gs)  # (out, G, gs)
    scales = _scales(groups.abs().amax(dim=-1), qmax, scale_dtype).float()  # (out, G)
    q = torch.round(groups / scales[..., None]).clamp(-qmax, qmax)
    return (q * scales[..., None]).reshape(out_f, in_f)


def fake_quantized_bytes(shape: tuple[int, int], bits: int, group_size: int | None = None,
                         scale_dtype: str = "bf16") -> int:
    """Bytes a `bits`-bit matrix of `shape` would store: packed codes plus one scale per group."""
    out_f, in_f = shape
    groups = 1 if group_size is None else in_f // group_size
    return -(-out_f * in_f * bits // 8) + out_f * groups * SCALE_DTYPES[scale_dtype].itemsize


def grid_matrices(model: GPT) -> list[nn.Parameter]:
    """The weights `quantize_model` quantizes: every block's Linear, and the token and position tables (the ones
    `lifecycle.measure.quality.precision_grid` rounds)."""
    mats = [m.weight for m in model.transformer.h.modules() if isinstance(m, nn.Linear)]
    return mats + [model.transformer.wte.weight, model.transformer.wpe.weight]
