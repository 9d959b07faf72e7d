"""The compiled extension's state and the markers that depend on it.

Tests marked requires_cuda skip with the reason where no GPU is visible or the extension has no
CUDA kernels; with SFRIK_REQUIRE_CUDA=1 (what scripts/gpu_check.py sets) that is a failure
instead, so a GPU check cannot pass by skipping its CUDA tests (the hook is in tests/conftest.py)."""

import os

import pytest
import torch

import sfrik_plugin

EXT = sfrik_plugin.extension_info()
requires_extension = pytest.mark.skipif(
    not EXT["loaded"], reason=f"compiled extension not loaded ({EXT['error']}); CI sets SFRIK_REQUIRE_EXTENSION=1"
)
CUDA_OK = torch.cuda.is_available() and EXT["cuda"]
CUDA_MISSING = (
    None
    if CUDA_OK
    else ("no CUDA GPU visible" if not torch.cuda.is_available() else "extension built without CUDA kernels")
)
REQUIRE_CUDA_ENV = "SFRIK_REQUIRE_CUDA"
requires_cuda = pytest.mark.requires_cuda


def cuda_required() -> bool:
    return os.environ.get(REQUIRE_CUDA_ENV, "").strip().lower() in ("1", "true", "yes", "on")
