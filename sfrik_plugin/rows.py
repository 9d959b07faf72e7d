"""Per-row sums of products of 2-D tensors, accumulated in double (the compiled sfrik::row_stats,
one pass over the rows; the same sums under torch.compile where the extension is not available,
sfrik_plugin.fallback).

Why: a float32 sum of squares overflows for entries past ~1.8e19 and flushes entries below ~1e-19,
and the distance between two rows normalised, computed as 2 - 2 cos, cancels for near-equal rows
(the aim of the invariance). Double sums of the exact products have neither problem and need no
host synchronisation to detect the cases: sphere_autograd.py builds norms, unit rows and the
invariance from them."""

from __future__ import annotations

import torch

from . import fallback
from .series import _use_extension


def row_stats(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 1) float64 [x_i . x_i], or with y (x's shape) (n, 3) float64 [x_i . x_i, y_i . y_i, x_i . y_i],
    differentiable (any order) with respect to x and y. x and y: 2-D floating tensors (the caller
    checks them; the compiled op also does, naming the argument)."""
    if _use_extension(x):
        from . import ops  # loaded with the extension

        return ops.row_stats(x, y)
    return fallback.row_stats(x, y)


def row_norms(z: torch.Tensor) -> torch.Tensor:
    """||z_i|| as an (n, 1) column of z's dtype, from the double sum of squares (right for entries
    whose float32 squares overflow or flush). A norm beyond z's dtype (float32: entries near its
    maximum) is NaN rather than inf, so that z / norm is not a silent 0."""
    return finite_or_nan(row_stats(z).sqrt(), z.dtype)


def finite_or_nan(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """values (float64) in dtype, NaN where they exceed dtype's range (elementwise, no host sync)."""
    return values.masked_fill(values > torch.finfo(dtype).max, float("nan")).to(dtype)
