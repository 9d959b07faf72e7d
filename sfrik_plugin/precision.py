"""The precision of the regulariser's Gram matrix (option gram_precision of the SFRIK losses).

    "float32"  the Gram matrix of the unit rows in their compute type (float32; float64 stays
               float64): the default, see BENCHMARKS.md ("Gram precision")
    "tf32"     the rows rounded to TF32 (10 explicit mantissa bits) for the product
    "bf16"     the rows rounded to bfloat16 (7 bits)
    "fp16"     the rows rounded to float16 (10 bits, 5 exponent bits)

In every reduced mode the products of rounded values accumulate in float32 and the Gram matrix is
kept in float32 (never rounded to the low type itself, unlike torch.mm on half tensors or under
autocast, which round every Gram entry too), and psi and its derivative are evaluated in float32.
The gradient flows through the rounding unchanged (straight-through): dR/du = (S + S^T) r(u) with
S = dR/dG, and that GEMM runs in the same precision as the forward one: S + S^T is rounded to the
precision too (for float16 first scaled by a power of two, chosen on the device from its largest
entry, so that its entries, ~psi'/n^2, stay in float16's normal range rather than flush; the product
is scaled back exactly), and the products accumulate in float32.

Where it runs: on CUDA, both GEMMs are real reduced-precision GEMMs (TF32 tensor cores, or
bfloat16/float16 inputs with float32 accumulation and output through torch.mm's out_dtype); on a
CPU, and in the tiled and sharded paths (whose tile GEMMs are float32 by design,
cpp/gram_series_tiled.cpp), the operands are rounded and the product is a float32 GEMM of the
rounded values: the same numerics (a product of two 11-bit mantissas is exact in float32), not the
speed. BENCHMARKS.md ("Gram precision") has the errors against float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .defaults import GRAM_PRECISIONS
from .gram import symmetric_gram, symmetric_sum
from .sphere_autograd import apply

_LOW_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to the nearest TF32 value (10 explicit mantissa bits, ties to even), as
    float32. Inf and NaN pass through (the rounding never carries into an all-ones exponent except
    for values within half a TF32 ulp of the float32 maximum, which become inf as in hardware)."""
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_tf32 takes float32, got {x.dtype}")
    bits = x.view(torch.int32)
    drop = 13  # 23 - 10 mantissa bits
    lsb = (bits >> drop) & 1
    rounded = (bits + ((1 << (drop - 1)) - 1) + lsb) & ~((1 << drop) - 1)
    finite = torch.isfinite(x)
    return torch.where(finite, rounded.view(torch.float32), x)


def round_rows(u: torch.Tensor, gram_precision: str) -> torch.Tensor:
    """u's values rounded to gram_precision, in u's dtype (identity for "float32")."""
    if gram_precision == "float32":
        return u
    if gram_precision == "tf32":
        return round_to_tf32(u.float()).to(u.dtype)
    return u.to(_LOW_TYPES[gram_precision]).to(u.dtype)


@contextlib.contextmanager
def _tf32_matmul() -> Iterator[None]:
    before = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = before


def _fp16_scale(a: torch.Tensor) -> torch.Tensor:
    """A power of two (0-dim float32, computed on a's device: no host sync) that brings a's largest
    entry to [2^13, 2^14): float16's normal range holds the whole matrix down to 2^-24 of it."""
    amax = a.detach().abs().amax().float().clamp_min(torch.finfo(torch.float32).tiny)
    return torch.exp2(torch.floor(torch.log2(2.0**13 / amax)))


def low_precision_mm(a: torch.Tensor, b: torch.Tensor, gram_precision: str, scale_fp16: bool = True) -> torch.Tensor:
    """a @ b (float32 operands, b already rounded to gram_precision) with a rounded to gram_precision
    and the products accumulated in float32; float16 (scale_fp16) scales a by _fp16_scale first and
    the product back after (exact: powers of two). A real reduced-precision GEMM on CUDA, an
    emulation by a float32 GEMM of the rounded operands elsewhere (module docstring)."""
    if gram_precision == "float32":
        return a @ b
    scale = _fp16_scale(a) if gram_precision == "fp16" and scale_fp16 else None
    if scale is not None:
        a = a * scale
    if a.device.type == "cuda" and a.dtype == torch.float32:
        if gram_precision == "tf32":
            with _tf32_matmul():
                product = a @ b
        else:
            low = _LOW_TYPES[gram_precision]
            product = torch.mm(a.to(low), b.to(low), out_dtype=torch.float32)
    else:
        product = round_rows(a, gram_precision) @ b
    return product if scale is None else product / scale


def low_precision_gram(r: torch.Tensor, gram_precision: str, blocks: int | None = None) -> torch.Tensor:
    """r r^T for rows r already rounded to gram_precision, from its upper triangle
    (gram.symmetric_gram, in `blocks` row blocks; None: the device's default), the products in that
    precision as low_precision_mm computes them (r's entries are <= 1: no float16 scaling). On CUDA
    the rows are cast to the low type once, not per block; elsewhere the float32 product of the
    rounded rows is the same numerics."""
    if gram_precision == "float32" or r.device.type != "cuda" or r.dtype != torch.float32:
        return symmetric_gram(r, blocks=blocks)
    if gram_precision == "tf32":
        with _tf32_matmul():
            return symmetric_gram(r, blocks=blocks)
    low = r.to(_LOW_TYPES[gram_precision])
    return symmetric_gram(low, lambda a, b: torch.mm(a, b.mT, out_dtype=torch.float32), blocks)


class _ReducedPrecisionGram(torch.autograd.Function):
    """G = r(u) r(u)^T (see the module docstring), from its upper triangle, with the
    straight-through backward (S + S^T) r(u) in the same precision (one GEMM, as
    sphere_autograd.gram_matrix). The rounded rows r(u) are a second output (not differentiable),
    saved for the backward (torch.func saves only inputs and outputs)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u: torch.Tensor, gram_precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        r = round_rows(u, gram_precision)
        return low_precision_gram(r, gram_precision), r

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        r = output[1]
        ctx.mark_non_differentiable(r)
        ctx.save_for_backward(r)
        ctx.gram_precision = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, grad_r: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        (r,) = ctx.saved_tensors
        return low_precision_mm(symmetric_sum(grad), r, ctx.gram_precision), None


def reduced_precision_gram(u: torch.Tensor, gram_precision: str) -> torch.Tensor:
    """The Gram matrix of the rows u with the product in gram_precision ("float32": u u^T)."""
    if gram_precision == "float32":
        from .sphere_autograd import gram_matrix

        return gram_matrix(u)
    return apply(_ReducedPrecisionGram, u, gram_precision)[0]


class _RoundRows(torch.autograd.Function):
    """round_rows with the straight-through gradient (the tiled and sharded paths)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u: torch.Tensor, gram_precision: str) -> torch.Tensor:
        return round_rows(u, gram_precision)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def rounded_rows(u: torch.Tensor, gram_precision: str) -> torch.Tensor:
    """round_rows, differentiable (straight-through)."""
    return u if gram_precision == "float32" else apply(_RoundRows, u, gram_precision)


__all__ = [
    "GRAM_PRECISIONS",
    "round_to_tf32",
    "round_rows",
    "rounded_rows",
    "reduced_precision_gram",
    "low_precision_mm",
]
