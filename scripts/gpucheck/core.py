"""The GPU check's commands: the context the stages share, running a command in its own process
group under the stage's limit, its log, and the helpers the stages use to run the benchmark suites."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"  # run in a new interpreter: python <file> ARGS
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


command_line = _package_module("sfrik_experiments/utils/arguments.py").command_line


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


def make_image_folder(ctx: Context, name: str, classes: int, per_class: int, size: int) -> Path:
    """Class subfolders of PNG images whose colour and stripes depend on the class (learnable), in
    the scratch folder."""
    root = ctx.work / name
    cmd = [ctx.python, str(PROGRAMS / "image_folder.py"), str(root), str(classes), str(per_class), str(size)]
    run_checked(ctx, f"images-{name}", cmd, "generating the image folder")
    return root


def bench(
    ctx: Context, name: str, suite_args: list[str], csv_path: Path, what: str, partial: bool = False
) -> tuple[Run, list[dict]]:
    """`python -m sfrik_experiments.bench SUITE_ARGS --csv csv_path`, which must succeed: (run, CSV rows).
    With partial, a run stopped at its limit after some cells (the long suites rewrite their CSV
    after each) gives those rows, and run.rc is None."""
    cmd = [ctx.python, "-m", "sfrik_experiments.bench", *suite_args, "--csv", str(csv_path), "--overwrite"]
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
