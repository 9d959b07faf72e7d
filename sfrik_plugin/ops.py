"""Python-side registrations of the compiled sfrik:: operators: fake (meta) kernels for
torch.compile, autograd formulas (any order: each derivative is the same fused operator with
order + 1), and autocast to float32. Imported only when sfrik_plugin._C loaded.
"""
from __future__ import annotations

import torch

_series = torch.ops.sfrik.legendre_series.default
_reduce = torch.ops.sfrik.legendre_series_reduce.default
_backward = torch.ops.sfrik.legendre_series_backward.default


# Fake kernels: the elementwise ops return a tensor laid out like torch.empty_like(t), which
# is what the C++ kernels allocate; the reduction returns a 0-dim tensor of t's dtype.
@torch.library.register_fake("sfrik::legendre_series")
def _series_fake(t, coeffs, dim):
    return torch.empty_like(t)


@torch.library.register_fake("sfrik::legendre_series_reduce")
def _reduce_fake(t, coeffs, dim, mean):
    return t.new_empty(())


@torch.library.register_fake("sfrik::legendre_series_backward")
def _backward_fake(grad, t, coeffs, dim, order=1):
    torch._check(grad.dtype == t.dtype, lambda: "sfrik: grad must have the dtype of t")
    return torch.empty_like(t)


def _save_t(ctx, inputs, output):
    t, coeffs, dim = inputs[:3]
    ctx.save_for_backward(t)
    ctx.coeffs, ctx.dim = coeffs, dim
    ctx.mean = inputs[3] if len(inputs) > 3 else None


def _series_grad(ctx, grad):
    (t,) = ctx.saved_tensors
    return _backward(grad, t, ctx.coeffs, ctx.dim, 1), None, None


def _reduce_grad(ctx, grad):
    (t,) = ctx.saved_tensors
    # grad stays a 0-dim tensor: the kernel broadcasts it without an n x n buffer.
    scale = grad / t.numel() if ctx.mean else grad
    return _backward(scale, t, ctx.coeffs, ctx.dim, 1), None, None, None


def _backward_setup(ctx, inputs, output):
    grad, t, coeffs, dim, order = inputs
    ctx.save_for_backward(grad, t)
    ctx.coeffs, ctx.dim, ctx.order = coeffs, dim, order


def _backward_grad(ctx, gg):
    # out = grad * psi^(order)(t): d/dgrad = psi^(order)(t), d/dt = grad * psi^(order+1)(t).
    grad, t = ctx.saved_tensors
    d_grad = d_t = None
    if ctx.needs_input_grad[0]:
        d_grad = _backward(gg, t, ctx.coeffs, ctx.dim, ctx.order)
        if grad.shape != t.shape:
            d_grad = d_grad.sum().reshape(grad.shape)
    if ctx.needs_input_grad[1]:
        d_t = _backward(gg * grad, t, ctx.coeffs, ctx.dim, ctx.order + 1)
    return d_grad, d_t, None, None, None


torch.library.register_autograd("sfrik::legendre_series", _series_grad, setup_context=_save_t)
torch.library.register_autograd("sfrik::legendre_series_reduce", _reduce_grad, setup_context=_save_t)
torch.library.register_autograd("sfrik::legendre_series_backward", _backward_grad, setup_context=_backward_setup)

# Under autocast (float16/bfloat16) the series runs in float32: the recurrence constants such
# as 1/(q-1) at q = 32768 are subnormal in float16.
for _op in ("sfrik::legendre_series", "sfrik::legendre_series_reduce", "sfrik::legendre_series_backward"):
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast(_op, _device, torch.float32)
