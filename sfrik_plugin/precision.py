"""The precision of the regulariser's Gram matrix (option gram_precision of the SFRIK losses).

    "float32"  the Gram matrix of the unit rows in their compute type (float32; float64 stays
               float64): the default, see BENCHMARKS.md ("Gram precision")
    "tf32"     the rows rounded to TF32 (10 explicit mantissa bits) for the product
    "bf16"     the rows rounded to bfloat16 (7 bits)
    "fp16"     the rows rounded to float16 (10 bits, 5 exponent bits)

In every reduced mode the products of rounded rows accumulate in float32 and the Gram matrix is
kept in float32 (never rounded to the low type itself, unlike torch.mm on half tensors or under
autocast, which round every Gram entry too), and psi and its derivative are evaluated in float32.
The gradient flows through the rounding unchanged (straight-through): dR/du = (S + S^T) r(u) with
S = dR/dG, one float32 GEMM.

Where it runs: on CUDA, the dense path's Gram product is a real reduced-precision GEMM (TF32 tensor
cores, or bfloat16/float16 inputs with float32 accumulation and output through torch.mm's
out_dtype); on a CPU, and in the tiled and sharded paths (whose tile GEMMs are float32 by design,
cpp/gram_series_tiled.cpp), the rows are rounded and the product is a float32 GEMM of the rounded
values: the same numerics (a product of two 11-bit mantissas is exact in float32), not the speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

GRAM_PRECISIONS = ("float32", "tf32", "bf16", "fp16")
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


def _rounded_product(r: torch.Tensor, gram_precision: str) -> torch.Tensor:
    """r r^T for rows r already rounded to gram_precision, in r's dtype."""
    if r.device.type == "cuda" and r.dtype == torch.float32:
        if gram_precision == "tf32":
            with _tf32_matmul():
                return r @ r.T
        low = r.to(_LOW_TYPES[gram_precision])
        return torch.mm(low, low.T, out_dtype=torch.float32)
    return r @ r.T


class _ReducedPrecisionGram(torch.autograd.Function):
    """G = r(u) r(u)^T (see the module docstring), with the straight-through float32 backward
    (S + S^T) r(u) (one GEMM, as sphere_autograd.gram_matrix)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, gram_precision: str) -> torch.Tensor:
        r = round_rows(u, gram_precision)
        ctx.save_for_backward(r)
        return _rounded_product(r, gram_precision)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (r,) = ctx.saved_tensors
        return (grad + grad.T) @ r, None


def reduced_precision_gram(u: torch.Tensor, gram_precision: str) -> torch.Tensor:
    """The Gram matrix of the rows u with the product in gram_precision ("float32": u u^T)."""
    if gram_precision == "float32":
        from .sphere_autograd import gram_matrix

        return gram_matrix(u)
    return _ReducedPrecisionGram.apply(u, gram_precision)


class _RoundRows(torch.autograd.Function):
    """round_rows with the straight-through gradient (the tiled and sharded paths)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, gram_precision: str) -> torch.Tensor:
        return round_rows(u, gram_precision)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def rounded_rows(u: torch.Tensor, gram_precision: str) -> torch.Tensor:
    """round_rows, differentiable (straight-through)."""
    return u if gram_precision == "float32" else _RoundRows.apply(u, gram_precision)


__all__ = [
    "GRAM_PRECISIONS",
    "round_to_tf32",
    "round_rows",
    "rounded_rows",
    "reduced_precision_gram",
]
