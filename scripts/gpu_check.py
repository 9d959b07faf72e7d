"""The GPU check: one prepared command that builds, tests and measures the plugin on a CUDA GPU.

    python3 scripts/gpu_check.py --out OUT [--wheels DIR] [--solo-learn-dir DIR]   # (make gpu-check)
    python3 scripts/gpu_check.py --dry-run --out OUT    # every stage on the CPU at tiny sizes

It runs with the interpreter that runs it (on the lent GPU machine: the preinstalled python3, no
venv) and imports nothing but the standard library: every stage runs commands (pip, pytest,
compute-sanitizer, `python -m sfrik_plugin.bench SUITE`, sfrik-demo, solo-learn's scripts), each in
its own process group under the stage's time limit (SIGINT at the limit, so that pytest still
writes what ran, then SIGKILL), and reads what they write. The whole run stays within --budget
seconds (570 by default): a stage that would start with less than 10 s left is skipped and says
so. Each stage is reported as passed, failed or skipped with the reason (the rest of the suite,
stopped at its limit with no failure, as partial); a stage whose packages are missing is skipped,
naming them.

  a wheels      with --wheels DIR: pip install --no-index --no-deps --find-links DIR of every wheel
                in DIR into the interpreter's site-packages, or, where pip cannot (and always in the
                dry run), --target a scratch folder put on PYTHONPATH for every later command; then
                the packages every stage needs are looked up (report.md lists what is missing).
  b build       pip install --no-build-isolation --no-deps -e . with FORCE_CUDA=1 and
                TORCH_CUDA_ARCH_LIST of the visible GPU (setup.py build_ext --inplace where pip
                cannot install), then checks that the extension loads with CUDA kernels. The dry
                run and --no-build reuse the existing build and say so.
  c cuda-tests  pytest -m requires_cuda -n 8 (pytest-xdist; serial without it) with
                SFRIK_REQUIRE_EXTENSION=1 and SFRIK_REQUIRE_CUDA=1: a skipped CUDA test fails.
                Dry run: tests/ops/test_cuda_kernels.py, which skips on a CPU.
  d tests       the rest of the suite (-m "not requires_cuda", this script's own test left out),
                -n 8, in the time the later stages leave (their expected times are set aside);
                stopped at its limit it reports what ran. Dry run: tests/bench/test_bench_losses.py.
  e sanitizer   compute-sanitizer memcheck and racecheck over the CUDA operator tests, checking the
                sfrik kernels only, where the toolkit has compute-sanitizer.
  f bandwidth   sfrik-bench bandwidth at n = 16384, float32 and bfloat16: the operator's forward,
                backward, both, the fused value_and_grad, the fallback without CUDA kernels
                (torch.compile's Triton kernels) and a device copy: GB/s, ratio to the copy. Then
                sfrik-bench gram: the Gram product in 1-8 row blocks against the full product, n in
                {1024, 2048, 4096}, q in {8192, 32768}, float32, TF32 and bf16 (what
                gram.GRAM_BLOCKS["cuda"] is chosen from).
  g losses      sfrik-bench losses at n = 2048, q in {8192, 16384, 32768}, float32 (with SFRIK on
                the fallback paths) and under bf16 autocast: SFRIK (float32, TF32 and bf16 Gram),
                VICReg, Barlow Twins, SimCLR, SIGReg, MMCR (float32 only; it and any method whose
                warm-up call takes over 0.25 s timed once, after the others); the summary gives
                issue 32's targets: SFRIK / its floor <= 1.0 and below SIGReg at each q.
  h step        sfrik-bench step: ResNet-50 + projector 2048-8192-8192-q, 2 x 256 images of 224 px,
                bf16 autocast, q in {8192, 16384, 32768}: each method's training step and its
                overhead over the step without a loss.
  i tiles       sfrik-bench tiled --sweep-only: the tile sweep at n x q = 16384 x 4096 and
                32768 x 1024, and the best tile for sfrik_plugin.tiled.DEFAULT_TILE_SIZE["cuda"]
                (a reviewed one-line change: the package reads no machine-specific file).
  j demo        one epoch of sfrik-demo on the GPU (Fashion-MNIST where it is on disk, otherwise a
                generated image folder; no download); without lightly or solo-learn, SFRIK and AUH.
  k solo-learn  with --solo-learn-dir and solo-learn importable: main_pretrain.py (sfrik_cpu
                protocol on the GPU, 40 steps of batch 8 on a generated image folder), then
                main_knn.py (through sfrik-knn) on its checkpoint.

Writes into --out at most 8 files, what the GPU machine hands back: report.md (one line per stage,
the missing packages, then the figures), the CSVs bandwidth.csv, losses.csv, step.csv,
tile_sweep.csv and demo_results.csv, and logs.tar.gz (every command's log, the JUnit XML, the
demo's other outputs). Scratch files (image folders, checkpoints) go to a temporary folder that is
removed at the end. Exits 1 if a stage failed (a failed test included), 2 if this machine cannot
run the check (torch missing, or no CUDA GPU without --dry-run), 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSED, FAILED, SKIPPED, PARTIAL = "passed", "failed", "skipped", "partial"
DEFAULT_BUDGET_S = 570
MIN_STAGE_S = 10
MIN_ELASTIC_S = 30  # the rest of the suite is not started for less
INTERRUPT_GRACE_S = 10  # after SIGINT at a limit, before SIGKILL
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
REPORT, ARCHIVE = "report.md", "logs.tar.gz"
CSVS = {
    "bandwidth": "bandwidth.csv",
    "losses": "losses.csv",
    "step": "step.csv",
    "tiles": "tile_sweep.csv",
    "demo": "demo_results.csv",
    "gram": "gram.csv",
}
MAX_OUT_FILES = 8  # what the GPU machine hands back
# Outputs of earlier versions of this script: removed from --out with this run's, never mistaken for them.
OLD_OUTPUTS = ("op_bandwidth.csv", "losses_float32.csv", "losses_bf16_autocast.csv", "tile_default.json", "tests.xml")
# Import name -> what to install, where they differ.
PACKAGES = {"xdist": "pytest-xdist", "hydra": "hydra-core", "solo": "solo-learn", "PIL": "pillow"}
BASELINE_MODULES = ("solo", "lightly")  # either provides VICReg, Barlow Twins and SimCLR
TEST_MODULES = ("torch", "pytest", "numpy", "scipy", "hypothesis", "mpmath")
BUILD_MODULES = ("pip", "setuptools")  # only to build: --no-build and the dry run reuse a build


def _package_module(relative: str):
    """A dependency-free module of the package, read from its file: importing sfrik_plugin itself
    would load torch and the extension that the build stage is about to build."""
    name = "gpu_check_" + Path(relative).stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None, relative
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


command_line = _package_module("sfrik_plugin/utils/arguments.py").command_line


@dataclass
class Outcome:
    status: str
    summary: str
    details: list[str] = field(default_factory=list)


class StageFailure(Exception):
    """Raised inside a stage when a command it needs failed: carries the stage's outcome."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.summary)
        self.outcome = outcome


@dataclass
class Context:
    """What the stages share: the options, the folders, the probed machine, the stage's deadline."""

    args: argparse.Namespace
    out: Path
    work: Path  # scratch: removed at the end
    logs: Path  # packed into logs.tar.gz
    dry: bool
    python: str = sys.executable
    paths: list[str] = field(default_factory=lambda: [str(ROOT)])  # PYTHONPATH of every command
    info: dict = field(default_factory=dict)  # the probe's answer
    broken: str | None = None  # why the stages after the build cannot run
    deadline: float = 0.0  # time.monotonic() at which the running stage's limit ends

    def env(self, extra: dict | None = None) -> dict:
        """The environment of a command: this one's, the package and any wheels on PYTHONPATH."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*self.paths, *filter(None, [os.environ.get("PYTHONPATH")])])
        env.setdefault("MPLBACKEND", "Agg")  # no display on the GPU machine
        env.update(extra or {})
        return env

    def has(self, module: str) -> bool:
        return bool(self.info.get("modules", {}).get(module))

    def left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class Stage:
    key: str
    name: str
    run: Callable[[Context], Outcome]
    limit_s: tuple[int, int]  # (on a GPU, in the dry run)
    expect_s: tuple[int, int]  # typical duration (GPU, dry run): what the elastic stage sets aside for it
    needs: tuple[str, ...] = ()  # import names; missing ones skip the stage
    ready: Callable[[Context], str | None] = lambda ctx: None  # another reason to skip, or None
    elastic: bool = False  # takes the time the later stages leave


# ---------------------------------------------------------------------------------------------
# Commands


@dataclass
class Run:
    """A finished command: its exit status (None: stopped at its limit), its log, its limit."""

    rc: int | None
    text: str
    limit_s: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def stopped_after(self, q: object) -> str:
        """What a suite that ran past its limit finished, in the report's words."""
        return f"stopped at its {self.limit_s:.0f} s limit after q = {q}"


def run_logged(
    ctx: Context, name: str, cmd: list[str], env: dict | None = None, cwd: Path | None = None, limit: float = 1e9
) -> Run:
    """Runs cmd with its output in logs/<name>.log, within the stage's deadline (and limit)."""
    log = ctx.logs / f"{name}.log"
    timeout = max(1.0, min(limit, ctx.left()))
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd or ROOT,
            env=ctx.env(env),
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_interruptible,
        )
        rc = wait_or_stop(proc, timeout)
    return Run(rc, log.read_text(errors="replace"), timeout)


def _interruptible() -> None:
    """In the child before exec: SIGINT back to its default. A script started in the background
    (`cmd &`, nohup) inherits SIGINT ignored, and a Python child then installs no KeyboardInterrupt
    handler: wait_or_stop's SIGINT would not let pytest write its report."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_or_stop(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit status, or None when timeout passed first: the command then gets SIGINT (pytest
    still writes its JUnit XML), and its process group SIGKILL if it has not ended
    INTERRUPT_GRACE_S later. Whatever the command left running in its group is ended too."""
    try:
        rc: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what this command started
    except ProcessLookupError:
        pass
    proc.wait()
    return rc


def tail(text: str, lines: int = 12) -> list[str]:
    return ["    " + line for line in text.strip().splitlines()[-lines:]]


def failed_run(run: Run, what: str) -> Outcome:
    reason = f"timed out after {run.limit_s:.0f} s" if run.rc is None else f"exit status {run.rc}"
    return Outcome(FAILED, f"{what}: {reason}", tail(run.text))


def run_checked(ctx: Context, name: str, cmd: list[str], what: str, **options) -> Run:
    """run_logged, the stage failing (StageFailure) unless the command exits with 0."""
    run = run_logged(ctx, name, cmd, **options)
    if not run.ok:
        raise StageFailure(failed_run(run, what))
    return run


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def package(module: str) -> str:
    return PACKAGES.get(module, module)


IMAGE_FOLDER = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
root, classes, per_class, size = Path(sys.argv[1]), *map(int, sys.argv[2:])
rng = np.random.default_rng(0)
for c in range(classes):
    folder = root / f"class{c}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        image = rng.integers(0, 64, size=(size, size, 3), dtype=np.uint8)
        image[:, :, c % 3] += np.uint8(120)
        image[(c * 3) % size :: max(2, c + 2), :, :] = 230
        Image.fromarray(image).save(folder / f"{i}.png")
"""


def make_image_folder(ctx: Context, name: str, classes: int, per_class: int, size: int) -> Path:
    """Class subfolders of PNG images whose colour and stripes depend on the class (learnable), in
    the scratch folder."""
    root = ctx.work / name
    cmd = [ctx.python, "-c", IMAGE_FOLDER, str(root), str(classes), str(per_class), str(size)]
    run_checked(ctx, f"images-{name}", cmd, "generating the image folder")
    return root


def bench(
    ctx: Context, name: str, suite_args: list[str], csv_path: Path, what: str, partial: bool = False
) -> tuple[Run, list[dict]]:
    """`python -m sfrik_plugin.bench SUITE_ARGS --csv csv_path`, which must succeed: (run, CSV rows).
    With partial, a run stopped at its limit after some cells (the long suites rewrite their CSV
    after each) gives those rows, and run.rc is None."""
    cmd = [ctx.python, "-m", "sfrik_plugin.bench", *suite_args, "--csv", str(csv_path), "--overwrite"]
    run = run_logged(ctx, name, cmd, env={"SFRIK_REQUIRE_EXTENSION": "1"})
    if partial and run.rc is None and csv_path.exists():
        rows = read_csv(csv_path)
        if rows:
            return run, rows
    if not run.ok:
        raise StageFailure(failed_run(run, what))
    if not csv_path.exists():
        raise StageFailure(Outcome(FAILED, f"{what} wrote no {csv_path.name}", tail(run.text)))
    return run, read_csv(csv_path)


def baselines_note(ctx: Context) -> str:
    if any(ctx.has(m) for m in BASELINE_MODULES):
        return ""
    return "; VICReg, Barlow Twins and SimCLR not measured: neither solo-learn nor lightly is installed"


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
        run = run_logged(ctx, "wheels", [*pip, *map(str, wheels)], env)
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


PROBE = """
import importlib.util, json, platform, sys
info = {"python": platform.python_version(), "executable": sys.executable,
        "modules": {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}}
try:
    import torch
except ImportError as error:
    info["torch_error"] = str(error)
else:
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpus=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
                    sms=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1))
print(json.dumps(info))
"""


def probed_modules() -> list[str]:
    """Every package a stage needs or uses where it is installed (import names)."""
    needed = {m for s in STAGES for m in s.needs}
    return sorted(needed | {*TEST_MODULES, *BUILD_MODULES, "xdist", *BASELINE_MODULES})


def probe(ctx: Context) -> dict:
    """The interpreter, torch and its GPU, and which of the stages' packages import."""
    ctx.deadline = time.monotonic() + 120
    run = run_logged(ctx, "probe", [ctx.python, "-c", PROBE, *probed_modules()])
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

LOAD_PROBE = """
import json, torch, sfrik_plugin
info = sfrik_plugin.extension_info()
print(json.dumps(info))
assert info["loaded"], info
if {need_cuda}:
    assert info["cuda"], "the extension has no CUDA kernels"
    t = torch.linspace(-1, 1, 101, device="cuda", dtype=torch.float64)
    got = sfrik_plugin.legendre(t, 3, 3).cpu()
    assert torch.allclose(got, sfrik_plugin.legendre(t.cpu(), 3, 3), rtol=0, atol=1e-12)
"""


def stage_build(ctx: Context) -> Outcome:
    if ctx.dry or ctx.args.no_build:
        note = f"reused the existing build ({'dry run' if ctx.dry else '--no-build'}: not rebuilt)"
    else:
        note = build(ctx)
    run = run_logged(ctx, "build-load", [ctx.python, "-c", LOAD_PROBE.format(need_cuda=not ctx.dry)])
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
    run = run_logged(ctx, "build", pip, env)
    how = "pip install -e ."
    if run.rc not in (0, None):
        inplace = [ctx.python, "setup.py", "-q", "build_ext", "--inplace"]
        run = run_logged(ctx, "build-inplace", inplace, env)
        how = "setup.py build_ext --inplace (pip install -e . failed: build.log)"
    if not run.ok:
        ctx.broken = "the build failed (stage b)"
        raise StageFailure(failed_run(run, "build"))
    return f"built with CUDA kernels for sm_{arch.replace('.', '')} by {how} in {time.monotonic() - start:.0f} s"


# ---------------------------------------------------------------------------------------------
# c, d. tests


def junit_counts(path: Path) -> dict:
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts: dict = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    cases = [case for s in suites for case in s.iter("testcase")]
    counts["failed_names"] = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in cases
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts


def run_pytest(ctx: Context, name: str, marker: str, targets: list[str], env: dict, note: str, partial=False):
    """pytest -m marker over targets, in parallel where pytest-xdist is installed: its outcome from
    the JUnit XML. Stopped at the limit with no failure, the outcome is partial where partial is
    allowed, failed otherwise."""
    xml = ctx.logs / f"{name}.xml"
    if ctx.has("xdist"):
        parallel = ["-n", "2" if ctx.dry else "8"]
    else:
        parallel, note = [], f"{note} (pytest-xdist missing: one process)"
    cmd = [ctx.python, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--durations=10"]
    cmd += [f"--junitxml={xml}", "-m", marker, *parallel, *targets]
    run = run_logged(ctx, name, cmd, env)
    if not xml.exists():
        return progress_outcome(run, note) if partial and run.rc is None else failed_run(run, "pytest")
    counts = junit_counts(xml)
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    summary = (
        f"{note}: {passed} passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped"
    )
    details = [f"  failed: {test}" for test in counts["failed_names"]]
    if run.rc is None:
        summary += f"; stopped at the {run.limit_s:.0f} s limit"
        status = PARTIAL if partial and not (counts["failures"] or counts["errors"]) else FAILED
        return Outcome(status, summary, details + tail(run.text, 8))
    if run.rc != 0 or counts["failures"] or counts["errors"]:
        return Outcome(FAILED, summary, details + tail(run.text, 20))
    return Outcome(PASSED, summary, details)


PROGRESS_LINE = re.compile(r"^([.sxXFE]+)\s*(\[\s*\d+%\])?$")


def progress_outcome(run: Run, note: str) -> Outcome:
    """A run stopped at its limit that wrote no JUnit XML (pytest-xdist's controller can end
    before writing it): what ran, counted from pytest's -q progress characters."""
    marks = "".join(m.group(1) for line in run.text.splitlines() if (m := PROGRESS_LINE.match(line.strip())))
    failed = marks.count("F") + marks.count("E")
    summary = (
        f"{note}: {marks.count('.')} passed, {failed} failed or errors, {marks.count('s')} skipped "
        f"(from pytest's progress: no JUnit XML after the stop); stopped at the {run.limit_s:.0f} s limit"
    )
    return Outcome(FAILED if failed or not marks else PARTIAL, summary, tail(run.text, 8))


def suite_env(ctx: Context) -> dict:
    """What every pytest run of the check sets: the extension required, CUDA too on a GPU."""
    return {"SFRIK_REQUIRE_EXTENSION": "1", "SFRIK_REQUIRE_CUDA": "0" if ctx.dry else "1"}


def stage_cuda_tests(ctx: Context) -> Outcome:
    if ctx.dry:
        targets, note = ["tests/ops/test_cuda_kernels.py"], "dry run: tests/ops/test_cuda_kernels.py on the CPU"
    else:
        targets, note = ["tests"], "every requires_cuda test, SFRIK_REQUIRE_CUDA=1"
    return run_pytest(ctx, "cuda-tests", "requires_cuda", targets, suite_env(ctx), note)


def stage_tests(ctx: Context) -> Outcome:
    if ctx.dry:
        targets, note = ["tests/bench/test_bench_losses.py"], "dry run: tests/bench/test_bench_losses.py"
    else:
        # This script's own test runs the dry run of the whole check: minutes, and nothing the GPU adds.
        targets, note = ["tests", "--ignore=tests/scripts/test_gpu_check.py"], "the rest of the suite"
    return run_pytest(ctx, "tests", "not requires_cuda", targets, suite_env(ctx), note, partial=True)


# ---------------------------------------------------------------------------------------------
# e. compute-sanitizer

# The CUDA cases (-m requires_cuda) of these tests: values against scipy, the CUDA kernel against
# the CPU kernel, reductions, layouts, the recurrence tables, gradients, the tiled operator.
SANITIZED_FILES = (
    "tests/ops/test_cuda_kernels.py",
    "tests/ops/test_legendre_values.py",
    "tests/ops/test_legendre_grad.py",
    "tests/losses/test_tiled.py",
)
SANITIZED_TESTS = (
    "series_matches_scipy or within_a_few_ulp or reduction or noncontiguous or empty_inputs or high_degree_tables"
    " or gradcheck_and_gradgradcheck or op_in_float32_and_float64"
)


def find_sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and Path(home, "bin", "compute-sanitizer").is_file():
            return str(Path(home, "bin", "compute-sanitizer"))
    return None


def sanitizer_ready(ctx: Context) -> str | None:
    tool = find_sanitizer()
    if tool is None:
        return "compute-sanitizer not found (not in PATH, CUDA_HOME/bin or /usr/local/cuda/bin)"
    if ctx.dry:
        return f"dry run: no CUDA GPU to run it on ({tool} found)"
    return None


def stage_sanitizer(ctx: Context) -> Outcome:
    tool, lines, failed = find_sanitizer(), [], False
    pytest = [ctx.python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SANITIZED_FILES]
    pytest += ["-m", "requires_cuda", "-k", SANITIZED_TESTS]
    for check in ("memcheck", "racecheck"):
        cmd = [str(tool), "--tool", check, "--kernel-name", "kns=sfrik", "--error-exitcode", "3", *pytest]
        # memcheck gets half the stage's time, racecheck the rest
        limit = ctx.left() / 2 if check == "memcheck" else ctx.left()
        run = run_logged(ctx, f"sanitizer-{check}", cmd, suite_env(ctx), limit=limit)
        errors = re.findall(r"ERROR SUMMARY: (\d+) error", run.text)
        if run.ok:
            lines.append(f"{check}: no error ({errors[-1] if errors else '0'} errors)")
            continue
        failed = True
        reason = "timed out" if run.rc is None else f"exit status {run.rc}, errors: {errors[-1] if errors else '?'}"
        lines.append(f"{check}: {reason}")
    return Outcome(FAILED if failed else PASSED, "; ".join(lines), ["  logs/sanitizer-*.log"])


# ---------------------------------------------------------------------------------------------
# f-i. the benchmark suites (sfrik-bench)


def stage_bandwidth(ctx: Context) -> Outcome:
    size = {"device": "cpu", "n": 256, "repeats": 2} if ctx.dry else {"device": "cuda", "n": 16384}
    path = ctx.out / CSVS["bandwidth"]
    _, rows = bench(ctx, "bandwidth", ["bandwidth", *command_line(size)], path, "sfrik-bench bandwidth")
    details = [
        f"  {r['op']:<19} {r['dtype']:<9} n = {r['n']}: {float(r['ms_median']):8.3f} ms, "
        f"{float(r['gb_per_s']):8.1f} GB/s, {float(r['fraction_of_copy']):5.0%} of a copy"
        + (f", {float(r['fraction_of_peak']):4.0%} of the peak" if r["fraction_of_peak"] else "")
        if r["status"] == "ok"
        else f"  {r['op']:<19} {r['dtype']:<9} {r['status']}"
        for r in rows
    ]
    summaries = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        ratios = ", ".join(
            f"{r['op']} {float(r['fraction_of_copy']):.0%}"
            for r in rows
            if r["dtype"] == dtype and r["status"] == "ok" and r["op"] != "device copy"
        )
        copy = next(float(r["gb_per_s"]) for r in rows if r["dtype"] == dtype and r["op"] == "device copy")
        summaries.append(f"{dtype}: {ratios} of a device copy ({copy:.0f} GB/s)")
    gram_summary, gram_details = gram_blocks(ctx)
    summary = f"n = {rows[0]['n']}: " + "; ".join(summaries) + f"; {path.name}; {gram_summary}"
    return Outcome(PASSED, summary, details + gram_details)


def gram_blocks(ctx: Context) -> tuple[str, list[str]]:
    """sfrik-bench gram: the Gram product by row-block count; (summary, detail lines)."""
    if ctx.dry:
        size = {"quick": True, "device": "cpu", "precisions": ["float32", "bf16"]}
    else:
        size = {"device": "cuda", "batches": [1024, 2048, 4096], "dims": [8192, 32768], "repeats": 10}
        size |= {"precisions": ["float32", "tf32", "bf16"], "blocks": [1, 2, 3, 4, 6, 8]}
    path = ctx.out / CSVS["gram"]
    run, rows = bench(ctx, "gram", ["gram", *command_line(size)], path, "sfrik-bench gram")
    lines = run.text.split("block counts (fastest / default", 1)[-1].splitlines()[1:]
    cells = ["    " + line.strip() for line in lines if line.strip().startswith("n =")]
    return f"Gram blocks: {len(cells)} cells timed ({path.name})", ["  Gram product, row blocks:", *cells]


PLUGIN_LOSS_METHODS = ("sfrik", "sfrik_gram_tf32", "sfrik_gram_bf16")


def loss_methods(autocast: str) -> list[str]:
    """The plugin's losses and every registered baseline (sfrik_plugin.baselines); under bf16 autocast
    only what autocast changes (a baseline whose entry says autocast=False, and the fallback, would
    only repeat the float32 run's figures)."""
    registry = _package_module("sfrik_plugin/baselines.py").BASELINES_REGISTRY  # torch: imported by now
    if autocast == "none":
        return [*PLUGIN_LOSS_METHODS, *registry, "sfrik_fallback"]
    return [*PLUGIN_LOSS_METHODS, *(name for name, baseline in registry.items() if baseline.autocast)]


def stage_losses(ctx: Context) -> Outcome:
    if ctx.dry:
        size = {"quick": True, "device": "cpu", "repeats": 1}
    else:
        size = {"device": "cuda", "batches": 2048, "dims": [8192, 16384, 32768], "repeats": 3, "max_seconds": 5}
        size |= {"slow_repeats": 1}  # MMCR's 0.8 s calls (H200): once, not in every round
    rows: list[dict] = []
    stopped = []
    for autocast in ("none", "bf16"):
        methods = loss_methods(autocast)
        words = ["losses", *command_line({**size, "methods": methods, "autocast": autocast})]
        # the float32 run may take half of what is left, so that the bf16 run always gets its turn
        part = ctx.work / f"losses_{autocast}.csv"
        deadline, ctx.deadline = ctx.deadline, time.monotonic() + ctx.left() / (2 if autocast == "none" else 1)
        try:
            what = f"sfrik-bench losses --autocast {autocast}"
            run, cells = bench(ctx, f"losses-{autocast}", words, part, what, partial=True)
        finally:
            ctx.deadline = deadline
        rows += cells
        if run.rc is None:
            stopped.append(f"{autocast}: {run.stopped_after(cells[-1]['q'])}")
    with open(ctx.out / CSVS["losses"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bad = [r for r in rows if r["status"] != "ok" and not r["status"].startswith(("skipped", "does not fit"))]
    details = [*loss_targets(rows), *(loss_line(r) for r in rows)]
    ok = sum(r["status"] == "ok" for r in rows)
    summary = f"{ok} of {len(rows)} cells ran (float32 and bf16 autocast){baselines_note(ctx)}; {CSVS['losses']}"
    if stopped:
        summary += f" ({'; '.join(stopped)})"
    return Outcome(FAILED if bad else PARTIAL if stopped else PASSED, summary, details)


def loss_targets(rows: list[dict]) -> list[str]:
    """Issue 32's GPU targets per q (float32): the whole SFRIK loss at most its floor (two full
    float32 Gram products, fwd + bwd) and faster than SIGReg; the fallback's cost beside them."""
    lines = []
    for q in dict.fromkeys(r["q"] for r in rows if r["autocast"] == "none"):
        by = {r["method"]: r for r in rows if r["autocast"] == "none" and r["q"] == q and r["status"] == "ok"}
        if "sfrik" not in by:
            continue
        sfrik, floor = float(by["sfrik"]["ms_median"]), float(by["sfrik"]["time_vs_gram_floor"])
        line = f"  q = {q:>6}: SFRIK {sfrik:.2f} ms = {floor:.3f} of its floor (need <= 1.0)"
        if "sigreg" in by:
            sigreg = float(by["sigreg"]["ms_median"])
            line += f", SIGReg {sigreg:.2f} ms (SFRIK / SIGReg {sfrik / sigreg:.3f}, need < 1)"
        if "sfrik_fallback" in by:
            line += f", on the fallback {float(by['sfrik_fallback']['ms_median']) / sfrik:.2f}x"
        lines.append(line)
    return lines


def loss_line(r: dict) -> str:
    where = f"    {r['autocast']:<4} n = {r['n']:>5} q = {r['q']:>6} {r['method']:<16}"
    if r["status"] != "ok":
        return f"{where} {r['status']}"
    return (
        f"{where} {float(r['ms_median']):9.2f} ms {float(r['peak_extra_mib']):9.1f} MiB  / VICReg "
        f"{r.get('time_vs_vicreg') or '-':>6.6}  / Gram floor {r.get('time_vs_gram_floor') or '-':>6.6}"
    )


def stage_step(ctx: Context) -> Outcome:
    if ctx.dry:
        size = {"device": "cpu", "backbone": "tiny", "batch": 8, "image_size": 32, "dims": 64, "hidden": 64}
        size |= {"steps": 2, "warmup": 1}
    else:  # the suite's CUDA defaults, spelled out so that the log says what ran
        size = {"device": "cuda", "backbone": "resnet50", "batch": 256, "image_size": 224, "hidden": 8192}
        # 8 rounds: on the H200 (2026-12-04) the spread of 15 timed steps was 0.1-0.3 ms; a round of
        # the seven methods took 1.7-1.9 s, so 8 rounds and the peak-memory round at each of the
        # three q fit the stage (18 rounds took 31.5 s at q = 8192 alone)
        size |= {"dims": [8192, 16384, 32768], "autocast": "bf16", "steps": 6, "warmup": 2}
    path = ctx.out / CSVS["step"]
    run, rows = bench(ctx, "step", ["step", *command_line(size)], path, "sfrik-bench step", partial=True)
    ok = [r for r in rows if r["status"] == "ok"]
    dims = list(dict.fromkeys(r["q"] for r in rows))
    floor = " / ".join(f"{float(r['ms_median']):.1f}" for r in ok if r["method"] == "none")
    overheads = [
        f"{m} " + " / ".join(f"{float(r['overhead_ms']):+.2f}" for r in ok if r["method"] == m)
        for m in dict.fromkeys(r["method"] for r in ok)
        if m != "none"
    ]
    details = [
        f"  q = {r['q']:>6} {r['method']:<13} "
        + (
            f"{float(r['ms_median']):8.1f} ms (min {float(r['ms_min']):.1f}, max {float(r['ms_max']):.1f}), "
            f"overhead {float(r['overhead_ms']):+7.2f} ms, peak {r['peak_mib'] or '-':>8.8} MiB, "
            f"{float(r['peak_extra_mib']):.1f} MiB over the memory live before the step"
            if r["status"] == "ok"
            else r["status"]
        )
        for r in rows
    ]
    summary = (
        f"{rows[0]['backbone']}, 2 x {rows[0]['n']} images, q = {' / '.join(dims)}: step without a loss "
        f"{floor} ms; overhead (ms a step): {'; '.join(overheads)}{baselines_note(ctx)}; {path.name}"
    )
    if run.rc is None:
        summary += f" ({run.stopped_after(dims[-1])})"
    failed = [r for r in rows if r["status"] != "ok" and not r["status"].startswith("skipped")]
    return Outcome(FAILED if failed else PARTIAL if run.rc is None else PASSED, summary, details)


def stage_tiles(ctx: Context) -> Outcome:
    if ctx.dry:
        size = {"quick": True, "device": "cpu", "repeats": 1, "tiles": [64, 128, 256, 600], "sweep_cell": [600, 32]}
        cells: list[list[int]] = []
    else:
        # 2048-8192: the best tile was 2048-4096 in both cells on the H200 (2026-12-04), 1024 and
        # 16384 8-25 % slower
        size = {"device": "cuda", "repeats": 3, "tiles": [2048, 4096, 8192]}
        cells = [[16384, 4096], [32768, 1024]]
    words = ["tiled", "--sweep-only", *command_line(size)]
    for cell in cells:
        words += ["--sweep-cell", *map(str, cell)]
    path = ctx.out / CSVS["tiles"]
    run, rows = bench(ctx, "tiles", words, path, "sfrik-bench tiled --sweep-only")
    best = re.findall(r"^best tile .*$", run.text, flags=re.MULTILINE)
    details = [
        f"  n = {r['n']:>6} q = {r['q']:>5} tile {r['tile']:>6}: fwd {float(r['forward_ms']):9.2f} ms, fwd+bwd "
        f"{float(r['forward_backward_ms']):9.2f} ms, peak {float(r['peak_extra_mib']):8.1f} MiB, "
        f"score {r['sweep_score'] or '-'}"
        for r in rows
    ]
    if not best:
        return Outcome(FAILED, "the tile sweep named no best tile", details + tail(run.text))
    return Outcome(PASSED, f"{best[-1]}; {path.name}", details)


# ---------------------------------------------------------------------------------------------
# j. demo


def stage_demo(ctx: Context) -> Outcome:
    demo_out = ctx.work / "demo"
    if ctx.dry:
        folder = make_image_folder(ctx, "demo_images", classes=3, per_class=24, size=12)
        options = {"dataset": "folder", "data_dir": folder, "image_size": 12, "methods": "sfrik"}
        options |= {"epochs": 1, "train_size": 0, "probe_size": 0, "batch_size": 24, "width": 4, "proj_dim": 32}
        options |= {"knn_k": 5, "accelerator": "cpu"}
        data = "dry run: a generated 3-class image folder, sfrik only, on the CPU"
    else:
        if FASHION_MNIST_DIR.is_dir():
            options, data = {"data_dir": FASHION_MNIST_DIR, "no_download": True}, "Fashion-MNIST"
        else:
            folder = make_image_folder(ctx, "demo_images", classes=10, per_class=600, size=32)
            options = {"dataset": "folder", "data_dir": folder}
            data = f"a generated 10-class image folder ({FASHION_MNIST_DIR} absent, no download)"
        options |= {"epochs": 1, "accelerator": "gpu", **demo_methods(ctx)}
    cmd = [ctx.python, "-m", "sfrik_plugin.demo", *command_line({**options, "out": demo_out})]
    run = run_checked(ctx, "demo", cmd, "sfrik-demo")
    if not (demo_out / "results.csv").exists():
        return Outcome(FAILED, "sfrik-demo wrote no results.csv", tail(run.text))
    shutil.copy(demo_out / "results.csv", ctx.out / CSVS["demo"])
    shutil.copytree(demo_out, ctx.logs / "demo", dirs_exist_ok=True)  # the plot and run.json, archived
    rows = read_csv(demo_out / "results.csv")
    labels = [r["method"] + (f" {r['seed']}" if r["method"] == "random" else "") for r in rows]  # the floor's inits
    details = [
        f"  {label:<14} linear {r['linear_top1']:>6} kNN {r['knn_top1']:>6} s/step "
        f"{r['sec_per_step'] or '-':>8.8} peak MiB {r['peak_mem_mb'] or '-':>8.8}"
        for label, r in zip(labels, rows)
    ]
    methods = ", ".join(r["method"] for r in rows if r["method"] != "random")  # the random encoder: always a row
    return Outcome(PASSED, f"one epoch on {data}: {methods}{baselines_note(ctx)}; {CSVS['demo']}", details)


def demo_methods(ctx: Context) -> dict:
    """The demo's --library / --methods for the baselines' libraries this machine has."""
    if ctx.has("lightly"):
        return {}
    if ctx.has("solo"):  # SIGReg and MMCR, among the demo's defaults, are lightly's only
        return {"library": "solo-learn", "methods": ["sfrik", "vicreg", "barlow_twins", "simclr", "auh"]}
    return {"methods": ["sfrik", "auh"]}


# ---------------------------------------------------------------------------------------------
# k. solo-learn


def solo_ready(ctx: Context) -> str | None:
    where = ctx.args.solo_learn_dir
    if not where:
        return "no --solo-learn-dir given"
    checkout = Path(where).resolve()
    if not (checkout / "main_pretrain.py").is_file() or not (checkout / "main_knn.py").is_file():
        return f"{checkout} has no main_pretrain.py / main_knn.py"
    return None


def stage_solo(ctx: Context) -> Outcome:
    checkout = Path(ctx.args.solo_learn_dir).resolve()
    run = run_logged(ctx, "solo-import", [ctx.python, "-c", "import solo"], limit=60)
    if not run.ok:
        return Outcome(SKIPPED, f"solo-learn does not import here ({' '.join(tail(run.text, 1)).strip()})")
    start = time.monotonic()
    folder = make_image_folder(ctx, "solo_images", classes=4, per_class=80, size=32)
    ckpt_dir = ctx.work / "solo_ckpt"
    steps = 2 if ctx.dry else 40
    env = {"WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1", "SFRIK_REQUIRE_EXTENSION": "1"}
    cmd = [
        ctx.python,
        "main_pretrain.py",
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={folder}",
        f"checkpoint.dir={ckpt_dir}",
        f"+limit_train_batches={steps}",
        f"+default_root_dir={ctx.work / 'solo_runs'}",
        f"accelerator={'cpu' if ctx.dry else 'gpu'}",
    ]
    run = run_checked(ctx, "solo-pretrain", cmd, "main_pretrain.py", env=env, cwd=checkout)
    runs = [p for p in (ckpt_dir / "sfrik").iterdir() if p.is_dir()] if (ckpt_dir / "sfrik").is_dir() else []
    if not runs or not list(runs[0].glob("*.ckpt")):
        return Outcome(FAILED, "main_pretrain.py wrote no checkpoint", tail(run.text))
    note = f"main_pretrain.py: {steps} steps of batch 8 in {time.monotonic() - start:.0f} s"
    if ctx.dry:
        return Outcome(PASSED, f"{note}; main_knn.py not run (dry run: it moves batches to CUDA)")
    data = {"dataset": "custom", "train_data_path": folder, "val_data_path": folder, "data_format": "image_folder"}
    options = {"pretrained_checkpoint_dir": runs[0], **data, "batch_size": 64, "num_workers": 4, "k": 20}
    options |= {"temperature": 0.07, "distance_function": "cosine", "feature_type": "backbone"}
    knn = [ctx.python, "-m", "sfrik_plugin.solo.knn", "--solo-learn-dir", str(checkout)]
    run = run_checked(ctx, "solo-knn", knn + command_line(options, separator="_"), "main_knn.py", env=env, cwd=checkout)
    results = re.findall(r"Result: acc@1=([\d.]+), acc@5=([\d.]+)", run.text)
    return Outcome(
        PASSED,
        f"{note}; main_knn.py on its checkpoint: acc@1 {results[-1][0] if results else '?'} "
        f"(train = val folder: a smoke test, not a result)",
    )


STAGES = (
    Stage("a", "wheels", stage_wheels, (60, 60), (15, 10), ready=wheels_ready),
    Stage("b", "build", stage_build, (180, 60), (70, 5), needs=("torch",)),
    # c: 76 s on the H200 (2026-12-04), plus the fallback's and the Gram blocks' CUDA tests (Triton compiles)
    Stage("c", "cuda-tests", stage_cuda_tests, (150, 90), (100, 15), needs=TEST_MODULES),
    Stage("d", "tests", stage_tests, (240, 120), (0, 0), needs=TEST_MODULES, elastic=True),
    Stage("e", "sanitizer", stage_sanitizer, (75, 10), (45, 0), needs=("torch", "pytest"), ready=sanitizer_ready),
    # f: 9 s on the H200 (2026-12-04), plus the fallback's Triton compile and the gram suite (~20 s)
    Stage("f", "bandwidth", stage_bandwidth, (75, 90), (35, 15), needs=("torch",)),
    # g and h: the H200's durations of 2026-12-04 (MMCR's batched SVD alone takes 0.8 s a call
    # there: timed once now), plus q = 32768 and the fallback's compile
    Stage("g", "losses", stage_losses, (150, 150), (100, 40), needs=("torch",)),
    Stage("h", "step", stage_step, (120, 60), (70, 10), needs=("torch", "torchvision")),
    Stage("i", "tiles", stage_tiles, (40, 60), (12, 5), needs=("torch",)),
    Stage(
        "j",
        "demo",
        stage_demo,
        (90, 150),
        (35, 60),  # 31 s on the H200 (2026-12-04)
        needs=("torch", "torchvision", "lightning", "matplotlib", "numpy", "PIL"),
    ),
    Stage(
        "k",
        "solo-learn",
        stage_solo,
        (120, 90),
        (80, 30),  # main_pretrain 38 s on the H200 (2026-12-04); main_knn (not reached then) about as long
        needs=("solo", "hydra", "omegaconf", "lightning", "numpy", "PIL"),
        ready=solo_ready,
    ),
)


# ---------------------------------------------------------------------------------------------
# Driver


def skip_reason(stage: Stage, ctx: Context) -> str | None:
    """Why stage does not run (not selected, nothing to run it on, a package missing), or None."""
    if stage.key not in ctx.args.stages:
        return f"not selected (--stages {ctx.args.stages})"
    if ctx.broken and stage.key > "b":
        return ctx.broken
    unready = stage.ready(ctx)
    if unready:
        return unready
    missing = [package(m) for m in stage.needs if not ctx.has(m)]
    if missing:
        return f"missing {', '.join(missing)} (--wheels DIR with their wheels installs them)"
    return None


def stage_limit(stage: Stage, ctx: Context, left: float, later: tuple[Stage, ...]) -> float | str:
    """Seconds the stage may take, or why it gets none: its own limit within what is left, and for
    the elastic stage also after setting aside the expected time of the later stages that will run."""
    mode = 1 if ctx.dry else 0
    limit = min(stage.limit_s[mode], left - INTERRUPT_GRACE_S)
    if stage.elastic:
        reserve = sum(s.expect_s[mode] for s in later if skip_reason(s, ctx) is None)
        limit = min(limit, left - INTERRUPT_GRACE_S - reserve)
        if limit < MIN_ELASTIC_S:
            return f"no time left: {left:.0f} s, of which {reserve} s are set aside for the later stages"
    elif limit < MIN_STAGE_S:
        return f"no time left in the {ctx.args.budget:.0f} s budget ({left:.0f} s)"
    return limit


def run_stage(stage: Stage, ctx: Context, limit: float) -> Outcome:
    ctx.deadline = time.monotonic() + limit
    try:
        return stage.run(ctx)
    except StageFailure as failure:
        return failure.outcome
    except Exception as err:  # noqa: BLE001 (a bug in a stage must not hide the others' results)
        return Outcome(FAILED, f"the stage raised {type(err).__name__}: {err}")


def run_stages(ctx: Context, stages: tuple[Stage, ...], start: float, results: list, fatal: str | None) -> None:
    for i, stage in enumerate(stages):
        stage_start = time.monotonic()
        reason = fatal or skip_reason(stage, ctx)
        limit: float | str = 0.0
        if reason is None:
            limit = stage_limit(stage, ctx, ctx.args.budget - (stage_start - start), stages[i + 1 :])
            reason = limit if isinstance(limit, str) else None
        if reason is not None:
            outcome, limit = Outcome(SKIPPED, reason), 0.0
        else:
            outcome = run_stage(stage, ctx, float(limit))
        seconds = time.monotonic() - stage_start
        results.append((stage, outcome, seconds, limit))
        print(f"{stage.key}. {stage.name}: {outcome.status} ({seconds:.0f} s): {outcome.summary}", flush=True)


def check(args: argparse.Namespace, out: Path, work: Path) -> int:
    """Every stage, then the report and the archive; the exit status."""
    logs = work / "logs"
    logs.mkdir(parents=True)
    ctx = Context(args=args, out=out, work=work, logs=logs, dry=args.dry_run)
    start = time.monotonic()
    results: list = []
    run_stages(ctx, STAGES[:1], start, results, None)  # the wheels, before anything looks for packages
    ctx.info = probe(ctx)
    fatal = machine_problem(ctx)
    if fatal:
        print(f"gpu_check: {fatal}", file=sys.stderr)
    run_stages(ctx, STAGES[1:], start, results, fatal)
    wall = time.monotonic() - start
    pack_logs(ctx)
    write_report(ctx, results, wall)
    print(f"report: {out / REPORT} ({wall:.0f} s)")
    if fatal:
        return 2
    return 1 if any(outcome.status == FAILED for _, outcome, _, _ in results) else 0


# ---------------------------------------------------------------------------------------------
# Outputs


def clear_previous_outputs(out: Path) -> None:
    """Removes this script's outputs of an earlier run from out, so none is taken for this run's."""
    for name in (REPORT, ARCHIVE, *CSVS.values(), *OLD_OUTPUTS):
        (out / name).unlink(missing_ok=True)


def pack_logs(ctx: Context) -> None:
    with tarfile.open(ctx.out / ARCHIVE, "w:gz") as archive:
        archive.add(ctx.logs, arcname="logs")


def missing_packages(ctx: Context) -> list[str]:
    """One line per missing package: the stages it skips or narrows."""
    modules = ctx.info.get("modules", {})
    lines = []
    for module in sorted(m for m, found in modules.items() if not found):
        skipped = [f"{s.key}. {s.name}" for s in STAGES if module in s.needs]
        narrowed = []
        if module == "xdist":
            narrowed = ["c, d: tests in one process"]
        elif module in BUILD_MODULES:
            narrowed = ["b: cannot build the extension (--no-build reuses an existing build)"]
        elif module in BASELINE_MODULES and not any(ctx.has(m) for m in BASELINE_MODULES):
            narrowed = ["g, h, j: no VICReg, Barlow Twins or SimCLR (solo-learn or lightly provides them)"]
        effects = [f"skips {', '.join(skipped)}"] if skipped else []
        lines.append(f"- {package(module)}: {'; '.join(effects + narrowed) or 'not needed by any stage'}")
    return lines or ["- none"]


def write_report(ctx: Context, results: list, wall: float) -> str:
    info = {k: v for k, v in ctx.info.items() if k != "modules"}
    mode = "dry run (CPU, tiny sizes)" if ctx.dry else "GPU"
    lines = [
        "# GPU check report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {mode}; host {platform.node()}, {os.cpu_count()} CPUs; "
        + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"Whole run {wall:.0f} s (budget {ctx.args.budget:.0f} s).",
        "",
        "## Stages",
        "",
    ]
    for stage, outcome, seconds, limit in results:
        lines.append(
            f"- {stage.key}. {stage.name}: **{outcome.status}** ({seconds:.0f} s of {limit:.0f} s): {outcome.summary}"
        )
    lines += ["", "## Missing packages", "", *missing_packages(ctx), "", "## Details", ""]
    for stage, outcome, _, _ in results:
        if outcome.details:
            lines += [f"### {stage.key}. {stage.name}", "", "```", *outcome.details, "```", ""]
    ours = sorted(p.name for p in ctx.out.iterdir() if p.name in (ARCHIVE, *CSVS.values()))
    lines += ["## Files", "", f"{REPORT}, {', '.join(ours)} (every command's log in {ARCHIVE}).", ""]
    foreign = [p.name for p in ctx.out.iterdir() if p.is_file() and p.name not in (REPORT, *ours)]
    if foreign:
        lines += [f"--out also holds {len(foreign)} files of something else: {', '.join(sorted(foreign))}", ""]
    text = "\n".join(lines)
    (ctx.out / REPORT).write_text(text)
    if len(ours) + 1 > MAX_OUT_FILES:  # cannot happen with the names above: a guard for whoever adds one
        print(f"gpu_check: {len(ours) + 1} output files, more than the {MAX_OUT_FILES} returned", file=sys.stderr)
    return text


def stage_letters(text: str) -> str:
    """argparse type of --stages: letters of known stages."""
    unknown = sorted(set(text) - {s.key for s in STAGES})
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage letters {unknown}: the stages are a-{STAGES[-1].key}")
    return text


def wheel_folder(text: str) -> str:
    """argparse type of --wheels: an existing folder."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help=f"folder for {REPORT}, the CSVs and {ARCHIVE}")
    parser.add_argument("--dry-run", action="store_true", help="every stage on the CPU at tiny sizes")
    parser.add_argument(
        "--wheels", type=wheel_folder, default=None, help="install the wheels (*.whl) of this folder first"
    )
    parser.add_argument("--solo-learn-dir", default=None, help="solo-learn checkout for stage k")
    parser.add_argument("--no-build", action="store_true", help="reuse the existing build (stage b only loads it)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for the whole run")
    parser.add_argument(
        "--stages",
        type=stage_letters,
        default="".join(s.key for s in STAGES),
        help="the stages to run, by letter (default: all)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder (its path is printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clear_previous_outputs(out)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        return check(args, out, work)
    finally:
        if args.keep_work:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
