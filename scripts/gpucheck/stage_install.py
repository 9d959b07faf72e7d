"""Stages a (wheels) and b (build), and the probe of the machine between them."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

from . import core
from .core import BUILD_MODULES, FAILED, PASSED, Context, Outcome, StageFailure, failed_run, package, run_checked, tail

# ---------------------------------------------------------------------------------------------
# a. wheels, and the probe of the machine


def wheels_ready(ctx: Context) -> str | None:
    if not ctx.args.wheels:
        return "no --wheels given"
    if not list(Path(ctx.args.wheels).glob("*.whl")):
        return f"no wheels (*.whl) in {ctx.args.wheels}"
    return None


def stage_wheels(ctx: Context) -> Outcome:
    folder = Path(ctx.args.wheels).resolve()
    wheels = sorted(folder.glob("*.whl"))
    pip = [ctx.python, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(folder)]
    env = {"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if ctx.dry:
        why = "dry run: never into the running interpreter"
    else:
        run = core.run_logged(ctx, "wheels", [*pip, *map(str, wheels)], env)
        if run.ok:
            return wheels_outcome(ctx, wheels, "into the interpreter's site-packages")
        why = "pip could not install into the interpreter's site-packages: wheels.log"
    target = ctx.work / "site-packages"
    run_checked(ctx, "wheels-target", [*pip, "--target", str(target), *map(str, wheels)], "pip install", env=env)
    ctx.paths.insert(0, str(target))
    return wheels_outcome(ctx, wheels, f"into {target}, on PYTHONPATH of every later command ({why})")


def wheels_outcome(ctx: Context, wheels: list[Path], where: str) -> Outcome:
    """Checks that a fresh interpreter sees every wheel's distribution."""
    names = [wheel.name.split("-")[0] for wheel in wheels]
    code = "import importlib.metadata as m, sys\nfor d in sys.argv[1:]: print(f'found {d}=={m.version(d)}')"
    run = run_checked(ctx, "wheels-check", [ctx.python, "-c", code, *names], "the installed wheels are not found")
    found = re.findall(r"^found (\S+)$", run.text, flags=re.MULTILINE)
    return Outcome(PASSED, f"installed {len(wheels)} wheels {where}; a new interpreter finds {', '.join(found)}")


def probe(ctx: Context, modules: list[str]) -> dict:
    """The interpreter, torch and its GPU, and which of the modules (the stages' packages) import."""
    ctx.deadline = time.monotonic() + 120
    run = core.run_logged(ctx, "probe", [ctx.python, str(core.PROGRAMS / "probe.py"), *modules])
    if not run.ok:
        return {"python": platform.python_version(), "torch_error": f"the probe failed: {' '.join(tail(run.text, 3))}"}
    return json.loads(run.text.strip().splitlines()[-1])


def machine_problem(ctx: Context) -> str | None:
    """Why no stage after the probe can run on this machine, or None."""
    if "torch_error" in ctx.info:
        return f"torch does not import ({ctx.info['torch_error']})"
    if not ctx.dry and not ctx.info.get("cuda_available"):
        return "no CUDA GPU is visible (torch.cuda.is_available() is False); --dry-run checks the script on the CPU"
    return None


# ---------------------------------------------------------------------------------------------
# b. build


def stage_build(ctx: Context) -> Outcome:
    if ctx.dry or ctx.args.no_build:
        note = f"reused the existing build ({'dry run' if ctx.dry else '--no-build'}: not rebuilt)"
    else:
        note = build(ctx)
    load = [ctx.python, str(core.PROGRAMS / "load_probe.py"), *([] if ctx.dry else ["cuda"])]
    run = core.run_logged(ctx, "build-load", load)
    if not run.ok:
        ctx.broken = "the extension does not load (stage b)"
        return failed_run(run, "loading the extension")
    info = json.loads(run.text.strip().splitlines()[-1])
    return Outcome(PASSED, f"{note}; loads (cuda kernels: {info['cuda']}, cpu isa {info['cpu_isa']})", [f"  {info}"])


def build(ctx: Context) -> str:
    """Builds the extension for the visible GPU: pip's editable install, else in place."""
    start, arch = time.monotonic(), ctx.info["capability"]
    missing = [package(m) for m in BUILD_MODULES if not ctx.has(m)]
    if missing:
        ctx.broken = "the build failed (stage b)"
        raise StageFailure(Outcome(FAILED, f"cannot build: missing {', '.join(missing)} (--wheels DIR)"))
    env = {
        "FORCE_CUDA": "1",
        "TORCH_CUDA_ARCH_LIST": arch,
        "MAX_JOBS": str(os.cpu_count() or 4),
        "PIP_BREAK_SYSTEM_PACKAGES": "1",  # a system interpreter (PEP 668): it is this machine's only one
    }
    pip = [ctx.python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps", "-e", "."]
    run = core.run_logged(ctx, "build", pip, env)
    how = "pip install -e ."
    if run.rc not in (0, None):
        inplace = [ctx.python, "setup.py", "-q", "build_ext", "--inplace"]
        run = core.run_logged(ctx, "build-inplace", inplace, env)
        how = "setup.py build_ext --inplace (pip install -e . failed: build.log)"
    if not run.ok:
        ctx.broken = "the build failed (stage b)"
        raise StageFailure(failed_run(run, "build"))
    return f"built with CUDA kernels for sm_{arch.replace('.', '')} by {how} in {time.monotonic() - start:.0f} s"
