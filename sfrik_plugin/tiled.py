"""The MMD regulariser without the n x n matrix, and sharded over processes.

    S(x, y) = sum_{i,j} psi(x_i . y_j),  psi = sum_k coeffs[k] P_k(dim; .)

- gram_series_sum: S and its gradients computed in tiles of the Gram matrix (the compiled
  sfrik::gram_series_sum; a Python loop over the same tiles when the extension is missing).
  With y = None (y = x) only tiles i <= j are computed.
- sharded_mmd: under torch.distributed, R(u) = S(U, U) / N^2 of the global batch U (N rows) where
  each process computes only its own rows against the gathered batch, S(u_r, U): the regulariser's
  FLOPs per process drop by the world size W. The value is all-reduced, so every process returns
  the same R. The gradient needs no collective: R is symmetric in its pairs, so
      dR/du_k = (2 / N^2) sum_j psi'(u_k . U_j) U_j
  for the process's own rows k, which is 2 x dS(u_r, U)/du_r / N^2. It is returned multiplied by W,
  the convention of losses.gather_rows: DDP averages parameter gradients over the W processes,
  which then equal those of one process computing R on the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from .reference import legendre_series_reference
from .series import _use_extension, check_int

# Rows per tile: the tile GEMMs stay efficient and two float32 tiles (the Gram tile and psi' of
# it) take 2 x 1 MiB on a CPU, 2 x 64 MiB on a GPU. CPU: 384-1024 within 3% of each other at
# n = 4096, q = 8192, 512 best on the forward pass (sfrik-bench tiled --tiles).
DEFAULT_TILE_SIZE = {"cpu": 512, "cuda": 4096}
# "auto" goes tiled at this many rows whatever q: the dense path's n x n float32 matrices (several
# live at once) would take 1 GiB each.
AUTO_TILED_ROWS = 16384
IMPLS = ("auto", "dense", "tiled")


def default_tile_size(device: torch.device) -> int:
    return DEFAULT_TILE_SIZE.get(device.type, 1024)


def check_impl(impl) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def check_tile_size(tile_size) -> int | None:
    """None (the device's default, chosen when the rows are known) or an integer >= 1."""
    return None if tile_size is None else check_int(tile_size, "tile_size", 1)


def check_shard(shard) -> bool:
    if not isinstance(shard, bool):
        raise TypeError(f"shard must be a bool, got {shard!r}")
    return shard


def use_tiled(impl: str, rows: int, q: int, tile_size: int) -> bool:
    """impl "auto": tiled once the Gram matrix spans more than one tile and the n x n work is not
    dwarfed by the n x q passes (4 n >= q): there the tiled path measured as fast as the fused dense
    two-view path or faster (2.4x at n = 2048, q = 256), while at n = 1024, q = 8192 the dense path,
    which never writes the normalised rows, was 1.2x faster (sfrik-bench tiled). Always tiled from
    AUTO_TILED_ROWS rows on (memory)."""
    if impl != "auto":
        return impl == "tiled"
    return rows >= AUTO_TILED_ROWS or (rows > tile_size and 4 * rows >= q)


def _gram_series_sum_python(x, y, coeffs, dim, tile):
    """S of the operator in plain PyTorch over the same tiles: the fallback without the compiled
    extension (warned). Differentiable by autograd, which keeps every tile for the backward, so
    the fallback holds O(n^2) memory like the dense path. Numerics of the compiled operator under
    autocast too: its float32 autocast rule leaves float32 and float64 rows as they are and runs
    the tile GEMMs in their precision (never in autocast's float16/bfloat16)."""
    symmetric = y is None
    other = x if symmetric else y
    total = x.new_zeros((), dtype=torch.float64)
    with torch.autocast(x.device.type, enabled=False):
        for i0 in range(0, x.shape[0], tile):
            for j0 in range(i0 if symmetric else 0, other.shape[0], tile):
                block = legendre_series_reference(x[i0 : i0 + tile] @ other[j0 : j0 + tile].T, coeffs, dim).sum()
                total = total + block * (2.0 if symmetric and j0 != i0 else 1.0)
    return total.to(x.dtype)


def gram_series_sum(
    x: torch.Tensor, y: torch.Tensor | None, coeffs: Sequence[float], dim: int, tile_size: int
) -> torch.Tensor:
    """S = sum_{i,j} psi(x_i . y_j) (y = None: y = x, symmetric tiles), differentiable in x and y.
    Arguments are checked by the callers (float32/float64 2-D rows, coefficients, dim, tile)."""
    if not _use_extension(x):
        return _gram_series_sum_python(x, y, coeffs, dim, tile_size)
    need_x = x.requires_grad and torch.is_grad_enabled()
    need_y = y is not None and y.requires_grad and torch.is_grad_enabled()
    total, _, _ = torch.ops.sfrik.gram_series_sum(x, y, list(coeffs), dim, tile_size, need_x, need_y)
    return total


# ---------------------------------------------------------------------------------------------
# Sharded across processes


def _all_gather_rows(stacked: torch.Tensor) -> torch.Tensor:
    """(n, V, q) from every process, concatenated in rank order along dim 0; no autograd."""
    parts = [torch.empty_like(stacked) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, stacked.contiguous())
    return torch.cat(parts, dim=0)


class _ShardedMMD(torch.autograd.Function):
    """(u_1 .. u_V local unit rows) -> (R(U_1), .., R(U_V)), each U_v gathered over the processes;
    see the module docstring for the gradient."""

    @staticmethod
    def forward(ctx, coeffs, dim, tile, *views):
        world = dist.get_world_size()
        gathered = _all_gather_rows(torch.stack(views, dim=1)).unbind(dim=1)
        rows = gathered[0].shape[0]
        sums, grads = [], []
        for local, full, need in zip(views, gathered, ctx.needs_input_grad[3:]):
            # S(u_r, U) and dS/du_r through the one differentiable entry point (the compiled
            # operator forms the gradient in its forward pass, autograd hands it back).
            with torch.enable_grad():
                leaf = local.detach().requires_grad_(need)
                total = gram_series_sum(leaf, full, coeffs, dim, tile)
                grads.append(torch.autograd.grad(total, leaf)[0] if need else None)
            sums.append(total.detach())
        totals = torch.stack(sums)
        dist.all_reduce(totals)  # every process: the sums over all row blocks
        ctx.save_for_backward(*grads)
        ctx.scale = 2.0 * world / rows**2
        return totals / rows**2

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            raise NotImplementedError(
                "double backward through the sharded regulariser is not implemented; "
                "pass shard=False (all-gather with autograd) for higher derivatives"
            )
        return (
            None,
            None,
            None,
            *[None if g is None else g * (grad[v] * ctx.scale) for v, g in enumerate(ctx.saved_tensors)],
        )


def sharded_mmd(views: Sequence[torch.Tensor], coeffs: Sequence[float], dim: int, tile_size: int) -> list[torch.Tensor]:
    """[R(U_v)] for the local unit rows of each view (same shape on every process): each process
    computes its rows against the gathered batch. tile_size: rows per tile (the block is one tile,
    i.e. dense, when tile_size >= the global batch)."""
    return list(_ShardedMMD.apply(list(coeffs), dim, tile_size, *views).unbind(0))


__all__ = [
    "gram_series_sum",
    "sharded_mmd",
    "default_tile_size",
    "check_impl",
    "check_tile_size",
    "check_shard",
    "use_tiled",
    "IMPLS",
    "DEFAULT_TILE_SIZE",
]
