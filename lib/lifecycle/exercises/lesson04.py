"""Lesson 04 exercises: group-wise int4 quantization and packing two 4-bit codes into a byte.

- `quantize_int4_groups(w, group_size)`: symmetric int4 with one scale per group of `group_size` consecutive
  columns of each row: scale = max|w| of the group / 7, codes = round(w / scale) clamped to −7..7, returned
  unpacked as int8 (out, in) with float32 scales (out, in / group_size) (checked against
  `quantize.quantize_int4(w, group_size, scale_dtype="fp32")`, its codes unpacked).
- `pack_int4(q)`: codes (..., n) in −8..7 → uint8 (..., n/2), stored as q + 8, column 2j in the low nibble and
  2j+1 in the high one (checked against `quantize.pack_int4`).
"""
from __future__ import annotations

import torch

from .. import quantize
from . import Case, adapt, check_function, difference


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- 1. group-wise int4 quantization ----

def reference_quantize_int4_groups(w: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
    packed, scales = quantize.quantize_int4(w, group_size=group_size, scale_dtype="fp32")
    return {"codes": quantize.unpack_int4(packed), "scales": scales}


def _learner_quantize(fn):
    def run(w, group_size):
        out = fn(w, group_size)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            return out  # not a pair: _compare_quantized says what was expected
        return {"codes": out[0], "scales": out[1]}
    return run


def _compare_quantized(got, want) -> str | None:
    if not isinstance(got, dict):
        return f"your function should return a pair (codes, scales), got {type(got).__name__}"
    scales = got["scales"]
    if isinstance(scales, torch.Tensor) and scales.is_floating_point() and not bool((scales > 0).all()):
        bad = tuple((~(scales > 0)).nonzero()[0].tolist())
        return (f"scales{list(bad)} is {scales[bad].item()}: a scale must be positive (an all-zero group divides "
                "0 by 0, and its codes come from NaN)")
    return (difference(got["codes"], want["codes"], where="codes")
            or difference(got["scales"], want["scales"], rtol=1e-6, atol=1e-7, where="scales"))


def check_quantize_int4_groups(fn) -> bool | None:
    """`fn(w (out, in), group_size) -> (codes int8 (out, in), scales float32 (out, in/group_size))`."""
    w = _randn(4, 16, seed=0, scale=0.05)
    outlier = _randn(3, 32, seed=1, scale=0.05)
    outlier[1, 5] = 2.0  # one large weight: only its own group's step grows
    zero_group = _randn(2, 16, seed=2, scale=0.05)
    zero_group[0, 8:] = 0.0  # an all-zero group: its scale must not be 0 (0 / 0 is nan)
    cases = [Case("4×16 weights, groups of 8", (w, 8)),
             Case("groups as wide as the row (one scale per row)", (w, 16)),
             Case("3×32 with one outlier, groups of 8", (outlier, 8)),
             Case("an all-zero group", (zero_group, 8)),
             Case("the teacher's c_fc shape (512×128), groups of 64", (_randn(512, 128, seed=3, scale=0.05), 64))]
    return check_function("quantize_int4_groups", adapt(fn, _learner_quantize),
                          reference=reference_quantize_int4_groups, cases=cases, compare=_compare_quantized,
                          hint="reshape w to (out, in // group_size, group_size); scale = the group's max |w| / 7, "
                               "floored at a tiny positive number (e.g. torch.finfo(torch.float32).tiny) so an "
                               "all-zero group does not divide 0 by 0; codes = torch.round(w / scale).clamp(-7, 7) "
                               "as int8, reshaped back to (out, in); scales float32 of shape (out, in // group_size).")


# ---- 2. packing two int4 codes per byte ----

def check_pack_int4(fn) -> bool | None:
    """`fn(q int8 (..., n) in -8..7) -> uint8 (..., n/2)` against `quantize.pack_int4`."""
    g = torch.Generator().manual_seed(0)
    cases = [Case("the lesson's example [-3, 5, 7, -8]", (torch.tensor([[-3, 5, 7, -8]], dtype=torch.int8),)),
             Case("random codes, 4×16", (torch.randint(-8, 8, (4, 16), generator=g, dtype=torch.int8),)),
             Case("the extremes: -8 and 7 side by side", (torch.tensor([[-8, 7, 7, -8, 0, 0]], dtype=torch.int8),)),
             Case("a 3-D tensor (2, 3, 8): pack along the last dimension",
                  (torch.randint(-8, 8, (2, 3, 8), generator=g, dtype=torch.int8),))]
    return check_function("pack_int4", fn, reference=quantize.pack_int4, cases=cases,
                          hint="shift to 0..15 first (q + 8, computed in a wider type such as int16, then uint8); "
                               "the EVEN columns u[..., 0::2] go in the low 4 bits and the odd ones u[..., 1::2] in "
                               "the high 4 bits: low | (high << 4); the result is torch.uint8.")


EXERCISES = {"quantize_int4_groups": check_quantize_int4_groups, "pack_int4": check_pack_int4}
