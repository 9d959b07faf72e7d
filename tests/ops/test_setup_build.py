"""setup.py's construction of the extension, without building it: the CUDA include order (the
toolkit's headers before the copies in torch's nvidia-* wheels), and when a built binary may be
reused instead (SFRIK_REUSE_EXTENSION=1)."""

import importlib.util
import json
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


def test_a_reused_build_must_match_the_torch_the_kernels_and_the_sources(setup_module, tmp_path):
    # SFRIK_REUSE_EXTENSION=1 (make hosts): the in-place binary stands for this build only if all hold
    problem = setup_module.reuse_problem
    binary, info, source = tmp_path / "_C.so", tmp_path / "_build_info.json", tmp_path / "kernel.cpp"
    args = (str(binary), str(info), [str(source)])
    source.write_text("")
    assert problem(*args, False) == f"{binary} or its _build_info.json is missing"
    binary.write_bytes(b"")
    info.write_text(json.dumps({"torch_version": "2.0.0", "cuda": False}))
    assert "built for torch 2.0.0 (CUDA kernels: False)" in problem(*args, False)
    info.write_text(json.dumps({"torch_version": setup_module.torch.__version__, "cuda": False}))
    assert f"and this build is for torch {setup_module.torch.__version__} (CUDA kernels: True)" in problem(*args, True)
    os.utime(binary, (1000, 1000))
    os.utime(source, (2000, 2000))
    assert problem(*args, False) == f"{source} is newer than {binary}"
    os.utime(binary, (3000, 3000))
    assert problem(*args, False) is None
