"""The regulariser's global batch under torch.distributed: the differentiable all-gather, and the
sharded MMD in which each process computes only its own rows against the gathered batch.

Gradient convention (both paths): every process returns the same global regulariser R, and the
gradient reaching a process's own rows is W x dR/du_r (W = world size). DDP averages parameter
gradients over the W processes, (1/W) sum_r W dR/du_r du_r/dtheta = dR/dtheta: exactly the
gradient of one process holding the global batch.

- gather_rows: torch.distributed.nn.functional.all_gather, whose backward sums over all ranks the
  gradients that reach this rank's slice; every rank computes the same R, so rank r receives
  sum_r' dR/du_r = W dR/du_r. (A backward that kept only the local slice of one rank's gradient
  would give dR/dtheta / W.)
- sharded_mmd: R(u) = S(U, U) / N^2 of the global batch U (N rows), where each process computes
  S(u_r, U) of its own rows (the regulariser's FLOPs per process drop by W) and the sums are
  all-reduced. The gradient needs no collective: R is symmetric in its pairs, so
      dR/du_k = (2 / N^2) sum_j psi'(u_k . U_j) U_j = 2 dS(u_r, U)/du_r / N^2
  for the process's own rows k, returned multiplied by W (the convention above).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from .tiled import gram_series_sum

__all__ = ["world_size", "gather_rows", "gather_views", "sharded_mmd"]


def world_size() -> int:
    """The default process group's size; 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def refuse_torch_func(what: str) -> None:
    """A clear error for the multi-process paths inside a torch.func transform (their collectives
    and autograd Functions do not support torch.func; one process does)."""
    if torch._C._are_functorch_transforms_active():
        raise NotImplementedError(
            f"{what} with {world_size()} processes does not support torch.func transforms (grad, vmap, ...): "
            "use torch.autograd (loss.backward(), torch.autograd.grad) under torch.distributed, or torch.func "
            "in one process"
        )


def gather_rows(z: torch.Tensor) -> torch.Tensor:
    """z of every process of the default group, concatenated along dim 0 in rank order.

    Differentiable (see the module docstring for the gradient); z itself when torch.distributed
    is not initialised or has one process. Every process must pass the same shape.

    Args:
        z: The local rows, (n, ...).

    Returns:
        The global rows, (W n, ...).
    """
    if world_size() <= 1:
        return z
    refuse_torch_func("the all-gather of the rows (gather_distributed=True)")
    import torch.distributed.nn.functional as dist_nn

    with warnings.catch_warnings():
        # Recent torch marks it deprecated (FutureWarning on every call) in favour of the private
        # _functional_collectives; it is still the public autograd all-gather of every torch >= 2.6,
        # for gloo and nccl alike.
        warnings.filterwarnings(
            "ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated", category=FutureWarning
        )
        parts = dist_nn.all_gather(z)
    return torch.cat(parts, dim=0)


def gather_views(views: Sequence[torch.Tensor], enabled: bool) -> list[torch.Tensor]:
    """The global batch of each view, with one collective for all views (latency); the views
    themselves when not enabled or with one process."""
    if not enabled or world_size() <= 1:
        return list(views)
    stacked = torch.stack(list(views), dim=1)  # (n, V, q): gather dim 0 stays the batch
    return list(gather_rows(stacked).unbind(dim=1))  # V x (W n, q)


def _all_gather_rows(stacked: torch.Tensor) -> torch.Tensor:
    """(n, V, q) from every process, concatenated in rank order along dim 0; no autograd."""
    parts = [torch.empty_like(stacked) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, stacked.contiguous())
    return torch.cat(parts, dim=0)


class _ShardedMMD(torch.autograd.Function):
    """(u_1 .. u_V local unit rows) -> (R(U_1), .., R(U_V)), each U_v gathered over the processes;
    see the module docstring for the gradient."""

    @staticmethod
    def forward(ctx: Any, coeffs: list[float], q: int, tile: int, *views: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        gathered = _all_gather_rows(torch.stack(views, dim=1)).unbind(dim=1)
        rows = gathered[0].shape[0]
        sums, grads = [], []
        for local, full, need in zip(views, gathered, ctx.needs_input_grad[3:]):
            # S(u_r, U) and dS/du_r through the one differentiable entry point (the compiled
            # operator forms the gradient in its forward pass, autograd hands it back).
            with torch.enable_grad():
                leaf = local.detach().requires_grad_(need)
                total = gram_series_sum(leaf, full, coeffs, q, tile)
                grads.append(torch.autograd.grad(total, leaf)[0] if need else None)
            sums.append(total.detach())
        totals = torch.stack(sums)
        dist.all_reduce(totals)  # every process: the sums over all row blocks
        ctx.save_for_backward(*grads)
        ctx.scale = 2.0 * world / rows**2
        return totals / rows**2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise NotImplementedError(
                "double backward through the sharded regulariser is not implemented; "
                "pass shard_mmd=False (all-gather with autograd) for higher derivatives"
            )
        return (
            None,
            None,
            None,
            *[None if g is None else g * (grad[v] * ctx.scale) for v, g in enumerate(ctx.saved_tensors)],
        )


def sharded_mmd(views: Sequence[torch.Tensor], coeffs: Sequence[float], q: int, tile_size: int) -> list[torch.Tensor]:
    """[R(U_v)] for the local unit rows of each view (same shape on every process): each process
    computes its rows against the gathered batch. tile_size: rows per tile (the block is one tile,
    i.e. dense, when tile_size >= the global batch)."""
    refuse_torch_func("the sharded MMD (shard_mmd=True)")
    return list(_ShardedMMD.apply(list(coeffs), q, tile_size, *views).unbind(0))
