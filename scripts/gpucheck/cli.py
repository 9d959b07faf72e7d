"""The GPU check's stages, in order, the driver that runs them within the budget, and the report."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from . import __doc__ as OVERVIEW  # the package's docstring: every stage described
from .core import (
    ARCHIVE,
    BASELINE_MODULES,
    BUILD_MODULES,
    CSVS,
    DEFAULT_BUDGET_S,
    FAILED,
    INTERRUPT_GRACE_S,
    MAX_OUT_FILES,
    MIN_ELASTIC_S,
    MIN_STAGE_S,
    OLD_OUTPUTS,
    REPORT,
    SKIPPED,
    TEST_MODULES,
    Context,
    Outcome,
    Stage,
    StageFailure,
    package,
)
from .stage_apps import solo_ready, stage_demo, stage_solo
from .stage_bench import stage_bandwidth, stage_losses, stage_step, stage_tiles
from .stage_install import machine_problem, probe, stage_build, stage_wheels, wheels_ready
from .stage_tests import sanitizer_ready, stage_cuda_tests, stage_sanitizer, stage_tests

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


def probed_modules() -> list[str]:
    """Every package a stage needs or uses where it is installed (import names)."""
    needed = {m for s in STAGES for m in s.needs}
    return sorted(needed | {*TEST_MODULES, *BUILD_MODULES, "xdist", *BASELINE_MODULES})


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
    ctx.info = probe(ctx, probed_modules())
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
    parser = argparse.ArgumentParser(description=OVERVIEW, formatter_class=argparse.RawDescriptionHelpFormatter)
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
