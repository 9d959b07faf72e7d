"""sfrik-study: SFRIK against VICReg, Barlow Twins, SimCLR, AUH, LeJEPA's SIGReg and MMCR, every method tuned
alike on a validation split (grids grown until the choice is interior, two more rungs at a cap, the best
cells confirmed with two more seeds), then ten seeds on the test split, re-tuned at each q of the table,
with the paper's ablations.

  sfrik-study --out runs/study                       # the recorded study (v3) on Fashion-MNIST (hours on 2 CPU cores)
  sfrik-study --preset smoke --dataset folder --data-dir my_images/ --out runs/smoke   # every phase, toy sizes
  sfrik-study --dataset folder --data-dir my_images/ --out runs/mine
  sfrik-study --out runs/study --phases timing       # the interleaved timing pass (run it on a quiet machine)
  sfrik-study --out runs/study --report-only         # summary.md and the plots from the results so far
  sfrik-study --out runs/study --only 'final|sfrik|q=1024|seed=0|test|...'   # run one recorded run again
  sfrik-study --preset long --out runs/long          # the long-budget study with learning curves (study/long.py)
  sfrik-study --preset full --out runs/v2            # v2's rule: one seed per tuning cell, five final seeds (plan.py)

Rerunning a command skips the runs already in <out>/results.csv; an interruption (Ctrl-C, SIGTERM)
loses the run in progress and nothing else: it is not recorded, the command exits with 130 (143
for SIGTERM), and the next command runs it again. One process at a time uses an --out (a second is
told which holds it; --report-only, which only reads, runs beside it). --only runs the named runs
and nothing else; their rows are replaced only when the new runs finish. <out>/summary.md and the
plots are rewritten after every phase.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sfrik_experiments.engine import data as datasets
from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.utils.arguments import check_accelerator
from sfrik_plugin.utils.files import FolderLock, writable_dir
from sfrik_plugin.utils.interrupt import exits_on_interrupt

from .long_plan import LONG_PHASES, LONG_PRESETS
from .plan import PHASES, Planner, study_runs
from .presets import PRESETS

ALL_PHASES = (*PHASES, "timing")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sfrik-study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=sorted({*PRESETS, *LONG_PRESETS}),
        default="v3",
        help="the study (default v3, the recorded one; full: v2's rule); long and long-smoke: the long-budget "
        "study with learning curves (phases tune and final)",
    )
    parser.add_argument("--out", required=True, help="folder of results.csv, timing.csv, summary.md and the plots")
    datasets.add_dataset_arguments(parser, default=None)
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=ALL_PHASES,
        default=list(ALL_PHASES),
        help="phases to run (default: all; tuning results are needed by the others)",
    )
    parser.add_argument(
        "--library",
        choices=("auto", "solo-learn", "lightly"),
        default="auto",
        help="where the baselines come from (auto: the results file's, else solo-learn if "
        "installed, else lightly); one study uses one library",
    )
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu)")
    parser.add_argument("--inner-bars", action="store_true", help="show Lightning's bar of every run")
    parser.add_argument("--timing-rounds", type=int, default=8, help="rounds of the interleaved timing pass")
    parser.add_argument(
        "--overwrite-timing",
        action="store_true",
        help="time again and replace <out>/timing.csv (without it an existing timing pass is kept)",
    )
    parser.add_argument("--report-only", action="store_true", help="only rewrite summary.md and the plots")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="RUN_ID",
        help="run these recorded runs again (their run_id column in results.csv), replacing their rows",
    )
    args = parser.parse_args(argv)
    check_accelerator(parser, args.accelerator, ("cpu", "gpu", "cuda"))
    return args


def resolve_library(requested: str, rows) -> str:
    """The study's baseline library (one per results file), checked to import before any run."""
    from sfrik_plugin.baselines import require_library

    library = _choose_library(requested, rows)
    try:
        require_library(library)
    except RuntimeError as error:
        raise SystemExit(f"sfrik-study: {error}") from None
    return library


def _choose_library(requested: str, rows) -> str:
    from sfrik_plugin.baselines import available_library

    used = {r["library"] for r in rows}
    if len(used) > 1:
        raise SystemExit(f"the results file mixes baseline libraries {sorted(used)}: start a new --out")
    if used:
        library = used.pop()
        if requested not in ("auto", library):
            raise SystemExit(
                f"--library {requested}: the results so far used {library}; one study uses one "
                f"library (start a new --out to change it)"
            )
        return library
    if requested != "auto":
        return requested
    library = available_library()
    if library is None:
        raise SystemExit("the baselines come from solo-learn or lightly, and neither is installed: pip install lightly")
    return library


@exits_on_interrupt("sfrik-study")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.preset in LONG_PRESETS:
        return long_study(args)
    preset = PRESETS[args.preset]
    if args.dataset:
        preset = replace(preset, dataset=args.dataset)
    return in_out_folder(args, lambda out: run_command(args, preset, out))


def in_out_folder(args: argparse.Namespace, command: Callable[[Path], int]) -> int:
    """command(out) in the checked --out, holding its lock: one process appends to a results folder
    at a time. --report-only only reads the rows and rewrites the report (atomically), so it runs
    beside a study in progress without the lock."""
    out = writable_dir(args.out, "--out", "sfrik-study")
    if args.report_only:
        return command(out)
    with FolderLock(out, "sfrik-study"):
        return command(out)


def long_study(args: argparse.Namespace) -> int:
    """A long preset: its phases are tune and final (--phases naming another is refused)."""
    from . import long

    preset = LONG_PRESETS[args.preset]
    if args.dataset:
        preset = replace(preset, dataset=args.dataset)
    named = args.phases != list(ALL_PHASES)  # the default names every phase
    others = sorted(set(args.phases) - set(LONG_PHASES)) if named else []
    if others:
        raise SystemExit(
            f"sfrik-study: --preset {args.preset} has the phases {', '.join(LONG_PHASES)}, not {others[0]}"
        )
    phases = [p for p in LONG_PHASES if p in args.phases]
    return in_out_folder(args, lambda out: long.run_command(args, preset, out, phases, resolve_library))


def run_command(args: argparse.Namespace, preset, out: Path) -> int:
    from . import report

    store = ResultsFile(out / "results.csv", preset.protocol())
    if args.report_only:
        print(report.write(out, preset, store.rows))
        return 0
    library = resolve_library(args.library, store.rows)
    run_phases = [p for p in PHASES if p in args.phases]
    only = None
    if args.only:
        only = set(args.only)
        unknown = sorted(only - store.done)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(store.done), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"sfrik-study: --only: no recorded run {unknown[0]!r} in {store.path}{hint}")
        print(f"sfrik-study: running {len(only)} recorded run(s) again", flush=True)
    if run_phases:
        run_study(preset, args, store, library, run_phases, out, only)
    timing = out / "timing.csv"
    if "timing" in args.phases and only is None and timing.exists() and not args.overwrite_timing:
        print(f"sfrik-study: {timing} holds a timing pass: not timed again (--overwrite-timing replaces it)")
    elif "timing" in args.phases and only is None:  # --only runs what it names and nothing else
        from .timing import run_timing

        data = datasets.load(preset.dataset, args.data_dir, download=args.download, image_size=args.image_size)
        run_timing(preset, data, store.rows, library, timing, rounds=args.timing_rounds)
    print(report.write(out, preset, store.rows))
    return 0


def run_study(
    preset, args, store: ResultsFile, library: str, phases: list[str], out: Path, only: set | None = None
) -> None:
    from tqdm.auto import tqdm

    from sfrik_experiments.engine.runner import Runner

    from . import report

    planner = Planner(preset)
    total = planner.count(phases) if only is None else len(only)
    done_before = (
        0 if only is not None else len([s for s in study_runs(preset, store.rows, phases) if s.run_id in store.done])
    )
    again = set(only or ())  # recorded runs to do again: their old rows stay until the new ones replace them
    print(
        f"sfrik-study ({preset.name}): {total} runs at least (more if a tuning grid grows), "
        f"{done_before} already in {store.path}; "
        f"protocol: {preset.protocol()}; baselines from {library}",
        flush=True,
    )
    data = datasets.load(preset.dataset, args.data_dir, download=args.download, image_size=args.image_size)
    runner = Runner(preset, data, library=library, accelerator=args.accelerator, progress_bar=args.inner_bars)
    bar = tqdm(total=total, initial=done_before, desc="study runs", unit="run", dynamic_ncols=True)
    phase = None
    try:
        while True:
            todo = [
                s
                for s in study_runs(preset, store.rows, phases)
                if (s.run_id not in store.done if only is None else s.run_id in again)
            ]
            if not todo:
                break
            if bar.total is not None and bar.n + len(todo) > bar.total:  # a search grew: more runs than planned
                bar.total = bar.n + len(todo)
                bar.refresh()
            spec = todo[0]
            if phase is not None and spec.phase != phase:
                report.write(out, preset, store.rows)
            phase = spec.phase
            bar.set_postfix_str(f"{spec.phase} {spec.method} q={spec.q} seed={spec.seed}")
            row = runner.run(spec)  # raises RunInterrupted if the run was cut short: no row
            if spec.run_id in again:
                store.replace(row)
                again.discard(spec.run_id)
            else:
                store.append(row)
            bar.update(1)
            outcome = (
                f"linear {row['linear_top1']:6.2f}  kNN {row['knn_top1']:6.2f}"
                if row["status"] == "ok"
                else row["status"]
            )
            bar.write(
                f"{spec.phase:8s} {spec.method:12s} q={spec.q:<5d} seed={spec.seed} {spec.split:10s} "
                f"{spec.setting_text:44s} {outcome}  ({row['wall_s']:.0f} s)"
            )
    finally:
        bar.close()
