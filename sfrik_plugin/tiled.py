"""The MMD regulariser's sum over the Gram matrix in tiles that never hold the n x n matrix.

    S(x, y) = sum_{i,j} psi(x_i . y_j),  psi = sum_k coeffs[k] P_k(q; .)

gram_series_sum computes S and its gradients through the compiled sfrik::gram_series_sum, or a
Python loop over the same tiles where the extension is missing. With y = None (y = x) only tiles
i <= j are computed. use_tiled decides, for mmd_impl="auto", when the tiles pay off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import fallback
from .series import _use_extension

# Rows per tile: the tile GEMMs stay efficient and two float32 tiles (the Gram tile and psi' of
# it) take 2 x 1 MiB on a CPU, 2 x 64 MiB on a GPU. CPU: 384-1024 within 3% of each other at
# n = 4096, q = 8192, 512 best on the forward pass (sfrik-bench tiled --tiles).
DEFAULT_TILE_SIZE = {"cpu": 512, "cuda": 4096}
# "auto" goes tiled at this many rows whatever q: the dense path's n x n float32 matrices (several
# live at once) would take 1 GiB each.
AUTO_TILED_ROWS = 16384
# "auto" goes tiled once q <= rows * AUTO_TILED_Q_PER_ROW (and the batch spans more than one tile).
# Since the dense path computes only the upper triangle of each Gram matrix (issue 32) it measured
# faster than the tiles on a CPU from q = n / 2 up (1.2-1.5x at n = 2048, q = 2048-8192, and at
# n = 4096, q = 2048; equal at n = 2048, q = 1024): up to CPU_DENSE_MEASURED_ROWS rows the CPU takes
# 0.5. Beyond them, and on other devices (not re-measured), the earlier rule: q <= 4 n.
AUTO_TILED_Q_PER_ROW = 4.0
CPU_AUTO_TILED_Q_PER_ROW, CPU_DENSE_MEASURED_ROWS = 0.5, 4096


def default_tile_size(device: torch.device) -> int:
    return DEFAULT_TILE_SIZE.get(device.type, 1024)


def use_tiled(mmd_impl: str, rows: int, q: int, tile_size: int, device: torch.device | None = None) -> bool:
    """mmd_impl "auto": tiled once the Gram matrix spans more than one tile and the n x n work is not
    dwarfed by the n x q passes (q <= n / 2 on a CPU up to CPU_DENSE_MEASURED_ROWS rows, q <= 4 n
    otherwise; device None: a CPU), where the tiled path measured as fast as the fused dense
    two-view path or faster (sfrik-bench tiled; e.g. 2.4x at n = 2048, q = 256). Always tiled from
    AUTO_TILED_ROWS rows on (memory)."""
    if mmd_impl != "auto":
        return mmd_impl == "tiled"
    cpu = device is None or device.type == "cpu"
    per_row = CPU_AUTO_TILED_Q_PER_ROW if cpu and rows <= CPU_DENSE_MEASURED_ROWS else AUTO_TILED_Q_PER_ROW
    return rows >= AUTO_TILED_ROWS or (rows > tile_size and q <= per_row * rows)


def _gram_series_sum_python(
    x: torch.Tensor, y: torch.Tensor | None, coeffs: Sequence[float], q: int, tile: int
) -> torch.Tensor:
    """S of the operator in plain PyTorch over the same tiles (each tile's sum through the compiled
    fallback, sfrik_plugin.fallback): the fallback without the compiled extension (warned).
    Differentiable by autograd, which keeps every tile for the backward, so
    the fallback holds O(n^2) memory like the dense path. Numerics of the compiled operator under
    autocast too: its float32 autocast rule leaves float32 and float64 rows as they are and runs
    the tile GEMMs in their precision (never in autocast's float16/bfloat16)."""
    symmetric = y is None
    other = x if y is None else y
    total = x.new_zeros((), dtype=torch.float64)
    with torch.autocast(x.device.type, enabled=False):
        for i0 in range(0, x.shape[0], tile):
            for j0 in range(i0 if symmetric else 0, other.shape[0], tile):
                block = fallback.series_reduce(x[i0 : i0 + tile] @ other[j0 : j0 + tile].T, list(coeffs), q, False)
                total = total + block * (2.0 if symmetric and j0 != i0 else 1.0)
    return total.to(x.dtype)


def gram_series_sum(
    x: torch.Tensor, y: torch.Tensor | None, coeffs: Sequence[float], q: int, tile_size: int
) -> torch.Tensor:
    """S = sum_{i,j} psi(x_i . y_j) (y = None: y = x, symmetric tiles), differentiable in x and y.
    Arguments are checked by the callers (float32/float64 2-D rows, coefficients, q, tile)."""
    if not _use_extension(x):
        return _gram_series_sum_python(x, y, coeffs, q, tile_size)
    need_x = x.requires_grad and torch.is_grad_enabled()
    need_y = y is not None and y.requires_grad and torch.is_grad_enabled()
    from . import ops  # loaded with the extension

    total, _, _ = ops.gram_series_sum(x, y, list(coeffs), q, tile_size, need_x, need_y)
    return total


__all__ = [
    "gram_series_sum",
    "default_tile_size",
    "use_tiled",
    "DEFAULT_TILE_SIZE",
    "AUTO_TILED_ROWS",
    "AUTO_TILED_Q_PER_ROW",
    "CPU_AUTO_TILED_Q_PER_ROW",
    "CPU_DENSE_MEASURED_ROWS",
]
