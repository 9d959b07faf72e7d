"""Stages f-i: the benchmark suites (sfrik-bench bandwidth and gram, losses, step, tiled)."""

from __future__ import annotations

import csv
import re
import time

from . import core
from .core import CSVS, FAILED, PARTIAL, PASSED, Context, Outcome, _package_module, baselines_note, command_line, tail

# ---------------------------------------------------------------------------------------------
# f-i. the benchmark suites (sfrik-bench)


def stage_bandwidth(ctx: Context) -> Outcome:
    size = {"device": "cpu", "n": 256, "repeats": 2} if ctx.dry else {"device": "cuda", "n": 16384}
    path = ctx.out / CSVS["bandwidth"]
    _, rows = core.bench(ctx, "bandwidth", ["bandwidth", *command_line(size)], path, "sfrik-bench bandwidth")
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
    run, rows = core.bench(ctx, "gram", ["gram", *command_line(size)], path, "sfrik-bench gram")
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
            run, cells = core.bench(ctx, f"losses-{autocast}", words, part, what, partial=True)
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
    profile = loss_profile(ctx)
    details = [*loss_targets(rows), *profile, *(loss_line(r) for r in rows)]
    ok = sum(r["status"] == "ok" for r in rows)
    summary = f"{ok} of {len(rows)} cells ran (float32 and bf16 autocast){baselines_note(ctx)}; {CSVS['losses']}"
    if stopped:
        summary += f" ({'; '.join(stopped)})"
    summary += "; profile: " + ("; ".join(line for line in profile if line.startswith("q = ")) or "none")
    return Outcome(FAILED if bad else PARTIAL if stopped else PASSED, summary, details)


def loss_profile(ctx: Context) -> list[str]:
    """programs/loss_profile.py: where SFRIK's loss time goes (kernels, their count, the device's
    idle time), to read against its floor. Informative: a failure is reported, not fatal."""
    size = ["--device", "cpu", "--n", "64", "--dims", "32", "--calls", "1"] if ctx.dry else []
    cmd = [ctx.python, str(core.PROGRAMS / "loss_profile.py"), *size]
    run = core.run_logged(ctx, "loss-profile", cmd, env={"SFRIK_REQUIRE_EXTENSION": "1"}, limit=40)
    if not run.ok:
        return [f"  loss profile: {'timed out' if run.rc is None else f'exit status {run.rc}'} (logs/loss-profile.log)"]
    return [line for line in run.text.splitlines() if line.startswith(("q = ", "    "))]


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


def baseline_out_of_memory(r: dict) -> bool:
    """A baseline's step out of memory is a finding (VICReg and Barlow Twins at q = 32768 on the
    80 GB H100, 2026-12-06: their q x q matrices); SFRIK or the step without a loss out of memory
    fails the stage."""
    return r["status"].startswith("out of memory") and r["method"] not in ("none", "sfrik")


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
    run, rows = core.bench(ctx, "step", ["step", *command_line(size)], path, "sfrik-bench step", partial=True)
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
    no_fit = [f"{r['method']} at q = {r['q']}" for r in rows if baseline_out_of_memory(r)]
    if no_fit:
        summary += "; out of memory: " + ", ".join(no_fit)
    if run.rc is None:
        summary += f" ({run.stopped_after(dims[-1])})"
    failed = [r for r in rows if r["status"] != "ok" and not r["status"].startswith("skipped")]
    failed = [r for r in failed if not baseline_out_of_memory(r)]
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
    run, rows = core.bench(ctx, "tiles", words, path, "sfrik-bench tiled --sweep-only")
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
