"""Argument checks of the public API: each returns the checked (normalised) value or raises a
TypeError or ValueError that names the argument as the caller spelled it, and what was expected.

Also the renamed keyword arguments: old names keep working for one release, with a
DeprecationWarning that names the new one.
"""

from __future__ import annotations

import collections.abc
import functools
import math
import numbers
import operator
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import torch

from .defaults import GRAM_PRECISIONS

if TYPE_CHECKING:
    import numpy


Coeffs = Sequence[float] | torch.Tensor

# The kernels' dtypes: is_floating_point() also admits the float8 types, which no kernel handles.
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
REDUCTIONS = ("none", "mean", "sum")
# How the MMD is computed: the n x n Gram matrix, tiles that never hold it, or the faster by size.
MMD_IMPLS = ("auto", "dense", "tiled")

_INT64_MAX = 2**63 - 1


def check_int(value: Any, name: str, minimum: int) -> int:
    """An integer (not a bool or a float) >= minimum, named in the error."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if value > _INT64_MAX:  # the operators take int64; the dispatcher's own error does not name the argument
        raise ValueError(f"{name} must be an integer between {minimum} and 2**63 - 1, got {value}")
    return value


def check_q(q: object) -> int:
    """The ambient dimension q of the sphere S^(q-1), >= 2 (q = 2 gives Chebyshev polynomials)."""
    return check_int(q, "q", 2)


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_weight(value: object, name: str, *, positive: bool = False, below: float | None = None) -> float:
    """A finite real number >= 0 (> 0 with positive=True; < below when given)."""
    if below is not None:
        bound = f"in (0, {below:g})"
    else:
        bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number {bound}, got {value!r}")
    value = float(value)
    too_small = value <= 0 if (positive or below is not None) else value < 0
    if not math.isfinite(value) or too_small or (below is not None and value >= below):
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def _is_numpy_array(value: object) -> TypeGuard[numpy.ndarray]:
    np = sys.modules.get("numpy")  # an array exists only if numpy is imported already
    return np is not None and isinstance(value, np.ndarray)


def check_coeffs(coeffs: Coeffs, name: str = "coeffs") -> list[float]:
    """A non-empty 1-D sequence, array or tensor of finite reals, as a list of floats."""
    if isinstance(coeffs, torch.Tensor):
        if coeffs.requires_grad:
            raise ValueError(
                f"{name}: gradients with respect to the coefficients are not supported; "
                "pass floats or a tensor that does not require grad"
            )
        if coeffs.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor, got shape {tuple(coeffs.shape)}")
        coeffs = coeffs.detach().cpu().tolist()
    elif _is_numpy_array(coeffs):
        if coeffs.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array, got shape {coeffs.shape}")
        if coeffs.dtype.kind not in "fiu":  # bool, complex, objects, strings
            raise TypeError(f"{name} must hold real numbers, got an array of {coeffs.dtype}")
        coeffs = coeffs.tolist()
    elif isinstance(coeffs, (str, bytes, collections.abc.Set, collections.abc.Mapping)) or not hasattr(
        coeffs, "__len__"
    ):
        # sets and mappings have a length but no order of degrees
        raise TypeError(f"{name} must be a sequence of floats or a 1-D tensor, got {type(coeffs).__name__}")
    out = []
    for k, c in enumerate(coeffs):
        if isinstance(c, bool):
            raise TypeError(f"{name}[{k}] must be a float, got {c!r}")
        try:
            c = float(c)
        except (TypeError, ValueError):
            raise TypeError(f"{name}[{k}] must be a float, got {c!r}") from None
        if not math.isfinite(c):
            raise ValueError(f"{name} must be finite, got {name}[{k}] = {c}")
        out.append(c)
    if not out:
        raise ValueError(f"{name} must be non-empty")
    return out


def check_kernel_weights(kernel_weights: Coeffs) -> list[float]:
    """(b_1, ..., b_L): non-empty, finite, >= 0. b_1 is the weight of degree 1 (degree 0 is a
    constant that cancels in the MMD). b_l >= 0 keeps the kernel positive definite (Schoenberg),
    which makes the regulariser an MMD, hence >= 0."""
    weights = check_coeffs(kernel_weights, "kernel_weights")
    for degree, b in enumerate(weights, start=1):
        if b < 0:
            raise ValueError(
                f"kernel_weights must be >= 0 (positive definite kernel), got b_{degree} = {b} "
                f"(kernel_weights[{degree - 1}])"
            )
    return weights


def check_floating_tensor(t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {t.dtype}"
        )
    return t


def check_embedding(z: object, name: str) -> torch.Tensor:
    """A 2-D (batch >= 1, features >= 2) floating-point tensor."""
    z = check_floating_tensor(z, name)
    if z.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {tuple(z.shape)}")
    if z.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one embedding (batch size >= 1), got shape {tuple(z.shape)}")
    if z.shape[1] < 2:
        raise ValueError(
            f"{name} must have at least 2 features (the sphere S^(q-1) needs q >= 2), got shape {tuple(z.shape)}"
        )
    return z


def check_same_views(views: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """Each view a valid embedding, all with the shape, device and dtype of the first."""
    for z, name in zip(views, names):
        check_embedding(z, name)
    first, first_name = views[0], names[0]
    for z, name in zip(views[1:], names[1:]):
        if z.shape != first.shape:
            raise ValueError(
                f"{name} must have the shape of {first_name}: got {tuple(z.shape)} and {tuple(first.shape)}"
            )
        if z.device != first.device:
            raise ValueError(f"{name} must be on the device of {first_name}: got {z.device} and {first.device}")
        if z.dtype != first.dtype:
            raise TypeError(f"{name} must have the dtype of {first_name}: got {z.dtype} and {first.dtype}")


def check_multicrop_views(views: object, num_large_crops: object) -> tuple[list[torch.Tensor], int]:
    """A list of at least 2 valid, alike views, and 1 <= num_large_crops <= len(views)."""
    if isinstance(views, torch.Tensor) or not isinstance(views, Sequence):
        raise TypeError(f"views must be a list of (n, q) tensors, got {type(views).__name__}")
    if len(views) < 2:
        raise ValueError(f"views must hold at least 2 views, got {len(views)}")
    views = list(views)
    check_same_views(views, [f"views[{i}]" for i in range(len(views))])
    large = check_int(num_large_crops, "num_large_crops", 1)
    if large > len(views):
        raise ValueError(f"num_large_crops must be between 1 and len(views) = {len(views)}, got {large}")
    return views, large


def check_mmd_impl(mmd_impl: object) -> str:
    return check_choice(mmd_impl, "mmd_impl", MMD_IMPLS)


def check_mmd_tile_size(mmd_tile_size: object) -> int | None:
    """None (the device's default, chosen when the rows are known) or an integer >= 1."""
    return None if mmd_tile_size is None else check_int(mmd_tile_size, "mmd_tile_size", 1)


def check_gram_precision(gram_precision: object) -> str:
    return check_choice(gram_precision, "gram_precision", GRAM_PRECISIONS)


# ---------------------------------------------------------------------------------------------
# Renamed keyword arguments

_Fn = TypeVar("_Fn", bound=Callable[..., Any])
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _warn_deprecated(message: str) -> None:
    """A DeprecationWarning attributed to the first caller outside this package: a deprecated
    function with a renamed keyword runs through two of these wrappers (and the classes' own
    constructors), and the line to change is the user's."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def deprecated_function(replacement: str) -> Callable[[_Fn], _Fn]:
    """Decorator: calling the function warns (DeprecationWarning) that it will be removed in the
    next release and names its replacement; it still computes what it did."""

    def decorate(fn: _Fn) -> _Fn:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _warn_deprecated(
                f"{fn.__module__}.{fn.__qualname__} is deprecated and will be removed in the next release; "
                f"use {replacement}"
            )
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_kwargs(**renames: str) -> Callable[[_Fn], _Fn]:
    """Decorator: the keyword arguments named by the keys (old names) are passed on under the
    values (new names), with a DeprecationWarning; both at once is a TypeError."""

    def decorate(fn: _Fn) -> _Fn:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            passed: list[tuple[str, str]] = []
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old}= and its new name {new}=; pass {new}=")
                    _warn_deprecated(
                        f"{fn.__qualname__}(): the argument {old}= is deprecated and will be removed in the "
                        f"next release; use {new}="
                    )
                    kwargs[new] = kwargs.pop(old)
                    passed.append((old, new))
            try:
                return fn(*args, **kwargs)
            except (TypeError, ValueError) as err:
                for old, new in passed:
                    if new in str(err):
                        err.add_note(f"({new} was passed as the deprecated {old}=)")
                raise

        return wrapper  # type: ignore[return-value]

    return decorate
