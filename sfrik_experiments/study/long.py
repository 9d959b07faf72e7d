"""The long-budget study (issue 29, item 1): every method of the study at about ten times the v2
budget, with a learning curve from each run.

  sfrik-study --preset long --out runs/long                  # Fashion-MNIST, hours on 2 CPU cores
  sfrik-study --preset long --out runs/long --report-only    # summary.md and the plots from the runs so far
  sfrik-study --preset long-smoke --dataset folder --data-dir my_images/ --out runs/long-smoke   # toy sizes

The protocol, the tuning rule and the order of the runs: study/long_plan.py.

Each finished run is appended whole to <out>/results.csv; a run cut short is not recorded, and
the same command resumes. The long presets have no timing phase of their own: a quiet interleaved
pass of a preset with the same network, batch and q (`sfrik-study --phases timing`) copied to
<out>/timing.csv gives the report's equal-wall-time reading. A bar counts the runs; each curve
point prints a line as it is measured (Lightning's bar of every run with --inner-bars). summary.md
and the plots (study/long_report.py) are rewritten after a run at most once a minute, and at the
end."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sfrik_experiments.engine import data as datasets
from sfrik_experiments.engine.results import ResultsFile

from . import long_report
from .long_plan import LongPreset, count, long_runs


def run_command(
    args: argparse.Namespace,
    preset: LongPreset,
    out: Path,
    phases: Sequence[str],
    resolve_library: Callable[[str, list], str],
) -> int:
    """sfrik-study with a long preset (study/cli.py routes here, holding the --out lock): the runs
    of `phases` not yet in <out>/results.csv, then summary.md and the plots."""
    store = ResultsFile(out / "results.csv", preset.protocol(), preset.fields)
    if args.report_only:
        print(long_report.write(out, preset, store.rows))
        return 0
    if args.only:
        raise SystemExit(
            "sfrik-study: --only is not available with the long presets: a run of the long study is "
            "recorded once (start another --out to run it again)"
        )
    library = resolve_library(args.library, store.rows)
    run_long(preset, args, store, library, phases, out)
    print(long_report.write(out, preset, store.rows))
    return 0


def _point_line(point: Mapping[str, object]) -> str:
    return (
        f"    epoch {point['epoch']:>3} step {point['step']:>5}: linear {float(point['linear_top1']):6.2f}  "  # type: ignore[arg-type]
        f"kNN {float(point['knn_top1']):6.2f}  ({float(point['train_s']) / 60:.1f} min of training)"  # type: ignore[arg-type]
    )


def run_long(
    preset: LongPreset,
    args: argparse.Namespace,
    store: ResultsFile,
    library: str,
    phases: Sequence[str],
    out: Path,
    report_every_s: float = 60.0,
) -> None:
    """Runs what is left, one run at a time, each row appended when its run ends; summary.md and
    the plots are rewritten after a run when `report_every_s` have passed since the last time."""
    from tqdm.auto import tqdm

    from sfrik_experiments.engine.runner import Runner

    at_least, at_most = count(preset, phases)
    done_before = len([s for s in long_runs(preset, store.rows, phases) if s.run_id in store.done])
    print(
        f"sfrik-study ({preset.name}): {at_least} to {at_most} runs (the learning-rate ladders grow at an "
        f"edge up to {preset.lr_max_rungs} rungs), {done_before} already in {store.path}; "
        f"protocol: {preset.protocol()}; baselines from {library}",
        flush=True,
    )
    data = datasets.load(preset.dataset, args.data_dir, download=args.download, image_size=args.image_size)
    runner = Runner(preset, data, library=library, accelerator=args.accelerator, progress_bar=args.inner_bars)
    bar = tqdm(total=at_least, initial=done_before, desc="long-study runs", unit="run", dynamic_ncols=True)
    last_report = time.monotonic()
    try:
        while True:
            todo = [s for s in long_runs(preset, store.rows, phases) if s.run_id not in store.done]
            if not todo:
                break
            if bar.total is not None and bar.n + len(todo) > bar.total:  # a ladder grew
                bar.total = bar.n + len(todo)
                bar.refresh()
            spec = todo[0]
            bar.set_postfix_str(f"{spec.phase} {spec.method} seed={spec.seed} {spec.setting_text}")
            bar.write(f"{spec.phase:6s} {spec.method:12s} seed={spec.seed:<3d} {spec.split:10s} {spec.setting_text}")
            row = runner.run(spec, preset.curve_epochs, lambda point: bar.write(_point_line(point)))
            store.append(row)  # a run cut short raised above: nothing is recorded
            bar.update(1)
            outcome = (
                f"linear {row['linear_top1']:6.2f}  kNN {row['knn_top1']:6.2f}"
                if row["status"] == "ok"
                else row["status"]
            )
            bar.write(f"    done: {outcome}  ({float(row['wall_s']) / 60:.1f} min)")  # type: ignore[arg-type]
            if time.monotonic() - last_report >= report_every_s:
                long_report.write(out, preset, store.rows)
                last_report = time.monotonic()
    finally:
        bar.close()
