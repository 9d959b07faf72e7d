"""Autograd functions for embeddings on the sphere with fewer passes over the (n, q) data than
autograd's generic rules: row normalisation, the Gram matrix, and both fused with the two-view
invariance. Every backward is written with differentiable torch ops of saved inputs and outputs,
so double backward is exact too.

Why: at n = 2048, q = 8192 the SFRIK loss is four n x n x q GEMMs plus elementwise passes over
n x q tensors; each avoided pass is ~1/20 of a GEMM on a CPU.

Nothing here reads a value back to the host (no data-dependent branch, no .item()), so the loss
runs ahead of the host, captures in a CUDA graph and compiles with torch.compile(fullgraph=True),
and the number of kernels does not depend on the sizes: the row statistics come from one pass
(rows.row_stats, in double), whatever the rows hold."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch

from .gram import symmetric_gram, symmetric_sum
from .rows import finite_or_nan, row_norms, row_stats

# The autograd Functions here are in the setup_context form with generated vmap rules: torch.func's
# reverse-mode transforms (grad, vjp, jacrev, vmap and their compositions) work through them.
FORWARD_MODE_UNSUPPORTED = (
    "forward-mode AD (torch.func.jvp, torch.func.jacfwd, torch.func.hessian, torch.autograd.forward_ad) is not "
    "supported by sfrik_plugin's operators and losses; use reverse mode (torch.func.grad, vjp, jacrev, and "
    "jacrev(jacrev(f)) for second derivatives)"
)


def forward_mode_unsupported(ctx, *tangents):
    """The jvp of the autograd Functions: forward-mode AD is refused with a message that says so."""
    raise NotImplementedError(FORWARD_MODE_UNSUPPORTED)


_FUNCTORCH_VARIANTS: dict[type, Any] = {}


def apply(function: Any, *args: Any) -> Any:
    """function.apply(*args); inside a torch.func transform, through a subclass whose jvp refuses
    forward mode with FORWARD_MODE_UNSUPPORTED (the classes themselves define no jvp: Dynamo
    traces no autograd.Function that has one)."""
    if torch.compiler.is_compiling() or not torch._C._are_functorch_transforms_active():
        return function.apply(*args)
    if function not in _FUNCTORCH_VARIANTS:
        _FUNCTORCH_VARIANTS[function] = type(
            function.__name__, (function,), {"jvp": staticmethod(forward_mode_unsupported)}
        )
    return _FUNCTORCH_VARIANTS[function].apply(*args)


def _unit_rows_backward(z: torch.Tensor, u: torch.Tensor, du: torch.Tensor, eps: float) -> torch.Tensor:
    """dz = (du - u <du, u>) / max(||z||, eps) for u = z / max(||z||, eps) row-wise.

    Written with differentiable ops of z, u and du (the norm recomputed from z, one read-only
    pass), so that double backward is exact too. Rows shorter than eps are z / eps: their dot is
    masked to 0 (n-vector ops, no n x q pass)."""
    norm = row_norms(z)
    dot = torch.linalg.vecdot(du, u, dim=1).unsqueeze(1) * (norm >= eps)  # <du_i, u_i>
    return torch.addcmul(du, u, dot, value=-1.0) / norm.clamp_min(eps)


class _RowNormalize(torch.autograd.Function):
    """u = z / max(||z||, eps) row-wise, as F.normalize, with a fused backward
    dz = (du - u <du, u>) / ||z|| (du / eps for rows shorter than eps): F.normalize's autograd
    (division rule, then the norm's) makes about twice as many passes over the n x q data."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, eps):
        return z / row_norms(z).clamp_min(eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, eps = inputs
        ctx.save_for_backward(z, output)
        ctx.eps = eps

    @staticmethod
    def backward(ctx, du):
        z, u = ctx.saved_tensors
        return _unit_rows_backward(z, u, du, ctx.eps), None


class _GramMatrix(torch.autograd.Function):
    """G = u u^T from its upper triangle (gram.symmetric_gram: half the forward GEMM work, exactly
    symmetric) with a one-GEMM backward: dL/du = (Gbar + Gbar^T) u, where autograd's matmul
    rule spends two GEMMs (Gbar u and Gbar^T u). Exact for any Gbar (the sum is formed first,
    an n x n pass, cheap next to an n x n x q product)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u):
        return symmetric_gram(u)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return symmetric_sum(grad) @ u


def gram_matrix(u: torch.Tensor) -> torch.Tensor:
    """u u^T, exactly symmetric, from its upper triangle, differentiable with one GEMM in the
    backward (see _GramMatrix)."""
    return apply(_GramMatrix, u)


class _TwoViewSphereGrams(torch.autograd.Function):
    """(z1, z2) -> (G1, G2, mse(u1, u2)) with u = z / d, d = max(||z||, eps) row-wise, G = u u^T.

    Normalisation, Gram matrices and invariance in one function, with few passes over the n x q
    data and none of them data-dependent:
    - forward: one pass (rows.row_stats) gives, per row and in double, |z1|^2, |z2|^2 and
      <z1, z2>; from them the norms (right where float32 squares overflow) and the invariance
      |u1 - u2|^2 = |z1|^2/d1^2 + |z2|^2/d2^2 - 2 <z1, z2>/(d1 d2) (the double sums keep the digits
      that 1 - cos in float32 cancels). Then u = z / d (one pass) and G = u u^T (its upper
      triangle: half a GEMM each, gram.symmetric_gram).
    - backward, for a view u (other view u', c = 2 dmse / (n q), S = Gbar + Gbar^T):
        g = S u + c (u - u'),  dz = (g - u <g, u>) / d  (<g, u> masked to 0 below eps)
      <S u, u>_i = sum_j S_ij G_ij needs no n x q pass, so
        dz = (diag(1/d) S + diag((c - <g, u>) / d)) u - (c / d) u'
      is ONE GEMM whose addend (a row-scaled u') is fused into it (addmm_), and <S u, u> is
      rowsum(S o G) with S already formed (G symmetric). u is saved from the forward: its
      recomputation cost an n x q pass per view, and at the loss's backward the recomputed rows
      were live anyway, so saving them does not raise the peak. (Folding 1/d into the n x n matrix
      to run the GEMM on z instead underflows: S_ij / (d_i d_j) is below float32's range for norms
      near 1e19.)
    Under create_graph (double backward) the gradient is recomputed through differentiable ops
    of z instead, so higher derivatives are exact.
    The row statistics and u1, u2 are further outputs (not differentiable), so that the backward
    can use them (torch.func accepts only inputs and outputs as saved tensors)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z1, z2, eps, symmetric_grads):
        q = z1.shape[1]
        stats = row_stats(z1, z2)  # (n, 3) float64: |z1|^2, |z2|^2, <z1, z2>
        invariance, d = _invariance_of_stats(stats, eps, q, z1.dtype)
        u1, u2 = _units(z1, z2, d)
        return symmetric_gram(u1), symmetric_gram(u2), invariance, stats, u1, u2

    @staticmethod
    def setup_context(ctx, inputs, output):
        z1, z2, eps, symmetric_grads = inputs
        g1, g2, _, stats, u1, u2 = output
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(stats, u1, u2)
        ctx.eps, ctx.symmetric_grads = eps, symmetric_grads
        ctx.save_for_backward(z1, z2, stats, g1, g2, u1, u2)

    @staticmethod
    def backward(ctx, dg1, dg2, dinvariance, dstats, du1, du2):
        z1, z2, stats, g1, g2, u1, u2 = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _TwoViewSphereGrams._differentiable_backward(ctx, z1, z2, dg1, dg2, dinvariance)
        n, q = z1.shape
        dtype = z1.dtype
        d64, squares64, cross64 = _unit_products(stats, ctx.eps)
        squares, cross = squares64.to(dtype), cross64.to(dtype)  # |u|^2, <u1, u2>
        inverse = finite_or_nan(1.0 / d64, dtype)  # (n, 2)
        mask = (stats[:, :2].sqrt() >= ctx.eps).to(dtype)
        scale = None if dinvariance is None else dinvariance * (2.0 / (n * q))
        grads: list[torch.Tensor | None] = []
        for k, (u, other, dg, g) in enumerate(((u1, u2, dg1, g1), (u2, u1, dg2, g2))):
            if dg is None and scale is None:
                grads.append(None)
                continue
            inv, m = inverse[:, k : k + 1], mask[:, k : k + 1]
            dot = torch.zeros_like(inv)  # <g_i, u_i>
            diagonal = torch.zeros_like(inv)  # coefficient of u_i itself
            # S = dg + dg^T, or with symmetric_grads 2 dg (the same bits), the 2 folded into the row
            # scaling: no n x n pass with a transposed read. <S u, u>_i = (S o G) 1 before the scaling.
            matrix = None if dg is None or ctx.symmetric_grads else symmetric_sum(dg)
            if dg is not None:
                twice = 2.0 if matrix is None else 1.0
                dot = dot + twice * torch.linalg.vecdot(dg if matrix is None else matrix, g, dim=1).unsqueeze(1)
                matrix = dg * (2.0 * inv) if matrix is None else matrix.mul_(inv)  # diag(1/d) S
            if scale is not None:
                dot = dot + scale * (squares[:, k : k + 1] - cross)  # <c (u - u'), u>
                diagonal = diagonal + scale
            diagonal = (diagonal - dot * m) * inv
            if matrix is None:
                assert scale is not None  # (both None was skipped above)
                grads.append(u * diagonal - other * (scale * inv))
                continue
            matrix.diagonal().add_(diagonal.squeeze(1))
            if scale is None:
                grads.append(matrix @ u)
            else:  # in place into the addend: addmm would first copy it into its result (an n x q pass)
                grads.append((other * (-scale * inv)).addmm_(matrix, u))
        return grads[0], grads[1], None, None

    @staticmethod
    def _differentiable_backward(ctx, z1, z2, dg1, dg2, dinvariance):
        # The same gradient as differentiable torch ops of z and of the upstream gradients (for
        # double backward, and inside torch.func, which runs every backward differentiably):
        # du = S u + c (u - u'), then the normalisation's backward.
        n, q = z1.shape
        units = [z / row_norms(z).clamp_min(ctx.eps) for z in (z1, z2)]
        grads: list[torch.Tensor | None] = []
        for k, (z, dg) in enumerate(((z1, dg1), (z2, dg2))):
            if not ctx.needs_input_grad[k] or (dg is None and dinvariance is None):
                grads.append(None)
                continue
            u, other = units[k], units[1 - k]
            du = torch.zeros_like(u) if dg is None else symmetric_sum(dg) @ u
            if dinvariance is not None:
                du = du + (u - other) * (dinvariance * (2.0 / (n * q)))
            grads.append(_unit_rows_backward(z, u, du, ctx.eps))
        return grads[0], grads[1], None, None


def _unit_products(stats: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From row_stats(z1, z2), in float64: d = max(||z||, eps) (n, 2), |u|^2 (n, 2; 1, or less
    below eps) and <u1, u2> (n, 1), for u = z / d."""
    d = stats[:, :2].sqrt().clamp_min(eps)
    return d, stats[:, :2] / d.square(), stats[:, 2:] / (d[:, :1] * d[:, 1:])


def _invariance_of_stats(
    stats: torch.Tensor, eps: float, q: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mse(u1, u2) in dtype, d = max(||z||, eps) as float64 (n, 2)) from row_stats(z1, z2)."""
    d, squares, cross = _unit_products(stats, eps)
    distance = (squares.sum(1, keepdim=True) - 2 * cross).clamp_min(0)  # |u1 - u2|^2
    return (distance.sum() / (stats.shape[0] * q)).to(dtype), d


class _UnitInvariance(torch.autograd.Function):
    """mse(u1, u2) of unit rows u = z / max(||z||, eps) already computed: the value from the double
    row sums of z1, z2 (as two_view_sphere_grams computes it: no cancellation for near-equal rows),
    the gradient mse's, with respect to u1 and u2 (one pass; it reaches z through the
    normalisation's own backward). Written with differentiable ops: double backward is exact."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u1, u2, z1, z2, eps):
        return _invariance_of_stats(row_stats(z1, z2), eps, z1.shape[1], u1.dtype)[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:2])

    @staticmethod
    def backward(ctx, grad):
        u1, u2 = ctx.saved_tensors
        difference = (u1 - u2) * (grad * (2.0 / u1.numel()))
        return difference, -difference, None, None, None


def unit_invariance(
    u1: torch.Tensor, u2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """mse(u1, u2) for the unit rows u of z (to_sphere), with the numerics of two_view_sphere_grams
    (see _UnitInvariance)."""
    return apply(_UnitInvariance, u1, u2, z1, z2, eps)


def _units(z1: torch.Tensor, z2: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z1 / d[:, 0] and z2 / d[:, 1] row-wise (d: float64 (n, 2)), one pass each; a norm beyond
    z's dtype gives NaN rows, not silent zeros."""
    divisor = finite_or_nan(d, z1.dtype)
    return z1 / divisor[:, :1], z2 / divisor[:, 1:]


def two_view_sphere_grams(
    z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-12, *, symmetric_grads: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G1, G2, mse(u1, u2)) of two views' rows normalised, fused (see _TwoViewSphereGrams).

    symmetric_grads=True promises that the gradients reaching G1 and G2 are symmetric matrices, as
    they are when each G only goes through a function applied elementwise and then reduced (every
    regulariser of the losses: G is exactly symmetric, so f(G) is): the backward then takes
    Gbar + Gbar^T as 2 Gbar (the same values) without the n x n pass that forms it. A wrong promise
    gives a wrong gradient."""
    g1, g2, invariance, *_ = apply(_TwoViewSphereGrams, z1, z2, eps, symmetric_grads)
    return g1, g2, invariance


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
    return apply(_RowNormalize, as_compute_dtype(z), 1e-12)
