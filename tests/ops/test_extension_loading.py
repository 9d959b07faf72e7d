"""Loading faults, simulated in fresh interpreters: a missing extension, an extension built for
another torch, and the SFRIK_REQUIRE_EXTENSION switch."""

import os
import subprocess

import pytest
from helpers.extension import PROBE
from helpers.processes import run_code

import sfrik_plugin

PRELUDES = {
    # The binary cannot be imported (not built, or a broken build).
    "missing": "import sys; sys.modules['sfrik_plugin._C'] = None",
    # The installed torch is not the one the extension was built against.
    "mismatch": "import torch; torch.__version__ = '0.0.1'",
}


def _run(prelude: str, require: bool) -> subprocess.CompletedProcess:
    switch = {"SFRIK_REQUIRE_EXTENSION": "1"} if require else {}
    return run_code(
        prelude + "\n" + PROBE, unset_env=["SFRIK_REQUIRE_EXTENSION"], set_env=switch, timeout=120, check=False
    )


@pytest.mark.parametrize("fault", sorted(PRELUDES))
@pytest.mark.fresh_interpreter
def test_fault_falls_back_with_one_warning(fault):
    proc = _run(PRELUDES[fault], require=False)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED False" in proc.stdout
    assert "WARNINGS 1" in proc.stdout  # once, although the API was called twice
    assert "rebuild" in proc.stdout and "pure-PyTorch reference" in proc.stdout
    if fault == "mismatch":
        assert "built against torch" in proc.stdout and "0.0.1" in proc.stdout


@pytest.mark.parametrize("fault", sorted(PRELUDES))
@pytest.mark.fresh_interpreter
def test_fault_is_an_error_when_the_extension_is_required(fault):
    proc = _run(PRELUDES[fault], require=True)
    assert proc.returncode != 0
    assert "ExtensionError" in proc.stderr and "rebuild" in proc.stderr
    assert "SFRIK_REQUIRE_EXTENSION=1 forbids" in proc.stderr


def test_required_extension_is_loaded_here():
    # CI runs the suite with SFRIK_REQUIRE_EXTENSION=1: then the compiled operators are the ones tested.
    if os.environ.get("SFRIK_REQUIRE_EXTENSION") != "1":
        pytest.skip("SFRIK_REQUIRE_EXTENSION is not set")
    info = sfrik_plugin.extension_info()
    assert info["loaded"] and info["error"] is None and info["torch_version_built"] == info["torch_version"]


@pytest.mark.fresh_interpreter
def test_device_without_kernels_falls_back_once(monkeypatch):
    # What a CUDA tensor meets in a CPU-only build, simulated on the CPU: the reference runs,
    # with one warning per device type; with the extension required it is an error.
    import importlib
    import warnings

    import torch

    from sfrik_plugin import _extension

    series = importlib.import_module("sfrik_plugin.series")

    if not _extension.extension_info()["loaded"]:
        pytest.skip("compiled extension not loaded")
    monkeypatch.setattr(_extension, "available_for", lambda t: False)
    monkeypatch.setattr(series, "_warned_devices", set())
    monkeypatch.delenv("SFRIK_REQUIRE_EXTENSION", raising=False)
    t = torch.linspace(-1, 1, 7, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 3)
        sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 3, reduction="sum")
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == [
        series.fallback_warning("cpu")
    ]
    assert "using the pure-PyTorch fallback on cpu" in series.fallback_warning("cpu")
    assert "pip install --no-build-isolation --force-reinstall --no-deps" in series.fallback_warning("cpu")
    torch.testing.assert_close(a, t + (3 * t**2 - 1))
    monkeypatch.setenv("SFRIK_REQUIRE_EXTENSION", "1")
    with pytest.raises(RuntimeError, match="built without cpu kernels; SFRIK_REQUIRE_EXTENSION=1 forbids"):
        sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 3)


def test_the_cuda_fallback_warning_names_the_build_command_and_its_toolkit():
    # What a GPU user with a CPU-only build reads: the command of README.md's build section and the
    # toolkit it needs.
    from pathlib import Path

    from sfrik_plugin import series

    message = series.fallback_warning("cuda")
    assert message.startswith("sfrik_plugin._C was built without CUDA kernels: using the pure-PyTorch fallback")
    command = "pip install --no-build-isolation --force-reinstall --no-deps"
    assert command in message
    for needed in ("CUDA toolkit", "nvcc", "torch.version.cuda", "CUDA_HOME", "FORCE_CUDA=1", "TORCH_CUDA_ARCH_LIST"):
        assert needed in message, needed
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Building with or without CUDA")[1].split("\n## ")[0]
    assert (
        "pip install --no-build-isolation" in section
        and "FORCE_CUDA=1" in section
        and "TORCH_CUDA_ARCH_LIST" in section
    )


def test_meta_tensors_use_the_fake_kernels():
    import torch

    if not sfrik_plugin.extension_info()["loaded"]:
        pytest.skip("compiled extension not loaded")
    t = torch.empty(5, 3, device="meta").T
    out = sfrik_plugin.legendre_series(t, [0.0, 1.0], 3)
    assert out.device.type == "meta" and out.shape == (3, 5) and out.stride() == torch.empty_like(t).stride()
    assert sfrik_plugin.legendre_series(t, [0.0, 1.0], 3, reduction="mean").shape == ()
