"""Autograd functions for embeddings on the sphere with fewer passes over the (n, q) data than
autograd's generic rules: row normalisation, the Gram matrix, and both fused with the two-view
invariance. Every backward is written with differentiable torch ops of saved inputs and outputs,
so double backward is exact too.

Why: at n = 2048, q = 8192 the SFRIK loss is four n x n x q GEMMs plus elementwise passes over
n x q tensors; each avoided pass is ~1/20 of a GEMM on a CPU."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F


def row_norms(z: torch.Tensor) -> torch.Tensor:
    """||z_i|| as an (n, 1) column. The sum of squares overflows in float32 once an entry passes
    ~1.8e19 (a diverging network) although the norm itself is representable: those rows are
    recomputed from z / max|z_i|, so the loss stays right instead of turning them into 0. The
    check costs one host sync, on rows that are inf only."""
    norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    if torch.isinf(norm).any():
        overflow = torch.isinf(norm) & torch.isfinite(z).all(dim=1, keepdim=True)  # inf entries stay inf
        scale = z.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
        norm = torch.where(overflow, torch.linalg.vector_norm(z / scale, dim=1, keepdim=True) * scale, norm)
    return norm


class _RowNormalize(torch.autograd.Function):
    """u = z / max(||z||, eps) row-wise, as F.normalize, with a fused backward
    dz = (du - u <du, u>) / ||z|| (du / eps for rows shorter than eps): F.normalize's autograd
    (division rule, then the norm's) makes about twice as many passes over the n x q data."""

    @staticmethod
    def forward(ctx, z, eps):
        u = z / row_norms(z).clamp_min(eps)
        ctx.save_for_backward(z, u)
        ctx.eps = eps
        return u

    @staticmethod
    def backward(ctx, du):
        # Written with differentiable ops of z and of the output u (the norm recomputed from z,
        # one read-only pass), so that double backward is exact too.
        # Rows shorter than eps are z / eps: their dot is masked to 0 (n-vector ops, no n x q pass).
        z, u = ctx.saved_tensors
        norm = row_norms(z)
        dot = torch.linalg.vecdot(du, u, dim=1).unsqueeze(1) * (norm >= ctx.eps)  # <du_i, u_i>
        return torch.addcmul(du, u, dot, value=-1.0) / norm.clamp_min(ctx.eps), None


class _GramMatrix(torch.autograd.Function):
    """G = u u^T with a one-GEMM backward: dL/du = (Gbar + Gbar^T) u, where autograd's matmul
    rule spends two GEMMs (Gbar u and Gbar^T u). Exact for any Gbar (the sum is formed first,
    an n x n pass, cheap next to an n x n x q product)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return u @ u.T

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return (grad + grad.T) @ u


def gram_matrix(u: torch.Tensor) -> torch.Tensor:
    """u u^T, differentiable with one GEMM in the backward (see _GramMatrix)."""
    return _GramMatrix.apply(u)


class _TwoViewSphereGrams(torch.autograd.Function):
    """(z1, z2) -> (G1, G2, mse(u1, u2)) with u = z / d, d = max(||z||, eps) row-wise, G = u u^T.

    Normalisation, Gram matrices and invariance in one function whose passes over the n x q data
    are few: on a 2-core CPU the SFRIK loss at n = 2048, q = 8192 is memory-bound beyond its four
    GEMMs, and each pass over an n x q tensor costs ~1/30 of a GEMM.
    - forward: u is never written. G = diag(1/d) (z z^T) diag(1/d) (n x n scaling), and
      |u1_i - u2_i|^2 in cache-sized row blocks (one pass over z1 and z2).
    - backward, for a view z (other view z', c = 2 dmse / (n q), S = Gbar + Gbar^T):
        g = S u + c (u - u'),  dz = (g - u <g, u>) / d  (<g, u> masked to 0 below eps)
      <S u, u>_i = sum_j S_ij G_ij needs no n x q pass, so
        dz = (diag(1/d) S diag(1/d) + diag((c - <g, u>) / d^2)) z - (c / (d d')) z'
      is ONE GEMM whose addend (a row-scaled z') is fused into it (addmm).
    Under create_graph (double backward) the gradient is recomputed through differentiable ops
    of z instead, so higher derivatives are exact."""

    @staticmethod
    def forward(ctx, z1, z2, eps):
        ctx.set_materialize_grads(False)
        n, q = z1.shape
        norms = [row_norms(z) for z in (z1, z2)]
        ctx.eps = eps
        # z z^T overflows once a row norm passes sqrt(max) (float32: 1.8e19, a diverging network):
        # then normalise first and let the backward recompute through autograd (one host sync).
        ctx.normalised_first = bool(torch.stack([r.max() for r in norms]).max() > _overflow_norm(z1.dtype))
        if ctx.normalised_first:
            ctx.save_for_backward(z1, z2)
            u1, u2 = (z / r.clamp_min(eps) for z, r in zip((z1, z2), norms))
            return u1 @ u1.T, u2 @ u2.T, F.mse_loss(u1, u2)
        inverse = [1.0 / r.clamp_min(eps) for r in norms]
        grams = []
        for z, inv in zip((z1, z2), inverse):
            g = z @ z.T
            grams.append(g.mul_(inv).mul_(inv.T))
        distance = _row_distances_squared(z1, z2, inverse[0], inverse[1])  # |u1_i - u2_i|^2
        squares = [(r * inv).square() for r, inv in zip(norms, inverse)]  # |u_i|^2
        cross = (squares[0] + squares[1] - distance) / 2  # <u1_i, u2_i>
        invariance = distance.sum() / (n * q)
        ctx.save_for_backward(z1, z2, *grams, *norms, cross)
        return grams[0], grams[1], invariance

    @staticmethod
    def backward(ctx, dg1, dg2, dinvariance):
        if ctx.normalised_first or torch.is_grad_enabled():
            z1, z2 = ctx.saved_tensors[:2]
            return _TwoViewSphereGrams._differentiable_backward(ctx, z1, z2, dg1, dg2, dinvariance)
        z1, z2, g1, g2, r1, r2, cross = ctx.saved_tensors
        n, q = z1.shape
        scale = None if dinvariance is None else dinvariance * (2.0 / (n * q))
        inverse = [1.0 / r.clamp_min(ctx.eps) for r in (r1, r2)]
        grads: list[torch.Tensor | None] = []
        for z, other, r, inv, inv_other, dg, g in (
            (z1, z2, r1, inverse[0], inverse[1], dg1, g1),
            (z2, z1, r2, inverse[1], inverse[0], dg2, g2),
        ):
            if dg is None and scale is None:
                grads.append(None)
                continue
            dot = torch.zeros_like(r)  # <g_i, u_i>
            diagonal = torch.zeros_like(r)  # coefficient of z_i itself
            if dg is not None:
                weighted = dg * g  # <S u, u>_i = row + column sums (G symmetric)
                dot = dot + weighted.sum(1, keepdim=True) + weighted.sum(0).unsqueeze(1)
            if scale is not None:
                dot = dot + scale * ((r * inv).square() - cross)  # <c (u - u'), u>
                diagonal = diagonal + scale
            diagonal = (diagonal - dot * (r >= ctx.eps)) * inv.square()
            if dg is None:
                grads.append(z * diagonal - other * (scale * inv * inv_other))
                continue
            matrix = (dg + dg.T).mul_(inv).mul_(inv.T)
            matrix.diagonal().add_(diagonal.squeeze(1))
            if scale is None:
                grads.append(matrix @ z)
            else:
                grads.append(torch.addmm(other * (-scale * inv * inv_other), matrix, z))
        return grads[0], grads[1], None

    @staticmethod
    def _differentiable_backward(ctx, z1, z2, dg1, dg2, dinvariance):
        # The same gradient through differentiable torch ops of z (for double backward).
        with torch.enable_grad():
            u1, u2 = (z / row_norms(z).clamp_min(ctx.eps) for z in (z1, z2))
            pairs = [
                (o, d)
                for o, d in ((u1 @ u1.T, dg1), (u2 @ u2.T, dg2), (F.mse_loss(u1, u2), dinvariance))
                if d is not None and o.requires_grad
            ]
            outputs, upstream = zip(*pairs)
            wanted = [z for z, need in zip((z1, z2), ctx.needs_input_grad[:2]) if need]
            found = iter(torch.autograd.grad(outputs, wanted, upstream, create_graph=True, allow_unused=True))
            return (*(next(found) if need else None for need in ctx.needs_input_grad[:2]), None)


def _row_distances_squared(z1, z2, inverse1, inverse2, chunk_bytes: int = 1 << 20):
    """|z1_i * inverse1_i - z2_i * inverse2_i|^2 as an (n, 1) column, computed directly (1 - cos
    from a dot product cancels: near-equal views, the aim of the invariance, would read 0). Row
    blocks of ~1 MiB keep the scaled temporaries in cache: one pass over z1 and z2 from memory."""
    rows = max(1, chunk_bytes // (z1.shape[1] * z1.element_size()))
    parts = []
    for start in range(0, z1.shape[0], rows):
        block = slice(start, start + rows)
        difference = torch.addcmul(z1[block] * inverse1[block], z2[block], inverse2[block], value=-1.0)
        parts.append(torch.linalg.vector_norm(difference, dim=1, keepdim=True).square())
    return torch.cat(parts) if parts else z1.new_zeros(0, 1)


def _overflow_norm(dtype: torch.dtype) -> float:
    return math.sqrt(torch.finfo(dtype).max) / 2


def two_view_sphere_grams(
    z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G1, G2, mse(u1, u2)) of two views' rows normalised, fused (see _TwoViewSphereGrams)."""
    return _TwoViewSphereGrams.apply(z1, z2, eps)


# ---------------------------------------------------------------------------------------------
# The losses' compute region: float32 (float64 stays float64), autocast off


@contextlib.contextmanager
def autocast_disabled(device_type: str) -> Iterator[None]:
    """torch.autocast(device_type, enabled=False), or nothing for device types autocast does not
    know (there is nothing to disable there)."""
    ctx: AbstractContextManager[object]
    try:
        ctx = torch.autocast(device_type, enabled=False)
    except RuntimeError:
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def as_compute_dtype(z: torch.Tensor) -> torch.Tensor:
    """float32 for half inputs (float64 stays float64). Used inside autocast_disabled: 1/(q-1) at
    q = 32768 is subnormal in float16, and the Gram entries of a long float16 dot product lose
    the digits psi needs."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Rows of z L2-normalised (F.normalize's eps), in the compute dtype (as_compute_dtype)."""
    return _RowNormalize.apply(as_compute_dtype(z), 1e-12)
