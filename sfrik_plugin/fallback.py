"""The Legendre series where the compiled operators have no kernel for a tensor's device (a GPU with
an extension built without a CUDA toolkit, or no extension at all): the reference recurrence under
torch.compile, which makes its own kernels (Triton on a GPU, C++ on a CPU) with no CUDA toolkit; and
the double row sums of rows.row_stats, the same way.

Why compiled: in eager PyTorch each step of the recurrence is a pass over t, and autograd keeps
every intermediate for the backward; the operator psi(G).mean() then cost several times the
compiled operator (sfrik-bench legendre, "fallback" rows; BENCHMARKS.md). Compiled, the whole series
is one pass.

The structure of the compiled operators (ops.py), in Python: grad * d^order/dt^order of the series
is one elementwise function of t (the derivative of a Legendre series in dimension q is a series in
dimension q + 2: the tables below, as cpp/legendre_recurrence.h computes them), and its autograd
formula calls the same function one order up, so every derivative order is exact (double backward
included). The reductions (sum, mean) are summed in float64, as the compiled operators sum them.

Where torch.compile cannot run (no working compiler for the device, inside a torch.func transform,
or a compile error), the eager recurrence computes the same function: the first failure is warned
once and the eager form is used from then on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

_FAILED: list[str] = []  # the reason torch.compile failed, once it has
_EAGER = [0]  # depth of eager() blocks


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Within the block the fallback runs its eager form (the benchmarks' "before", and tests)."""
    _EAGER[0] += 1
    try:
        yield
    finally:
        _EAGER[0] -= 1


def series_tables(coeffs: Sequence[float], q: int, order: int) -> tuple[list[float], float]:
    """(coefficients, dimension) of d^order/dt^order sum_k coeffs[k] P_k(q; .) as a Legendre series
    (d/dt P_l(q; t) = l (l + q - 2) / (q - 1) P_{l-1}(q + 2; t)), in double."""
    c, dim = [float(v) for v in coeffs], float(q)
    for _ in range(order):
        if len(c) <= 1:
            return [0.0], dim
        c = [c[j + 1] * (j + 1) * (j + 1 + dim - 2) / (dim - 1) for j in range(len(c) - 1)]
        dim += 2.0
    return c, dim


def _table(coeffs: Sequence[float], q: int, order: int) -> tuple[int, list[float]]:
    """(degree, [coeff_0 .. coeff_L, alpha_1 .. alpha_{L-1}, beta_1 .. beta_{L-1}]) of the order-th
    derivative (the layout of cpp/legendre_recurrence.h's SeriesTables)."""
    c, dim = series_tables(coeffs, q, order)
    degree = len(c) - 1
    alpha = [(2 * l + dim - 2) / (l + dim - 2) for l in range(1, degree)]
    beta = [l / (l + dim - 2) for l in range(1, degree)]
    return degree, [*c, *alpha, *beta]


def _evaluate(t: torch.Tensor, table: torch.Tensor, degree: int, grad: torch.Tensor | None) -> torch.Tensor:
    """grad * sum_k c_k P_k(t) from a table (a 1-D tensor of t's dtype on t's device: its values are
    not constants of the compiled code, so other coefficients do not recompile it)."""
    c, alpha, beta = table[: degree + 1], table[degree + 1 : 2 * degree], table[2 * degree :]
    out = torch.zeros_like(t) + c[0]
    if degree >= 1:
        previous, current = torch.ones_like(t), t
        out = out + c[1] * t
        for l in range(1, degree):
            previous, current = current, alpha[l - 1] * t * current - beta[l - 1] * previous
            out = out + c[l + 1] * current
    return out if grad is None else out * grad


def _evaluate_sum(t: torch.Tensor, table: torch.Tensor, degree: int) -> torch.Tensor:
    """The sum in float64 of float32 row sums (of the last dimension): the compiled operators' way,
    float partial sums flushed to double, at half the time of a float64 sum of every element."""
    values = _evaluate(t, table, degree, None)
    return (values.sum(-1) if values.dim() >= 2 else values).sum(dtype=torch.float64)


_COMPILED: dict[Callable[..., torch.Tensor], Callable[..., torch.Tensor]] = {}


def _run(function: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    """function(*args) through torch.compile where it can run, else eagerly (see the module docstring)."""
    if _FAILED or _EAGER[0] or torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return function(*args)  # (inside an outer torch.compile, Dynamo traces the eager form itself)
    compiled = _COMPILED.setdefault(function, torch.compile(function, dynamic=None))
    try:
        return compiled(*args)
    except Exception as error:  # noqa: BLE001 (any compile failure: the eager form computes the same)
        _FAILED.append(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        warnings.warn(
            f"sfrik_plugin's fallback could not torch.compile the Legendre series ({_FAILED[0]}): "
            "using the eager pure-PyTorch recurrence (slower, more memory)",
            RuntimeWarning,
            stacklevel=4,
        )
        return function(*args)


_TABLES: dict[tuple, tuple[int, torch.Tensor]] = {}


def _device_table(coeffs: Sequence[float], q: int, order: int, like: torch.Tensor) -> tuple[int, torch.Tensor]:
    """_table's values as a tensor on like's device, made once per series, order, dtype and device: a
    copy from the host at every call would wait for the GPU."""
    key = (tuple(coeffs), q, order, like.dtype, like.device)
    if key not in _TABLES:
        degree, values = _table(coeffs, q, order)
        _TABLES[key] = degree, torch.tensor(values, dtype=like.dtype).to(like.device)
    return _TABLES[key]


def _series(t: torch.Tensor, coeffs: list[float], q: int, order: int, grad: torch.Tensor | None) -> torch.Tensor:
    degree, table = _device_table(coeffs, q, order, t)
    return _run(_evaluate, t, table, degree, grad)


class _FallbackSeries(torch.autograd.Function):
    """grad * d^order/dt^order psi(t) (grad None: 1), elementwise; backward: the same one order up."""

    generate_vmap_rule = True

    @staticmethod
    def forward(t, grad, coeffs, q, order):
        return _series(t, coeffs, q, order, grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        t, grad, coeffs, q, order = inputs
        ctx.save_for_backward(t, grad)
        ctx.coeffs, ctx.q, ctx.order = coeffs, q, order

    @staticmethod
    def backward(ctx, gg):
        t, grad = ctx.saved_tensors
        d_t = d_grad = None
        if ctx.needs_input_grad[0]:
            d_t = series_times(t, gg if grad is None else gg * grad, ctx.coeffs, ctx.q, ctx.order + 1)
        if ctx.needs_input_grad[1]:
            d_grad = series_times(t, gg, ctx.coeffs, ctx.q, ctx.order)
            if grad.shape != t.shape:
                d_grad = d_grad.sum_to_size(grad.shape)
        return d_t, d_grad, None, None, None


def series_times(t: torch.Tensor, grad: torch.Tensor | None, coeffs: list[float], q: int, order: int = 0):
    """grad * d^order/dt^order sum_k coeffs[k] P_k(q; t), elementwise, differentiable to any order.
    t: float32 or float64 (the caller widens half types); grad: None, or broadcastable to t."""
    return _FallbackSeries.apply(t, grad, coeffs, q, order)


class _FallbackSum(torch.autograd.Function):
    """sum (or mean) of psi(t), summed in float64, in t's dtype; backward psi'(t) times the scale."""

    generate_vmap_rule = True

    @staticmethod
    def forward(t, coeffs, q, mean):
        degree, table = _device_table(coeffs, q, 0, t)
        total = _run(_evaluate_sum, t, table, degree)
        return (total / t.numel() if mean else total).to(t.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        t, coeffs, q, mean = inputs
        ctx.save_for_backward(t)
        ctx.coeffs, ctx.q, ctx.mean = coeffs, q, mean

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        scale = grad / t.numel() if ctx.mean else grad  # 0-dim: broadcast, no n x n buffer
        return series_times(t, scale, ctx.coeffs, ctx.q, 1), None, None, None


def series_reduce(t: torch.Tensor, coeffs: list[float], q: int, mean: bool) -> torch.Tensor:
    """The sum (mean=False) or mean of the series over t, differentiable to any order."""
    return _FallbackSum.apply(t, coeffs, q, mean)


def _row_sums(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    xd = x.double()
    if y is None:
        return (xd * xd).sum(1, keepdim=True)
    yd = y.double()
    return torch.stack([(xd * xd).sum(1), (yd * yd).sum(1), (xd * yd).sum(1)], dim=1)


class _FallbackRowStats(torch.autograd.Function):
    """sfrik::row_stats without its kernel: the double row sums (compiled: one pass instead of a
    float64 copy of the rows and one product per sum); the backward is the compiled operator's
    formula (ops.py), in differentiable ops of x and y."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, y):
        return _run(_row_sums, x, y)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        g = grad.to(x.dtype)
        if y is None:
            return 2 * g * x, None
        dx = torch.addcmul(g[:, 2:3] * y, g[:, 0:1], x, value=2.0) if ctx.needs_input_grad[0] else None
        dy = torch.addcmul(g[:, 2:3] * x, g[:, 1:2], y, value=2.0) if ctx.needs_input_grad[1] else None
        return dx, dy


def row_stats(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """rows.row_stats without the compiled operator: (n, 1) or (n, 3) float64 row sums, any order."""
    return _FallbackRowStats.apply(x, y)


def compile_failure() -> str | None:
    """Why torch.compile could not run the fallback in this process, or None."""
    return _FAILED[0] if _FAILED else None


__all__ = ["series_tables", "series_times", "series_reduce", "row_stats", "compile_failure", "eager"]
