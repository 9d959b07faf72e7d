"""Python-side registrations of the compiled sfrik:: operators: fake (meta) kernels for
torch.compile, autograd formulas (any order: each derivative is the same fused operator with
order + 1), and autocast to float32. `import sfrik_plugin` imports this module when the compiled
extension loads; importing it directly loads the extension first.
"""

from __future__ import annotations

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
    return _backward(grad, t, ctx.coeffs, ctx.q, 1), None, None


def _reduce_grad(ctx, grad):
    (t,) = ctx.saved_tensors
    # grad stays a 0-dim tensor: the kernel broadcasts it without an n x n buffer.
    scale = grad / t.numel() if ctx.mean else grad
    return _backward(scale, t, ctx.coeffs, ctx.q, 1), None, None, None


def _backward_setup(ctx, inputs, output):
    grad, t, coeffs, q, order = inputs
    ctx.save_for_backward(grad, t)
    ctx.coeffs, ctx.q, ctx.order = coeffs, q, order


def _backward_grad(ctx, gg):
    # out = grad * psi^(order)(t): d/dgrad = psi^(order)(t), d/dt = grad * psi^(order+1)(t).
    grad, t = ctx.saved_tensors
    d_grad = d_t = None
    if ctx.needs_input_grad[0]:
        d_grad = _backward(gg, t, ctx.coeffs, ctx.q, ctx.order)
        if grad.shape != t.shape:
            d_grad = d_grad.sum().reshape(grad.shape)
    if ctx.needs_input_grad[1]:
        d_t = _backward(gg * grad, t, ctx.coeffs, ctx.q, ctx.order + 1)
    return d_grad, d_t, None, None, None


torch.library.register_autograd("sfrik::legendre_series", _series_grad, setup_context=_save_t)
torch.library.register_autograd("sfrik::legendre_series_reduce", _reduce_grad, setup_context=_save_t)
torch.library.register_autograd("sfrik::legendre_series_backward", _backward_grad, setup_context=_backward_setup)

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
        second = _backward(grad_slope, t, ctx.coeffs, ctx.q, 2) * ctx.scale
        d_t = second if d_t is None else d_t + second
    return d_t, None, None, None


torch.library.register_autograd(
    "sfrik::legendre_series_value_and_grad", _value_and_grad_grad, setup_context=_value_and_grad_setup
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
        slope = _backward(grad_sum, x @ other.T, ctx.coeffs, ctx.q, 1)
        if y is None:
            return 2 * (slope @ x), None, None, None, None, None, None
        return slope @ y if need_x else None, slope.T @ x if need_y else None, None, None, None, None, None
    if (need_x and gx is None) or (need_y and gy is None):  # called without asking for them: recompute
        _, gx, gy = _gram_sum(x, y, ctx.coeffs, ctx.q, ctx.tile, need_x, need_y)
    return grad_sum * gx if need_x else None, grad_sum * gy if need_y else None, None, None, None, None, None


torch.library.register_autograd("sfrik::gram_series_sum", _gram_sum_grad, setup_context=_gram_sum_setup)
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


torch.library.register_autograd("sfrik::row_stats", _row_stats_grad, setup_context=_row_stats_setup)
