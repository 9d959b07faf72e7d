"""setup.py's construction of the extension, without building it: the CUDA include order (the
toolkit's headers before the copies in torch's nvidia-* wheels)."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup_module(monkeypatch):
    """setup.py imported as a module (its setup() call only runs as __main__), with CUDA_HOME set
    beforehand so that importing it leaves the environment as it was."""
    if not (ROOT / "setup.py").is_file():
        pytest.skip("not run from a checkout (no setup.py)")
    monkeypatch.setenv("CUDA_HOME", os.environ.get("CUDA_HOME") or "/usr/local/cuda")
    monkeypatch.chdir(ROOT)  # get_extensions globs the sources relative to the checkout
    spec = importlib.util.spec_from_file_location("sfrik_setup_under_test", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_wheel_headers_go_after_every_other_include_folder(setup_module):
    order = setup_module._include_wheel_headers_last
    dirs = ["/w/nvidia/cu13/include", "/torch/include", "/usr/local/cuda/include"]
    assert order(dirs, ["/w/nvidia/cu13/include"]) == [
        "/torch/include",
        "/usr/local/cuda/include",
        "/w/nvidia/cu13/include",
    ]
    assert order(["/a", "/b"], ["/w1", "/w2", "/w1"]) == ["/a", "/b", "/w1", "/w2"]
    assert order(["/a"], []) == ["/a"]


def test_cuda_extension_searches_the_toolkit_before_the_wheels(setup_module, monkeypatch):
    home = setup_module.CUDA_HOME
    if not setup_module._has_nvcc(home):
        pytest.skip(f"no CUDA toolkit at CUDA_HOME={home}")
    wheel = setup_module._cuda_header_dirs()
    if not wheel:
        pytest.skip("no nvidia-* wheel with cublas_v2.h installed")
    monkeypatch.setenv("FORCE_CUDA", "1")
    monkeypatch.delenv("SFRIK_CPU_ONLY", raising=False)
    monkeypatch.delenv("SFRIK_SANITIZE", raising=False)
    (ext,) = setup_module.get_extensions()
    assert any(s.endswith(".cu") for s in ext.sources)
    dirs = [os.path.realpath(d) for d in ext.include_dirs]
    toolkit = dirs.index(os.path.realpath(os.path.join(home, "include")))
    for d in wheel:
        assert toolkit < dirs.index(os.path.realpath(d)), (d, ext.include_dirs)
    assert dirs[-len(wheel) :] == [os.path.realpath(d) for d in wheel]
