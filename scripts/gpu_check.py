"""The GPU check: one prepared command that builds, tests and measures the plugin on a CUDA GPU.

    python scripts/gpu_check.py --out gpu_out [--solo-learn-dir ../solo-learn]   # (make gpu-check)
    python scripts/gpu_check.py --dry-run --out dry_out    # every stage on the CPU at tiny sizes

Stages, in order, each in its own process with its own time limit (and all of them within
--budget seconds, 540 by default: a stage that would start with less than 10 s left is skipped and
says so), each reported as passed, failed or skipped with the reason:

  a build       the extension with the CUDA kernels for the visible GPU's architecture
                (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST from torch.cuda.get_device_capability, in
                place); then checks that it loads with CUDA kernels. The dry run (and --no-build)
                reuses the existing build instead of rebuilding, and says so.
  b tests       the whole test suite (CUDA files first) with SFRIK_REQUIRE_EXTENSION=1 and
                SFRIK_REQUIRE_CUDA=1, so a skipped CUDA test is a failure; counts from JUnit XML.
                Dry run: tests/ops/test_cuda_kernels.py without SFRIK_REQUIRE_CUDA (it skips on a CPU).
  c sanitizer   compute-sanitizer memcheck and racecheck over the CUDA operator tests, checking the
                sfrik kernels only, where the toolkit has compute-sanitizer (skipped otherwise).
  d operator    forward + backward of psi(G).mean() on an n x n Gram matrix: bandwidth achieved
                (bytes the kernels must move / time) against the device's peak (memory clock x bus
                width) and against a device-to-device copy; CSV op_bandwidth.csv.
  e losses      sfrik-bench losses at n = 2048, q in {8192, 16384, 32768}: SFRIK (float32 Gram, and
                with gram_precision tf32 / bf16), VICReg, Barlow Twins, SimCLR, in float32 and under
                bf16 autocast: time, peak memory, ratios to VICReg and to the bare Gram products;
                CSVs losses_float32.csv, losses_bf16_autocast.csv.
  f tiles       tile-size sweep of the tiled operator (fwd + bwd); writes tile_sweep.csv and
                tile_default.json, and prints the measured best tile, the value to put in
                sfrik_plugin.tiled.DEFAULT_TILE_SIZE["cuda"] (a reviewed one-line change: the package
                never reads a machine-specific file).
  g demo        one epoch of sfrik-demo on the GPU (Fashion-MNIST where it is on disk, otherwise a
                generated image folder; no download).
  h solo-learn  with --solo-learn-dir: main_pretrain.py (sfrik_cpu protocol on the GPU, 40 steps of
                batch 8 on a generated image folder), then main_knn.py (through sfrik-knn) on its
                checkpoint; skipped without it.

Writes report.md (one line per stage, then details), logs/<stage>.log and the CSVs into --out, and
exits 1 if a stage failed (a failed test included), 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
DEFAULT_BUDGET_S = 540
MIN_STAGE_S = 10
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _package_module(relative: str):
    """A dependency-free module of the package, read from its file: importing sfrik_plugin itself
    would load torch and the extension that the build stage is about to build."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


command_line = _package_module("sfrik_plugin/utils/arguments.py").command_line


@dataclass
class Outcome:
    status: str
    summary: str
    details: list[str] = field(default_factory=list)


@dataclass
class Stage:
    key: str
    name: str
    limit_s: int  # on a GPU
    dry_limit_s: int  # in the dry run
    run: Callable[[Context, float], Outcome]


@dataclass
class Context:
    args: argparse.Namespace
    out: Path
    logs: Path
    dry: bool
    python: str = sys.executable


# ---------------------------------------------------------------------------------------------
# Helpers


def run_logged(
    ctx: Context, name: str, cmd: list[str], limit_s: float, env: dict | None = None, cwd: Path | None = None
):
    """Runs cmd with its output in logs/<name>.log; (return code or None on timeout, log text)."""
    log = ctx.logs / f"{name}.log"
    full_env = dict(os.environ, **(env or {}))
    with open(log, "w") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            proc = subprocess.run(
                cmd, cwd=cwd or ROOT, env=full_env, stdout=f, stderr=subprocess.STDOUT, timeout=max(1.0, limit_s)
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    return rc, log.read_text(errors="replace")


def tail(text: str, lines: int = 12) -> list[str]:
    return ["    " + line for line in text.strip().splitlines()[-lines:]]


def failed_run(rc, text: str, limit_s: float, what: str) -> Outcome:
    reason = f"timed out after {limit_s:.0f} s" if rc is None else f"exit status {rc}"
    return Outcome(FAILED, f"{what}: {reason}", tail(text))


def python_code(ctx: Context, name: str, code: str, limit_s: float, env: dict | None = None):
    return run_logged(ctx, name, [ctx.python, "-c", code], limit_s, env)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def make_image_folder(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """Class subfolders of PNG images whose colour and stripes depend on the class (learnable)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 64, size=(size, size, 3), dtype=np.uint8)
            image[:, :, c % 3] += np.uint8(120)
            image[(c * 3) % size :: max(2, c + 2), :, :] = 230
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------
# a. build

LOAD_PROBE = """
import json, torch, sfrik_plugin
info = sfrik_plugin.extension_info()
print(json.dumps(info))
assert info["loaded"], info
if {need_cuda}:
    assert info["cuda"], "the extension has no CUDA kernels"
    import sfrik_plugin.series
    t = torch.linspace(-1, 1, 101, device="cuda", dtype=torch.float64)
    got = sfrik_plugin.legendre(t, 3, 3).cpu()
    assert torch.allclose(got, sfrik_plugin.legendre(t.cpu(), 3, 3), rtol=0, atol=1e-12)
"""


def stage_build(ctx: Context, limit_s: float) -> Outcome:
    start = time.monotonic()
    details = []
    if ctx.dry or ctx.args.no_build:
        why = "dry run" if ctx.dry else "--no-build"
        note = f"reused the existing build ({why}: not rebuilt)"
    else:
        import torch

        major, minor = torch.cuda.get_device_capability()
        arch = f"{major}.{minor}"
        env = {"FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": arch, "MAX_JOBS": str(os.cpu_count() or 4)}
        rc, text = run_logged(ctx, "build", [ctx.python, "setup.py", "-q", "build_ext", "--inplace"], limit_s, env)
        if rc != 0:
            return failed_run(rc, text, limit_s, "build")
        note = f"built with CUDA kernels for sm_{major}{minor} in {time.monotonic() - start:.0f} s"
    rc, text = python_code(
        ctx,
        "build-load",
        LOAD_PROBE.format(need_cuda=not ctx.dry),
        max(5.0, limit_s - (time.monotonic() - start)),
        {"SFRIK_REQUIRE_EXTENSION": "1"},
    )
    if rc != 0:
        return failed_run(rc, text, limit_s, "loading the extension")
    info = json.loads(text.strip().splitlines()[-1])
    details.append(f"extension: {info}")
    return Outcome(PASSED, f"{note}; loads (cuda kernels: {info['cuda']}, cpu isa {info['cpu_isa']})", details)


# ---------------------------------------------------------------------------------------------
# b. tests


def junit_counts(path: Path) -> dict:
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    cases = [case for s in suites for case in s.iter("testcase")]
    counts["failed_names"] = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in cases
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts


# Run first (then the rest of the suite): the CUDA-only tests, then the folders of the
# device-parametrised operator, loss and tile tests (their "cuda" cases).
CUDA_TESTS = ("tests/ops/test_cuda_kernels.py", "tests/ops", "tests/losses")


def stage_tests(ctx: Context, limit_s: float) -> Outcome:
    xml = ctx.out / "tests.xml"
    env = {"SFRIK_REQUIRE_EXTENSION": "1"}
    if ctx.dry:
        targets, note = [CUDA_TESTS[0]], f"dry run: {CUDA_TESTS[0]} on the CPU, without SFRIK_REQUIRE_CUDA"
        env["SFRIK_REQUIRE_CUDA"] = "0"
    else:
        targets = [*CUDA_TESTS, "tests"]
        note = "whole suite, SFRIK_REQUIRE_CUDA=1"
        env["SFRIK_REQUIRE_CUDA"] = "1"
    cmd = [
        ctx.python,
        "-m",
        "pytest",
        "-q",
        "-rfEs",
        "-p",
        "no:cacheprovider",
        "--durations=10",
        f"--junitxml={xml}",
        *targets,
    ]
    rc, text = run_logged(ctx, "tests", cmd, limit_s, env)
    if rc is None or not xml.exists():
        return failed_run(rc, text, limit_s, "pytest")
    counts = junit_counts(xml)
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    summary = (
        f"{note}: {passed} passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped"
    )
    details = [f"  failed: {name}" for name in counts["failed_names"]]
    if rc != 0 or counts["failures"] or counts["errors"]:
        return Outcome(FAILED, summary, details + tail(text, 20))
    return Outcome(PASSED, summary, details)


# ---------------------------------------------------------------------------------------------
# c. compute-sanitizer

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


def stage_sanitizer(ctx: Context, limit_s: float) -> Outcome:
    tool = find_sanitizer()
    if tool is None:
        return Outcome(SKIPPED, "compute-sanitizer not found (not in PATH, CUDA_HOME/bin or /usr/local/cuda/bin)")
    if ctx.dry or not cuda_available():
        return Outcome(SKIPPED, f"{'dry run: ' if ctx.dry else ''}no CUDA GPU to run it on ({tool} found)")
    start, lines, failed = time.monotonic(), [], False
    for check in ("memcheck", "racecheck"):
        left = limit_s - (time.monotonic() - start)
        cmd = [
            tool,
            "--tool",
            check,
            "--kernel-name",
            "kns=sfrik",
            "--error-exitcode",
            "3",
            ctx.python,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            *SANITIZED_FILES,
            "-m",
            "requires_cuda",
            "-k",
            SANITIZED_TESTS,
        ]
        # each tool gets half the stage's time
        rc, text = run_logged(
            ctx,
            f"sanitizer-{check}",
            cmd,
            left / (2 if check == "memcheck" else 1),
            {"SFRIK_REQUIRE_EXTENSION": "1", "SFRIK_REQUIRE_CUDA": "1"},
        )
        summary = re.findall(r"ERROR SUMMARY: (\d+) error", text)
        if rc == 0:
            lines.append(f"{check}: no error ({summary[-1] if summary else '0'} errors)")
        else:
            failed = True
            lines.append(
                f"{check}: "
                + (
                    "timed out"
                    if rc is None
                    else f"exit status {rc}, errors: {summary[-1] if summary else 'see the log'}"
                )
            )
    return Outcome(FAILED if failed else PASSED, "; ".join(lines), ["  logs/sanitizer-*.log"])


# ---------------------------------------------------------------------------------------------
# d. operator bandwidth (worker: runs in its own process)


def worker_operator(out: Path, tiny: bool) -> None:
    import torch

    import sfrik_plugin  # noqa: F401  (registers the ops)
    from sfrik_plugin.bench import common
    from sfrik_plugin.utils import machine, output

    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    n = 512 if tiny else 16384
    repeats = 5 if tiny else 10
    coeffs, q = [0.0, 1.0, 40.0, 40.0], 8192
    peak = math.nan
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        peak = 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8  # DDR: two transfers a clock
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        g = (torch.rand(n, n, device=device) * 2 - 1).to(dtype)
        element = g.element_size()
        scalar = torch.ones((), device=device, dtype=dtype)
        copy_target = torch.empty_like(g)
        ops = torch.ops.sfrik

        def forward_backward():
            return ops.legendre_series_reduce(g, coeffs, q, True), ops.legendre_series_backward(scalar, g, coeffs, q, 1)

        calls = {  # name -> (call, passes over G it must make: reads and writes)
            "forward (fused mean)": (lambda: ops.legendre_series_reduce(g, coeffs, q, True), 1),
            "backward (psi', grad broadcast)": (lambda: ops.legendre_series_backward(scalar, g, coeffs, q, 1), 2),
            "forward + backward": (forward_backward, 3),
            "device copy (reference)": (lambda: copy_target.copy_(g), 2),
        }
        times = common.time_calls_round_robin({k: v[0] for k, v in calls.items()}, device, repeats, warmup=3)
        copy_rate = None
        for what, (_, passes) in calls.items():
            ms = common.median(times[what])
            rate = passes * n * n * element / (ms / 1e3)
            if what.startswith("device copy"):
                copy_rate = rate
            rows.append(
                {
                    "what": what,
                    "n": n,
                    "dtype": str(dtype).removeprefix("torch."),
                    "device": str(device),
                    "ms": ms,
                    "bytes_moved": passes * n * n * element,
                    "gb_per_s": rate / 1e9,
                    "peak_gb_per_s": peak / 1e9,
                    "fraction_of_peak": rate / peak,
                }
            )
        for row in rows[-len(calls) :]:
            row["fraction_of_copy"] = row["gb_per_s"] * 1e9 / copy_rate
    output.write_csv(str(out / "op_bandwidth.csv"), list(rows[0].keys()), rows)
    print(json.dumps({"device": machine.device_name(device), "rows": rows}))


def stage_operator(ctx: Context, limit_s: float) -> Outcome:
    rc, text = run_logged(
        ctx,
        "operator",
        [ctx.python, __file__, "--worker", "operator", "--out", str(ctx.out), *(["--dry-run"] if ctx.dry else [])],
        limit_s,
        {"SFRIK_REQUIRE_EXTENSION": "1"},
    )
    if rc != 0:
        return failed_run(rc, text, limit_s, "operator benchmark")
    result = json.loads(text.strip().splitlines()[-1])

    def of_peak(r):
        return "no peak figure" if math.isnan(r["fraction_of_peak"]) else f"{r['fraction_of_peak']:.0%} of peak"

    details = [
        f"  {r['what']:<34} {r['dtype']:<8} n = {r['n']}: {r['ms']:8.3f} ms, {r['gb_per_s']:8.3g} GB/s"
        f" ({of_peak(r)}, {r['fraction_of_copy']:.0%} of a copy)"
        for r in result["rows"]
    ]
    fb = next(r for r in result["rows"] if r["what"] == "forward + backward" and r["dtype"] == "float32")
    peak = (
        "no peak figure on a CPU"
        if math.isnan(fb["peak_gb_per_s"])
        else f"{fb['fraction_of_peak']:.0%} of the {fb['peak_gb_per_s']:.0f} GB/s peak"
    )
    return Outcome(
        PASSED,
        f"{result['device']}: fwd+bwd float32 at n = {fb['n']}: {fb['gb_per_s']:.3g} GB/s "
        f"({peak}, {fb['fraction_of_copy']:.0%} of a device copy); op_bandwidth.csv",
        details,
    )


# ---------------------------------------------------------------------------------------------
# e. losses

LOSS_METHODS = ("sfrik", "sfrik_gram_tf32", "sfrik_gram_bf16", "vicreg", "barlow_twins", "simclr")


def stage_losses(ctx: Context, limit_s: float) -> Outcome:
    start, details, failed, summaries = time.monotonic(), [], False, []
    for autocast, name in (("none", "losses_float32"), ("bf16", "losses_bf16_autocast")):
        csv_path = ctx.out / f"{name}.csv"
        if ctx.dry:
            size = ["--quick", "--device", "cpu", "--repeats", "1"]
        else:
            size = [
                "--device",
                "cuda",
                "--batches",
                "2048",
                "--dims",
                "8192",
                "16384",
                "32768",
                "--repeats",
                "3",
                "--max-seconds",
                "5",
            ]
        cmd = [
            ctx.python,
            "-m",
            "sfrik_plugin.bench",
            "losses",
            *size,
            "--methods",
            *LOSS_METHODS,
            "--autocast",
            autocast,
            "--csv",
            str(csv_path),
        ]
        left = limit_s - (time.monotonic() - start)
        rc, text = run_logged(ctx, name, cmd, left / (2 if autocast == "none" else 1), {"SFRIK_REQUIRE_EXTENSION": "1"})
        if rc != 0 or not csv_path.exists():
            failed = True
            details += [f"  {name}: " + ("timed out" if rc is None else f"exit status {rc}")] + tail(text)
            continue
        rows = read_csv(csv_path)
        bad = [r for r in rows if r["status"] != "ok" and not r["status"].startswith(("skipped", "does not fit"))]
        failed = failed or bool(bad)
        details.append(f"  {name} ({csv_path.name}):")
        for r in rows:
            if r["status"] == "ok":
                details.append(
                    f"    n = {r['n']:>5} q = {r['q']:>6} {r['method']:<16} {float(r['ms_median']):9.2f} ms "
                    f"{float(r['peak_extra_mib']):9.1f} MiB  / VICReg {r.get('time_vs_vicreg') or '-':>6.6} "
                    f" / Gram floor {r.get('time_vs_gram_floor') or '-':>6.6}"
                )
            else:
                details.append(f"    n = {r['n']:>5} q = {r['q']:>6} {r['method']:<16} {r['status']}")
        ok = sum(r["status"] == "ok" for r in rows)
        summaries.append(f"{name}: {ok} of {len(rows)} cells ran")
    return Outcome(FAILED if failed else PASSED, "; ".join(summaries) or "no loss benchmark ran", details)


# ---------------------------------------------------------------------------------------------
# f. tile sweep (worker)


def worker_tiles(out: Path, tiny: bool) -> None:
    import torch

    from sfrik_plugin.bench import tiled as tiled_bench
    from sfrik_plugin.tiled import DEFAULT_TILE_SIZE
    from sfrik_plugin.utils import machine, output

    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    if tiny:
        cells, tiles, repeats = [(600, 32)], (64, 128, 256, 600), 1
    else:
        cells, tiles, repeats = [(16384, 4096), (32768, 1024)], (1024, 2048, 4096, 8192, 16384), 3
    rows = []
    for n, q in cells:
        leaf = tiled_bench.leaf_for(n, q, torch.float32, device)
        steps = {t: tiled_bench.regulariser("tiled", t) for t in tiles if t <= n}
        results = tiled_bench.measure(steps, leaf, repeats)
        for t, result in results.items():
            rows.append({"n": n, "q": q, "tile": t, "device": str(device), **result})
        del leaf
    score = {}
    for t in tiles:  # the sum over cells of fwd+bwd time relative to each cell's best
        cell_rows = [r for r in rows if r["tile"] == t]
        if len(cell_rows) == len(cells):
            score[t] = sum(
                r["forward_backward_ms"] / min(x["forward_backward_ms"] for x in rows if x["n"] == r["n"])
                for r in cell_rows
            )
    best = min(score, key=score.get)
    output.write_csv(str(out / "tile_sweep.csv"), list(rows[0].keys()), rows)
    key = device.type
    decision = {
        "device": machine.device_name(device),
        "best_tile": best,
        "current_default": DEFAULT_TILE_SIZE.get(key),
        "cells": cells,
        "set_in": f"sfrik_plugin/tiled.py DEFAULT_TILE_SIZE[{key!r}]",
    }
    (out / "tile_default.json").write_text(json.dumps(decision, indent=2) + "\n")
    print(json.dumps({"decision": decision, "rows": rows}))


def stage_tiles(ctx: Context, limit_s: float) -> Outcome:
    cmd = [ctx.python, __file__, "--worker", "tiles", "--out", str(ctx.out), *(["--dry-run"] if ctx.dry else [])]
    rc, text = run_logged(ctx, "tiles", cmd, limit_s, {"SFRIK_REQUIRE_EXTENSION": "1"})
    if rc != 0:
        return failed_run(rc, text, limit_s, "tile sweep")
    result = json.loads(text.strip().splitlines()[-1])
    d = result["decision"]
    details = [
        f"  n = {r['n']:>6} q = {r['q']:>5} tile {r['tile']:>6}: fwd {r['forward_ms']:9.2f} ms, fwd+bwd "
        f"{r['forward_backward_ms']:9.2f} ms, peak {r['peak_extra_mib']:8.1f} MiB"
        for r in result["rows"]
    ]
    change = (
        "the default already"
        if d["best_tile"] == d["current_default"]
        else f"set {d['set_in']} = {d['best_tile']} (now {d['current_default']})"
    )
    return Outcome(
        PASSED, f"best tile {d['best_tile']} on {d['device']}: {change}; tile_sweep.csv, tile_default.json", details
    )


# ---------------------------------------------------------------------------------------------
# g. demo


def stage_demo(ctx: Context, limit_s: float) -> Outcome:
    demo_out = ctx.out / "demo"
    if ctx.dry:
        folder = make_image_folder(ctx.out / "demo_images", classes=3, per_class=24, size=12)
        dataset = {"dataset": "folder", "data_dir": folder, "image_size": 12}
        tiny = {"epochs": 1, "train_size": 0, "probe_size": 0, "batch_size": 24, "width": 4, "proj_dim": 32, "knn_k": 5}
        cmd = command_line({**dataset, "methods": "sfrik", **tiny, "accelerator": "cpu"})
        data = "dry run: a generated 3-class image folder, sfrik only, on the CPU"
    else:
        if FASHION_MNIST_DIR.is_dir():
            cmd, data = ["--data-dir", str(FASHION_MNIST_DIR), "--no-download"], "Fashion-MNIST"
        else:
            folder = make_image_folder(ctx.out / "demo_images", classes=10, per_class=600, size=32)
            cmd = ["--dataset", "folder", "--data-dir", str(folder)]
            data = f"a generated 10-class image folder ({FASHION_MNIST_DIR} absent, no download)"
        cmd += ["--epochs", "1", "--accelerator", "gpu"]
    rc, text = run_logged(ctx, "demo", [ctx.python, "-m", "sfrik_plugin.demo", *cmd, "--out", str(demo_out)], limit_s)
    if rc != 0 or not (demo_out / "results.csv").exists():
        return failed_run(rc, text, limit_s, "sfrik-demo")
    rows = read_csv(demo_out / "results.csv")
    details = [
        f"  {r['method']:<14} linear {r['linear_top1']:>6} kNN {r['knn_top1']:>6} s/step "
        f"{r['sec_per_step'] or '-':>8.8} peak MiB {r['peak_mem_mb'] or '-':>8.8}"
        for r in rows
    ]
    return Outcome(PASSED, f"one epoch on {data}: {len(rows) - 1} methods; demo/results.csv", details)


# ---------------------------------------------------------------------------------------------
# h. solo-learn


def stage_solo(ctx: Context, limit_s: float) -> Outcome:
    where = ctx.args.solo_learn_dir
    if not where:
        return Outcome(SKIPPED, "no --solo-learn-dir given")
    checkout = Path(where).resolve()
    if not (checkout / "main_pretrain.py").is_file() or not (checkout / "main_knn.py").is_file():
        return Outcome(SKIPPED, f"{checkout} has no main_pretrain.py / main_knn.py")
    rc, text = python_code(ctx, "solo-import", "import solo", 60)
    if rc != 0:
        return Outcome(
            SKIPPED, f"solo-learn is not installed in this environment (`make solo-learn SOLO_LEARN_DIR={checkout}`)"
        )
    start = time.monotonic()
    folder = make_image_folder(ctx.out / "solo_images", classes=4, per_class=80, size=32)
    ckpt_dir = ctx.out / "solo_ckpt"
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
        f"+default_root_dir={ctx.out / 'solo_runs'}",
        f"accelerator={'cpu' if ctx.dry else 'gpu'}",
    ]
    rc, text = run_logged(ctx, "solo-pretrain", cmd, limit_s, env, cwd=checkout)
    if rc != 0:
        return failed_run(rc, text, limit_s, "main_pretrain.py")
    runs = [p for p in (ckpt_dir / "sfrik").iterdir() if p.is_dir()] if (ckpt_dir / "sfrik").is_dir() else []
    if not runs or not list(runs[0].glob("*.ckpt")):
        return Outcome(FAILED, "main_pretrain.py wrote no checkpoint", tail(text))
    note = f"main_pretrain.py: {steps} steps of batch 8 in {time.monotonic() - start:.0f} s"
    if ctx.dry:
        return Outcome(PASSED, f"{note}; main_knn.py not run (dry run: it moves batches to CUDA)")
    data = {"dataset": "custom", "train_data_path": folder, "val_data_path": folder, "data_format": "image_folder"}
    options = {"pretrained_checkpoint_dir": runs[0], **data, "batch_size": 64, "num_workers": 4, "k": 20}
    options |= {"temperature": 0.07, "distance_function": "cosine", "feature_type": "backbone"}
    knn = [ctx.python, "-m", "sfrik_plugin.solo.knn", "--solo-learn-dir", str(checkout)]
    knn += command_line(options, separator="_")
    rc, text = run_logged(ctx, "solo-knn", knn, limit_s - (time.monotonic() - start), env, cwd=checkout)
    if rc != 0:
        return failed_run(rc, text, limit_s, "main_knn.py")
    results = re.findall(r"Result: acc@1=([\d.]+), acc@5=([\d.]+)", text)
    return Outcome(
        PASSED,
        f"{note}; main_knn.py on its checkpoint: acc@1 {results[-1][0] if results else '?'} "
        f"(train = val folder: a smoke test, not a result)",
    )


STAGES = (
    Stage("a", "build", 150, 60, stage_build),
    Stage("b", "tests", 210, 90, stage_tests),
    Stage("c", "sanitizer", 60, 10, stage_sanitizer),
    Stage("d", "operator", 25, 60, stage_operator),
    Stage("e", "losses", 80, 150, stage_losses),
    Stage("f", "tiles", 30, 60, stage_tiles),
    Stage("g", "demo", 75, 120, stage_demo),
    Stage("h", "solo-learn", 60, 90, stage_solo),
)


# ---------------------------------------------------------------------------------------------
# Driver and report


def machine(dry: bool) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "mode": "dry run (CPU, tiny sizes)" if dry else "GPU",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            sms=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    else:
        info["gpu"] = "none visible"
    return info


def write_report(out: Path, info: dict, results: list, wall: float, budget: float) -> str:
    lines = [
        "# GPU check report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"Whole run {wall:.0f} s (budget {budget:.0f} s).",
        "",
        "## Stages",
        "",
    ]
    for stage, outcome, seconds, limit in results:
        lines.append(
            f"- {stage.key}. {stage.name}: **{outcome.status}** ({seconds:.0f} s of {limit:.0f} s): {outcome.summary}"
        )
    lines += ["", "## Details", ""]
    for stage, outcome, _, _ in results:
        if outcome.details:
            lines += [f"### {stage.key}. {stage.name}", "", "```", *outcome.details, "```", ""]
    csvs = sorted(p.name for p in out.glob("*.csv"))
    lines += ["## Files", "", f"CSVs: {', '.join(csvs) or 'none'}; logs in logs/.", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for report.md, the CSVs and logs/")
    parser.add_argument("--dry-run", action="store_true", help="every stage on the CPU at tiny sizes")
    parser.add_argument("--solo-learn-dir", default=None, help="solo-learn checkout for stage h")
    parser.add_argument("--no-build", action="store_true", help="reuse the existing build (stage a only loads it)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for the whole run")
    parser.add_argument("--stages", default="abcdefgh", help="the stages to run, by letter (default: all)")
    parser.add_argument("--worker", choices=("operator", "tiles"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        {"operator": worker_operator, "tiles": worker_tiles}[args.worker](out, args.dry_run)
        return 0
    if not args.dry_run and not cuda_available():
        print(
            "gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run with --dry-run to "
            "check the script on the CPU",
            file=sys.stderr,
        )
        return 2
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    ctx = Context(args=args, out=out, logs=logs, dry=args.dry_run)
    info = machine(args.dry_run)
    start = time.monotonic()
    results = []
    for stage in STAGES:
        limit = stage.dry_limit_s if args.dry_run else stage.limit_s
        left = args.budget - (time.monotonic() - start)
        stage_start = time.monotonic()
        if stage.key not in args.stages:
            outcome = Outcome(SKIPPED, f"not selected (--stages {args.stages})")
        elif left < MIN_STAGE_S:
            outcome = Outcome(SKIPPED, f"no time left in the {args.budget:.0f} s budget ({left:.0f} s)")
        else:
            limit = min(limit, left)
            try:
                outcome = stage.run(ctx, limit)
            except Exception as err:  # noqa: BLE001 (a bug in a stage must not hide the others' results)
                outcome = Outcome(FAILED, f"the stage raised {type(err).__name__}: {err}")
        seconds = time.monotonic() - stage_start
        results.append((stage, outcome, seconds, limit))
        print(f"{stage.key}. {stage.name}: {outcome.status} ({seconds:.0f} s): {outcome.summary}", flush=True)
    wall = time.monotonic() - start
    write_report(out, info, results, wall, args.budget)
    print(f"report: {out / 'report.md'} ({wall:.0f} s)")
    return 1 if any(outcome.status == FAILED for _, outcome, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
