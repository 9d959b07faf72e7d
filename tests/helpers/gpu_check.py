"""The GPU check (scripts/gpu_check.py, the package scripts/gpucheck/) for the tests that read its
stages and lists and stand in for its commands."""

import importlib
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SCRIPT = SCRIPTS / "gpu_check.py"
PACKAGE = SCRIPTS / "gpucheck"
SUBMODULES = ("core", "stage_install", "stage_tests", "stage_bench", "stage_apps", "cli")


class GpuCheck:
    """The package's modules seen as one for reading: check.X is X where it is defined (a constant:
    core's). A stand-in goes into the module the stages call it through: monkeypatch.setattr(
    check.core, "run_logged", ...) (the stages call core.run_logged and core.bench)."""

    def __init__(self, modules):
        object.__setattr__(self, "_modules", modules)
        object.__setattr__(self, "core", modules[0])

    def __getattr__(self, name):
        having = [m for m in self._modules if name in vars(m)]
        if not having:
            raise AttributeError(f"the GPU check defines no {name!r}")
        for module in having:
            value = vars(module)[name]
            if getattr(value, "__module__", None) == module.__name__:
                return value
        return vars(having[0])[name]  # core comes first: a constant's home

    def __setattr__(self, name, value):
        raise AttributeError(f"set {name} in the module that uses it (check.core for the commands), not here")


def gpu_check_module() -> GpuCheck:
    """The GPU check's package, freshly imported (it needs nothing beyond the standard library)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    for name in [m for m in sys.modules if m == "gpucheck" or m.startswith("gpucheck.")]:
        del sys.modules[name]
    return GpuCheck([importlib.import_module(f"gpucheck.{name}") for name in SUBMODULES])
