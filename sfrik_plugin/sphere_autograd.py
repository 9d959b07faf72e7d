"""Autograd functions for embeddings on the sphere with fewer passes over the (n, q) data than
autograd's generic rules: row normalisation, the Gram matrix, and both fused with the two-view
invariance. Every backward is written with differentiable torch ops of saved inputs and outputs,
so double backward is exact too.

Why: at n = 2048, q = 8192 the SFRIK loss is four n x n x q GEMMs plus elementwise passes over
n x q tensors; each avoided pass is ~1/20 of a GEMM on a CPU."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def row_norms(z: torch.Tensor) -> torch.Tensor:
    """||z_i|| as an (n, 1) column. The sum of squares overflows in float32 once an entry passes
    ~1.8e19 (a diverging network) although the norm itself is representable: those rows are
    recomputed from z / max|z_i|, so the loss stays right instead of turning them into 0. The
    check costs one host sync, on rows that are inf only."""
    norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    if torch.isinf(norm).any():
        overflow = torch.isinf(norm) & torch.isfinite(z).all(dim=1, keepdim=True)   # inf entries stay inf
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
    """(z1, z2) -> (u1, u2, G1, G2, mse(u1, u2)) with u = z / max(||z||, eps), G = u u^T.

    One backward for normalisation, Gram matrix and invariance together. For a view u (other
    view v, c = 2 dmse / (n q)):
        g  = S u + c (u - v) + du,   S = Gbar + Gbar^T
        dz = (g - u <g, u>) / max(||z||, eps)          (<g, u> masked to 0 below eps)
    <S u, u>_i = sum_j S_ij G_ij needs no n x q pass, so the whole gradient is ONE GEMM with its
    n x q addend fused in: dz = addmm(M, diag(1/d) S, u), M = (a u + b v + du) / d. The generic
    composition (Gram backward, mse backward, accumulation, normalisation backward) writes and
    re-reads about twice as many n x q tensors."""

    @staticmethod
    def forward(ctx, z1, z2, eps):
        ctx.set_materialize_grads(False)
        u1, u2 = (z / row_norms(z).clamp_min(eps) for z in (z1, z2))
        g1, g2 = u1 @ u1.T, u2 @ u2.T
        invariance = F.mse_loss(u1, u2)
        ctx.save_for_backward(z1, z2, u1, u2, g1, g2)
        ctx.eps = eps
        return u1, u2, g1, g2, invariance

    @staticmethod
    def backward(ctx, du1, du2, dg1, dg2, dinvariance):
        z1, z2, u1, u2, g1, g2 = ctx.saved_tensors
        n, q = u1.shape
        scale = None if dinvariance is None else dinvariance * (2.0 / (n * q))
        cross = None if scale is None else torch.linalg.vecdot(u1, u2, dim=1).unsqueeze(1)   # <u1_i, u2_i>
        grads = []
        for z, u, v, du, dg, g in ((z1, u1, u2, du1, dg1, g1), (z2, u2, u1, du2, dg2, g2)):
            if du is None and dg is None and scale is None:
                grads.append(None)
                continue
            norm = row_norms(z)
            denom = norm.clamp_min(ctx.eps)
            dot = torch.zeros_like(norm)                      # <g_i, u_i>
            coef_u = torch.zeros_like(norm)                   # M = (coef_u u + coef_v v + du) / d
            coef_v = None
            if dg is not None:
                weighted = dg * g                             # <S u, u>_i = row + column sums (G symmetric)
                dot = dot + weighted.sum(1, keepdim=True) + weighted.sum(0).unsqueeze(1)
            if scale is not None:
                # c (u - v): <., u> = c (||u||^2 - <u, v>), ||u_i||^2 = G_ii
                dot = dot + scale * (g.diagonal().unsqueeze(1) - cross)
                coef_u = coef_u + scale
                coef_v = -scale
            if du is not None:
                dot = dot + torch.linalg.vecdot(du, u, dim=1).unsqueeze(1)
            coef_u = coef_u - dot * (norm >= ctx.eps)
            addend = u * (coef_u / denom)
            if coef_v is not None:
                addend = torch.addcmul(addend, v, coef_v / denom)
            if du is not None:
                addend = addend + du / denom
            grads.append(addend if dg is None else torch.addmm(addend, (dg + dg.T) / denom, u))
        return grads[0], grads[1], None


def two_view_sphere_grams(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-12):
    """(u1, u2, G1, G2, mse(u1, u2)) of two views, fused (see _TwoViewSphereGrams)."""
    return _TwoViewSphereGrams.apply(z1, z2, eps)
