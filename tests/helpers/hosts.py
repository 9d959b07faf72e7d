"""The host tests' requirements (tests/hosts): a host library at a tested version, and Fashion-MNIST.

import_host_adapter skips the calling test module where the host is missing or untested (the reason
is the adapter's HostError, which names the fix); with SFRIK_REQUIRE_HOSTS=1 (`make test-hosts`,
CI) that is a failure instead, so CI cannot pass by skipping the host tests. fashion_mnist_folders
does the same for Debian's Fashion-MNIST files."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

from sfrik_experiments.engine.data import DEBIAN_FASHION_MNIST
from sfrik_plugin.hosts.requirements import HostError

from .processes import run_python

REQUIRE_HOSTS_ENV = "SFRIK_REQUIRE_HOSTS"


def hosts_required() -> bool:
    return os.environ.get(REQUIRE_HOSTS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def skip_or_fail(reason: str) -> None:
    if hosts_required():
        pytest.fail(f"{reason} ({REQUIRE_HOSTS_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_host_adapter(module: str) -> ModuleType:
    """The adapter module (e.g. sfrik_plugin.hosts.stable_pretraining); at module level of a test file."""
    try:
        return importlib.import_module(module)
    except HostError as error:
        skip_or_fail(str(error))
        raise  # not reached: skip_or_fail raises


def fashion_mnist_folders(out: Path, train_per_class: int, val_per_class: int) -> Path:
    """out/train and out/val from Debian's Fashion-MNIST files, by the documented command."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        skip_or_fail(f"no Fashion-MNIST at {DEBIAN_FASHION_MNIST}: apt-get install dataset-fashion-mnist")
    run_python(
        "-m", "sfrik_experiments.engine.image_folder", "--out", out, "--no-download", "--tuning-per-class", "0",
        "--train-per-class", train_per_class, "--val-per-class", val_per_class,
    )  # fmt: skip
    return out
