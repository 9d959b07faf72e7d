"""Loads the compiled operators (sfrik_plugin._C) once, with clear messages when it cannot.

Policy: a missing or mismatched extension makes the package fall back to the pure-PyTorch
reference with one warning; with SFRIK_REQUIRE_EXTENSION=1 it is an ImportError instead.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

REQUIRE_ENV = "SFRIK_REQUIRE_EXTENSION"
_PACKAGE_DIR = Path(__file__).resolve().parent
REBUILD_HINT = (
    "rebuild it against the installed torch: `pip install --no-build-isolation --force-reinstall "
    "--no-deps <path to sfrik-plugin>` (or `make build` in a checkout)"
)


# What a GPU machine without the CUDA kernels needs (the fallback's warning names it): README.md,
# "Building with or without CUDA".
CUDA_BUILD_HINT = (
    "install a CUDA toolkit whose nvcc matches torch's CUDA version (torch.version.cuda; CUDA_HOME pointing at it) "
    "and rebuild on the GPU machine: `pip install --no-build-isolation --force-reinstall --no-deps <path to "
    "sfrik-plugin>` (with FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST, e.g. 9.0, where the build sees no GPU; README.md, "
    '"Building with or without CUDA")'
)
_FORCED_REFERENCE = [0]  # depth of reference_only() blocks


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Within the block, the package's Python entry points take the fallback paths (as on a device
    without kernels), without the fallback's warning or SFRIK_REQUIRE_EXTENSION's error: what the
    benchmarks and tests measure the fallback with. Not thread-safe."""
    _FORCED_REFERENCE[0] += 1
    try:
        yield
    finally:
        _FORCED_REFERENCE[0] -= 1


def reference_forced() -> bool:
    return _FORCED_REFERENCE[0] > 0


class ExtensionError(ImportError):
    """The compiled extension cannot be used."""


def _require_extension() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _built_against() -> str | None:
    try:
        return json.loads((_PACKAGE_DIR / "_build_info.json").read_text())["torch_version"]
    except (OSError, ValueError, KeyError):
        return None


def _load():
    built = _built_against()
    if built is not None and built != torch.__version__:
        # Checked before loading the binary: an ABI mismatch can fail in obscure ways.
        raise ExtensionError(
            f"sfrik_plugin._C was built against torch {built}, but torch {torch.__version__} is "
            f"installed: {REBUILD_HINT}."
        )
    try:
        module = importlib.import_module("sfrik_plugin._C")
    except ImportError as exc:
        raise ExtensionError(f"sfrik_plugin._C could not be loaded ({exc}); {REBUILD_HINT}.") from exc
    if module.torch_version != torch.__version__:
        raise ExtensionError(
            f"sfrik_plugin._C was built against torch {module.torch_version}, but torch "
            f"{torch.__version__} is installed: {REBUILD_HINT}."
        )
    return module


try:
    _C = _load()
    LOAD_ERROR: str | None = None
except ExtensionError as _exc:
    if _require_extension():
        raise ExtensionError(f"{_exc} ({REQUIRE_ENV}=1 forbids the pure-PyTorch fallback)") from _exc
    _C = None
    LOAD_ERROR = str(_exc)
    warnings.warn(
        f"{LOAD_ERROR} Falling back to the pure-PyTorch reference implementation (slower, more memory).",
        RuntimeWarning,
        stacklevel=2,
    )


def extension_info() -> dict:
    """Facts about the compiled extension: whether it is loaded and what it was built with.

    Returns:
        A dict: loaded (bool), cuda (bool: CUDA kernels built in), cuda_version, the torch
        version it was built against (torch_version_built) and the running one (torch_version),
        openmp, cpu_isa (the instruction set the CPU kernels dispatch to) and error (why it did
        not load, else None).

    Example:
        >>> import sfrik_plugin
        >>> sfrik_plugin.extension_info()["loaded"]
        True
    """
    if _C is None:
        return {
            "loaded": False,
            "cuda": False,
            "cuda_version": None,
            "torch_version_built": _built_against(),
            "torch_version": torch.__version__,
            "openmp": False,
            "cpu_isa": None,
            "error": LOAD_ERROR,
        }
    return {
        "loaded": True,
        "cuda": bool(_C.with_cuda),
        "cuda_version": _C.cuda_version,
        "torch_version_built": _C.torch_version,
        "torch_version": torch.__version__,
        "openmp": bool(_C.openmp),
        "cpu_isa": _C.cpu_kernel_isa(),
        "error": None,
    }


def available_for(t: torch.Tensor) -> bool:
    """Whether the compiled operators have a kernel for t's device."""
    if _C is None:
        return False
    if reference_forced():
        return False
    if t.device.type in ("cpu", "meta"):  # meta: the fake kernels registered in ops.py
        return True
    return t.device.type == "cuda" and bool(_C.with_cuda)
