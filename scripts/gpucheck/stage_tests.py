"""Stages c (the CUDA tests), d (the rest of the suite) and e (compute-sanitizer)."""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from . import core
from .core import FAILED, PARTIAL, PASSED, Context, Outcome, Run, failed_run, tail

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
    run = core.run_logged(ctx, name, cmd, env)
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
        run = core.run_logged(ctx, f"sanitizer-{check}", cmd, suite_env(ctx), limit=limit)
        errors = re.findall(r"ERROR SUMMARY: (\d+) error", run.text)
        if run.ok:
            lines.append(f"{check}: no error ({errors[-1] if errors else '0'} errors)")
            continue
        failed = True
        reason = "timed out" if run.rc is None else f"exit status {run.rc}, errors: {errors[-1] if errors else '?'}"
        lines.append(f"{check}: {reason}")
    return Outcome(FAILED if failed else PASSED, "; ".join(lines), ["  logs/sanitizer-*.log"])
