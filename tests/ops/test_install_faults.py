"""Install-time faults, simulated: no C++ compiler, no CUDA toolkit (setup.py must say so
before building), and a compiled extension that does not fit the installed torch or is not a
loadable binary at all (the package must fall back with one warning, or refuse with
SFRIK_REQUIRE_EXTENSION=1, naming the cause and the rebuild command). test_extension_loading.py
covers the same loader with faults injected in the interpreter instead of on disk."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.extension import PROBE
from helpers.processes import run_code

import sfrik_plugin

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(sfrik_plugin.__file__).resolve().parent
TIMEOUT_S = 180


def run_setup(tmp_path, *args, env_update=None, prelude=None) -> subprocess.CompletedProcess:
    """setup.py from the checkout, build folders in tmp_path, output merged."""
    if not (ROOT / "setup.py").is_file():
        pytest.skip("not run from a checkout (no setup.py)")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_CUDA", "SFRIK_CPU_ONLY", "SFRIK_SANITIZE")}
    env.update(env_update or {})
    cmd = [sys.executable, "setup.py", *args]
    if prelude:  # setup.py run by runpy after the prelude (what cannot be set from outside)
        argv = ["setup.py", *args]
        code = f"{prelude}\nimport runpy, sys\nsys.argv = {argv!r}\nrunpy.run_path('setup.py', run_name='__main__')"
        cmd = [sys.executable, "-c", code]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S
    )


def build_ext_args(tmp_path):
    return ["build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")]


# ---------------------------------------------------------------------------------------------
# setup.py


@pytest.mark.parametrize("how", ["CXX", "PATH"])
def test_no_compiler_is_named_before_building(tmp_path, how):
    env = {"CXX": "/nonexistent/bin/c++"} if how == "CXX" else {"PATH": str(tmp_path / "empty")}
    proc = run_setup(tmp_path, *build_ext_args(tmp_path), env_update=env)
    assert proc.returncode != 0
    expected = "'/nonexistent/bin/c++'" if how == "CXX" else "'c++'"
    assert f"setup.py: cannot build sfrik_plugin._C: C++ compiler (CXX) {expected}" in proc.stdout, proc.stdout[-3000:]
    assert "Install a C++17 compiler" in proc.stdout
    assert not (tmp_path / "lib").exists()  # stopped before compiling anything


def test_force_cuda_without_toolkit_is_named(tmp_path):
    home = tmp_path / "no-cuda"
    home.mkdir()
    proc = run_setup(tmp_path, "--name", env_update={"FORCE_CUDA": "1", "CUDA_HOME": str(home)})
    assert proc.returncode != 0
    assert f"FORCE_CUDA=1 but no CUDA toolkit was found (CUDA_HOME={home}, no bin/nvcc there)" in proc.stdout
    assert "SFRIK_CPU_ONLY=1" in proc.stdout


def test_gpu_without_toolkit_builds_cpu_kernels_with_a_warning(tmp_path):
    # A machine where torch sees a GPU but no toolkit is installed: CPU kernels, said clearly.
    home = tmp_path / "no-cuda"
    home.mkdir()
    proc = run_setup(
        tmp_path,
        "--name",
        env_update={"CUDA_HOME": str(home)},
        prelude="import torch\ntorch.cuda.is_available = lambda: True",
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "warning: torch sees a GPU but no CUDA toolkit was found" in proc.stdout
    assert "building the extension for CPU only" in proc.stdout


def test_contradicting_switches_are_named(tmp_path):
    proc = run_setup(tmp_path, "--name", env_update={"FORCE_CUDA": "1", "SFRIK_CPU_ONLY": "1"})
    assert proc.returncode != 0 and "SFRIK_CPU_ONLY=1 and FORCE_CUDA=1 contradict each other" in proc.stdout
    proc = run_setup(tmp_path, "--name", env_update={"FORCE_CUDA": "1", "SFRIK_SANITIZE": "1"})
    assert proc.returncode != 0 and "SFRIK_SANITIZE=1 builds the CPU kernels only" in proc.stdout


# ---------------------------------------------------------------------------------------------
# The compiled extension on disk


def copy_package(tmp_path) -> Path:
    """The package's top-level modules with its compiled extension and build info, in tmp_path."""
    binaries = sorted(PACKAGE.glob("_C*.so")) + sorted(PACKAGE.glob("_C*.pyd"))
    if not binaries or not (PACKAGE / "_build_info.json").is_file():
        pytest.skip("no compiled extension in the package (build it first)")
    dest = tmp_path / "pkg" / "sfrik_plugin"
    dest.mkdir(parents=True)
    for source in [*PACKAGE.glob("*.py"), *binaries, PACKAGE / "_build_info.json"]:
        shutil.copy(source, dest / source.name)
    return dest


def run_probe(tmp_path, pkg: Path, require: bool, prelude: str = "") -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(pkg.parent), **({"SFRIK_REQUIRE_EXTENSION": "1"} if require else {})}
    # checked after the probe: importing the package is what warns, inside the probe's recorder
    check = f"\nimport sfrik_plugin as _p\nassert _p.__file__.startswith({str(pkg)!r}), _p.__file__\n"
    return run_code(
        prelude + "\n" + PROBE + check,
        cwd=tmp_path,
        unset_env=["SFRIK_REQUIRE_EXTENSION"],
        set_env=env,
        timeout=TIMEOUT_S,
        check=False,
    )


def corrupt_binary(pkg: Path):
    for so in pkg.glob("_C*"):
        if so.suffix in (".so", ".pyd"):
            so.write_bytes(b"not a shared object\n" * 64)


def built_for_other_torch(pkg: Path):
    (pkg / "_build_info.json").write_text(json.dumps({"torch_version": "1.13.0", "cuda": False}))


def no_build_info(pkg: Path):
    (pkg / "_build_info.json").unlink()


FAULTS = {
    # a truncated download, another platform's binary: the loader cannot even open it
    "corrupt_binary": (corrupt_binary, "", ["sfrik_plugin._C could not be loaded", "rebuild"]),
    # torch upgraded after the build: refused from _build_info.json, before the binary is loaded
    # (an ABI mismatch can fail in obscure ways)
    "other_torch": (
        built_for_other_torch,
        "import sys, atexit\natexit.register(lambda: print('C IMPORTED', 'sfrik_plugin._C' in sys.modules))",
        ["built against torch 1.13.0, but torch", "is installed", "rebuild"],
    ),
    # no build info (copied by hand): the binary's own record of its torch is checked after loading
    "no_build_info": (
        no_build_info,
        "import torch; torch.__version__ = '0.0.1'",
        ["was built against torch", "but torch 0.0.1 is installed", "rebuild"],
    ),
}


def probe_damaged(tmp_path, fault: str, require: bool):
    """The probe's run on a copy of the package damaged as FAULTS[fault] says, and the texts its
    message must contain."""
    damage, prelude, expected = FAULTS[fault]
    pkg = copy_package(tmp_path)
    damage(pkg)
    return run_probe(tmp_path, pkg, require=require, prelude=prelude), expected


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_unusable_extension_falls_back_with_one_warning(tmp_path, fault):
    proc, expected = probe_damaged(tmp_path, fault, require=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED False" in proc.stdout and "WARNINGS 1" in proc.stdout, proc.stdout
    assert "pure-PyTorch reference" in proc.stdout
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout)
    if fault == "other_torch":
        assert "C IMPORTED False" in proc.stdout


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_unusable_extension_is_an_error_when_required(tmp_path, fault):
    proc, expected = probe_damaged(tmp_path, fault, require=True)
    assert proc.returncode != 0
    assert "ExtensionError" in proc.stderr and "SFRIK_REQUIRE_EXTENSION=1 forbids" in proc.stderr
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr[-3000:])


def test_intact_copy_loads(tmp_path):
    # the copy itself is sound: the faults above are what breaks it
    pkg = copy_package(tmp_path)
    proc = run_probe(tmp_path, pkg, require=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED True" in proc.stdout and "WARNINGS 0" in proc.stdout
