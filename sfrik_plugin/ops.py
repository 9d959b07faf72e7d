"""Python-side registrations of the compiled sfrik:: operators: fake (meta) kernels for
torch.compile, autograd formulas (any order: each derivative is the same fused operator with
order + 1), vmap rules, and autocast to float32. `import sfrik_plugin` imports this module when the
compiled extension loads; importing it directly loads the extension first.

torch.func: torch.library.register_autograd wraps a formula in an autograd.Function without
setup_context, which torch.func's grad transforms refuse. So each formula is also an
autograd.Function in the setup_context form (generated vmap rule), and the Python entry points at
the end of this module (what series.py, rows.py and tiled.py call) go through it inside a torch.func
transform: the reverse-mode transforms (grad, vjp, jacrev, vmap and their compositions) work on the
package's operators and losses; forward mode (jvp, jacfwd, hessian) is refused with a message that
says so. Outside torch.func nothing changes (the same operator calls, torch.compile included).
torch.ops.sfrik.* called directly have vmap rules, but their gradient under torch.func is PyTorch's
refusal: call them through the entry points here (sfrik_plugin.ops.legendre_series, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import _extension

if _extension._C is None:
    raise ImportError(
        f"sfrik_plugin.ops registers the compiled operators, and the extension sfrik_plugin._C did not "
        f"load: {_extension.extension_info()['error']}"
    )

_series = torch.ops.sfrik.legendre_series.default
_reduce = torch.ops.sfrik.legendre_series_reduce.default
_backward = torch.ops.sfrik.legendre_series_backward.default
_value_and_grad = torch.ops.sfrik.legendre_series_value_and_grad.default
_row_stats = torch.ops.sfrik.row_stats.default
_symmetrize = torch.ops.sfrik.symmetrize.default


# Fake kernels: the elementwise ops return a tensor laid out like torch.empty_like(t), which
# is what the C++ kernels allocate; the reduction returns a 0-dim tensor of t's dtype.
@torch.library.register_fake("sfrik::legendre_series")
def _series_fake(t, coeffs, q):
    return torch.empty_like(t)


@torch.library.register_fake("sfrik::legendre_series_reduce")
def _reduce_fake(t, coeffs, q, mean):
    return t.new_empty(())


@torch.library.register_fake("sfrik::legendre_series_backward")
def _backward_fake(grad, t, coeffs, q, order=1):
    torch._check(grad.dtype == t.dtype, lambda: "sfrik: grad must have the dtype of t")
    return torch.empty_like(t)


def _save_t(ctx, inputs, output):
    t, coeffs, q = inputs[:3]
    ctx.save_for_backward(t)
    ctx.coeffs, ctx.q = coeffs, q
    ctx.mean = inputs[3] if len(inputs) > 3 else None


def _series_grad(ctx, grad):
    (t,) = ctx.saved_tensors
    return legendre_series_backward(grad, t, ctx.coeffs, ctx.q, 1), None, None


def _reduce_grad(ctx, grad):
    (t,) = ctx.saved_tensors
    # grad stays a 0-dim tensor: the kernel broadcasts it without an n x n buffer.
    scale = grad / t.numel() if ctx.mean else grad
    return legendre_series_backward(scale, t, ctx.coeffs, ctx.q, 1), None, None, None


def _backward_setup(ctx, inputs, output):
    grad, t, coeffs, q, order = inputs
    ctx.save_for_backward(grad, t)
    ctx.coeffs, ctx.q, ctx.order = coeffs, q, order


def _backward_grad(ctx, gg):
    # out = grad * psi^(order)(t): d/dgrad = psi^(order)(t), d/dt = grad * psi^(order+1)(t).
    grad, t = ctx.saved_tensors
    d_grad = d_t = None
    if ctx.needs_input_grad[0]:
        d_grad = legendre_series_backward(gg, t, ctx.coeffs, ctx.q, ctx.order)
        if grad.shape != t.shape:
            d_grad = d_grad.sum().reshape(grad.shape)
    if ctx.needs_input_grad[1]:
        d_t = legendre_series_backward(gg * grad, t, ctx.coeffs, ctx.q, ctx.order + 1)
    return d_grad, d_t, None, None, None


# ---------------------------------------------------------------------------------------------
# Autograd registrations that torch.func accepts


FORWARD_MODE_UNSUPPORTED = (
    "forward-mode AD (torch.func.jvp, torch.func.jacfwd, torch.func.hessian, torch.autograd.forward_ad) is not "
    "supported by sfrik_plugin's operators and losses; use reverse mode (torch.func.grad, vjp, jacrev, and "
    "jacrev(jacrev(f)) for second derivatives)"
)


def _transforms_active() -> bool:
    """Inside a torch.func transform (grad, vjp, jacrev, vmap, ...), in eager mode."""
    return not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active()


def _register_autograd(name: str, backward: Callable[..., Any], setup_context: Callable[..., None]) -> Any:
    """torch.library.register_autograd(f"sfrik::{name}", backward, setup_context=...), and the
    same formula as an autograd.Function in the setup_context form (forward without ctx, generated
    vmap rule, forward mode refused), which torch.func accepts: the Python entry points below use it
    inside torch.func transforms."""
    op = getattr(torch.ops.sfrik, name).default
    torch.library.register_autograd(f"sfrik::{name}", backward, setup_context=setup_context)

    def forward(*args):
        return op(*args)  # grad mode is off in a Function's forward: the op goes straight to its kernel

    def jvp(ctx, *tangents):
        raise NotImplementedError(f"sfrik::{name}: {FORWARD_MODE_UNSUPPORTED}")

    return type(
        f"SfrikFunction_{name}",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(forward),
            "setup_context": staticmethod(setup_context),
            "backward": staticmethod(backward),
            "jvp": staticmethod(jvp),
            "generate_vmap_rule": True,
        },
    )


_SeriesFunction = _register_autograd("legendre_series", _series_grad, _save_t)
_ReduceFunction = _register_autograd("legendre_series_reduce", _reduce_grad, _save_t)
_BackwardFunction = _register_autograd("legendre_series_backward", _backward_grad, _backward_setup)

# Under autocast (float16/bfloat16) the series runs in float32: the recurrence constants such
# as 1/(q-1) at q = 32768 are subnormal in float16.
for _op in ("sfrik::legendre_series", "sfrik::legendre_series_reduce", "sfrik::legendre_series_backward"):
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast(_op, _device, torch.float32)


# ---------------------------------------------------------------------------------------------
# sfrik::legendre_series_value_and_grad: (sum or mean of psi(t), its derivative) from one read of t.


@torch.library.register_fake("sfrik::legendre_series_value_and_grad")
def _value_and_grad_fake(t, coeffs, q, mean):
    return t.new_empty(()), torch.empty_like(t)


def _value_and_grad_setup(ctx, inputs, output):
    t, coeffs, q, mean = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(t, output[1])
    ctx.coeffs, ctx.q, ctx.scale = coeffs, q, (1.0 / max(t.numel(), 1) if mean else 1.0)


def _value_and_grad_grad(ctx, grad_value, grad_slope):
    # value: d/dt = slope (already scaled); slope = scale psi'(t): d/dt = scale psi''(t).
    t, slope = ctx.saved_tensors
    d_t = None
    if grad_value is not None:
        d_t = grad_value * slope
    if grad_slope is not None:
        second = legendre_series_backward(grad_slope, t, ctx.coeffs, ctx.q, 2) * ctx.scale
        d_t = second if d_t is None else d_t + second
    return d_t, None, None, None


_ValueAndGradFunction = _register_autograd(
    "legendre_series_value_and_grad", _value_and_grad_grad, _value_and_grad_setup
)
torch.library.register_autocast("sfrik::legendre_series_value_and_grad", "cpu", torch.float32)
torch.library.register_autocast("sfrik::legendre_series_value_and_grad", "cuda", torch.float32)


# ---------------------------------------------------------------------------------------------
# sfrik::gram_series_sum (tiled): S = sum_ij psi(x_i . y_j) and, on request, its gradients.

_gram_sum = torch.ops.sfrik.gram_series_sum.default


@torch.library.register_fake("sfrik::gram_series_sum")
def _gram_sum_fake(x, y, coeffs, q, tile, grad_x, grad_y):
    other = x if y is None else y
    return (
        x.new_empty(()),
        x.new_empty(x.shape) if grad_x else x.new_empty(0),
        other.new_empty(other.shape) if grad_y else other.new_empty(0),
    )


def _gram_sum_setup(ctx, inputs, output):
    x, y, coeffs, q, tile, grad_x, grad_y = inputs
    _, gx, gy = output
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, y, gx if grad_x else None, gy if grad_y else None)
    ctx.coeffs, ctx.q, ctx.tile = coeffs, q, tile


def _gram_sum_grad(ctx, grad_sum, grad_gx, grad_gy):
    if grad_gx is not None or grad_gy is not None:
        raise NotImplementedError(
            "sfrik::gram_series_sum: its gradient outputs (grad_x, grad_y) are not "
            "differentiable; differentiate the sum S instead"
        )
    x, y, gx, gy = ctx.saved_tensors
    need_x, need_y = ctx.needs_input_grad[:2]
    if grad_sum is None:
        return None, None, None, None, None, None, None
    if torch.is_grad_enabled():
        # create_graph: the gradient as differentiable ops of x and y (dense, n x m memory), so
        # that higher derivatives are exact.
        other = x if y is None else y
        slope = legendre_series_backward(grad_sum, x @ other.T, ctx.coeffs, ctx.q, 1)
        if y is None:
            return 2 * (slope @ x), None, None, None, None, None, None
        return slope @ y if need_x else None, slope.T @ x if need_y else None, None, None, None, None, None
    if (need_x and gx is None) or (need_y and gy is None):  # called without asking for them: recompute
        _, gx, gy = _gram_sum(x, y, ctx.coeffs, ctx.q, ctx.tile, need_x, need_y)
    return grad_sum * gx if need_x else None, grad_sum * gy if need_y else None, None, None, None, None, None


_GramSumFunction = _register_autograd("gram_series_sum", _gram_sum_grad, _gram_sum_setup)
for _device in ("cpu", "cuda"):
    torch.library.register_autocast("sfrik::gram_series_sum", _device, torch.float32)


# ---------------------------------------------------------------------------------------------
# sfrik::row_stats: double row sums [x.x] or [x.x, y.y, x.y] (sfrik_plugin/rows.py).


@torch.library.register_fake("sfrik::row_stats")
def _row_stats_fake(x, y):
    return x.new_empty((x.shape[0], 1 if y is None else 3), dtype=torch.float64)


def _row_stats_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _row_stats_grad(ctx, grad):
    # Written with differentiable ops of x and y: higher derivatives are exact too.
    x, y = ctx.saved_tensors
    if y is None:
        return 2 * grad.to(x.dtype) * x, None
    g = grad.to(x.dtype)
    dx = dy = None
    if ctx.needs_input_grad[0]:
        dx = torch.addcmul(g[:, 2:3] * y, g[:, 0:1], x, value=2.0)
    if ctx.needs_input_grad[1]:
        dy = torch.addcmul(g[:, 2:3] * x, g[:, 1:2], y, value=2.0)
    return dx, dy


_RowStatsFunction = _register_autograd("row_stats", _row_stats_grad, _row_stats_setup)


# ---------------------------------------------------------------------------------------------
# sfrik::symmetrize: a square matrix made exactly symmetric (CPU kernel; sfrik_plugin/gram.py).


@torch.library.register_fake("sfrik::symmetrize")
def _symmetrize_fake(g, add):
    torch._check(g.dim() == 2 and g.shape[0] == g.shape[1], lambda: "sfrik: g must be a square matrix")
    return g.new_empty(g.shape)


def _symmetrize_setup(ctx, inputs, output):
    ctx.add = inputs[1]


def _symmetrize_grad(ctx, grad):
    # Both are linear: g + g^T is its own adjoint; the mirror sends out[i, j] and out[j, i] to the
    # upper triangle's g[min, max] (the diagonal once). Differentiable ops: any order.
    both = grad + grad.mT
    if ctx.add:
        return both, None
    return torch.triu(both) - torch.diag_embed(grad.diagonal()), None


_SymmetrizeFunction = _register_autograd("symmetrize", _symmetrize_grad, _symmetrize_setup)


# ---------------------------------------------------------------------------------------------
# vmap rules (torch.func.vmap, and the generated vmap rules of the autograd Functions above):
# the elementwise operators and the row sums run batched in one call; the reductions run once per
# batch entry, with the numerics of an unbatched call.


def _batch_first(value: torch.Tensor | None, dim: int | None, size: int) -> torch.Tensor | None:
    """value with its batch dimension first (an unbatched value expanded, not copied)."""
    if value is None:
        return None
    return value.movedim(dim, 0) if dim is not None else value.expand(size, *value.shape)


def _series_vmap(info, in_dims, t, coeffs, q):
    return _series(t, coeffs, q), in_dims[0]  # elementwise: the batch dimension stays where it is


def _backward_vmap(info, in_dims, grad, t, coeffs, q, order=1):
    t = _batch_first(t, in_dims[1], info.batch_size)
    grad = _batch_first(grad, in_dims[0], info.batch_size)
    if grad.shape[1:] != t.shape[1:]:  # one value per batch entry, broadcast over t's
        grad = grad.reshape(info.batch_size, *[1] * (t.dim() - 1)).expand_as(t)
    return _backward(grad, t, coeffs, q, order), 0


def _per_entry(info, in_dims, op, tensors, rest):
    """op(*entry, *rest) for each batch entry of tensors (None stays None), stacked."""
    batched = [_batch_first(x, d, info.batch_size) for x, d in zip(tensors, in_dims)]
    results = [op(*(None if x is None else x[b] for x in batched), *rest) for b in range(info.batch_size)]
    if isinstance(results[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*results)), (0,) * len(results[0])
    return torch.stack(results), 0


def _reduce_vmap(info, in_dims, t, coeffs, q, mean):
    return _per_entry(info, in_dims, _reduce, [t], (coeffs, q, mean))


def _value_and_grad_vmap(info, in_dims, t, coeffs, q, mean):
    return _per_entry(info, in_dims, _value_and_grad, [t], (coeffs, q, mean))


def _gram_sum_vmap(info, in_dims, x, y, coeffs, q, tile, grad_x, grad_y):
    return _per_entry(info, in_dims, _gram_sum, [x, y], (coeffs, q, tile, grad_x, grad_y))


def _row_stats_vmap(info, in_dims, x, y):
    # row sums: the batch entries' rows are just more rows
    x = _batch_first(x, in_dims[0], info.batch_size)
    y = _batch_first(y, in_dims[1], info.batch_size)
    size, rows = x.shape[:2]
    flat = _row_stats(x.reshape(size * rows, -1), None if y is None else y.reshape(size * rows, -1))
    return flat.reshape(size, rows, -1), 0


torch.library.register_vmap("sfrik::legendre_series", _series_vmap)
torch.library.register_vmap("sfrik::legendre_series_reduce", _reduce_vmap)
torch.library.register_vmap("sfrik::legendre_series_backward", _backward_vmap)
torch.library.register_vmap("sfrik::legendre_series_value_and_grad", _value_and_grad_vmap)
torch.library.register_vmap("sfrik::gram_series_sum", _gram_sum_vmap)
torch.library.register_vmap("sfrik::row_stats", _row_stats_vmap)
torch.library.register_vmap(
    "sfrik::symmetrize", lambda info, in_dims, g, add: _per_entry(info, in_dims, _symmetrize, [g], (add,))
)


# ---------------------------------------------------------------------------------------------
# The Python entry points (series.py, rows.py, tiled.py and the formulas above call these): the
# compiled operator, through the Function form of its autograd formula inside torch.func.


def legendre_series(t: torch.Tensor, coeffs: list[float], q: int) -> torch.Tensor:
    return _SeriesFunction.apply(t, coeffs, q) if _transforms_active() else _series(t, coeffs, q)


def legendre_series_reduce(t: torch.Tensor, coeffs: list[float], q: int, mean: bool) -> torch.Tensor:
    return _ReduceFunction.apply(t, coeffs, q, mean) if _transforms_active() else _reduce(t, coeffs, q, mean)


def legendre_series_backward(grad: torch.Tensor, t: torch.Tensor, coeffs: list[float], q: int, order: int = 1):
    if _transforms_active():
        return _BackwardFunction.apply(grad, t, coeffs, q, order)
    return _backward(grad, t, coeffs, q, order)


def legendre_series_value_and_grad(t: torch.Tensor, coeffs: list[float], q: int, mean: bool):
    if _transforms_active():
        return _ValueAndGradFunction.apply(t, coeffs, q, mean)
    return _value_and_grad(t, coeffs, q, mean)


def gram_series_sum(x, y, coeffs: list[float], q: int, tile: int, grad_x: bool, grad_y: bool):
    if _transforms_active():
        return _GramSumFunction.apply(x, y, coeffs, q, tile, grad_x, grad_y)
    return _gram_sum(x, y, coeffs, q, tile, grad_x, grad_y)


def row_stats(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return _RowStatsFunction.apply(x, y) if _transforms_active() else _row_stats(x, y)


def symmetrize(g: torch.Tensor, add: bool) -> torch.Tensor:
    return _SymmetrizeFunction.apply(g, add) if _transforms_active() else _symmetrize(g, add)
