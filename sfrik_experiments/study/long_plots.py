"""The long-budget study's plots (curves.png, tuning_curves.png), from its results rows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from .long_curves import final_rows, point_value
from .long_plan import LongPreset, Tuned
from .report_rows import Rows, finite_number


def plots(out: Path, preset: LongPreset, rows: Rows, tuned: Tuned, step_ms: Mapping[str, float] | None = None) -> None:
    """curves.png: test linear and kNN top-1 against steps (mean over seeds, the band the seeds'
    min to max, each seed's point), and linear top-1 against training minutes (the equal-wall-time
    reading): steps x each method's step time in a quiet timing pass where `step_ms` has every
    method, else the runs' own training minutes (mean, and each seed's point; the machine's load
    varies); tuning_curves.png: every tuning run's validation linear top-1 against steps, one panel
    per method."""
    from sfrik_experiments.utils.output import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    # the quiet step times where the pass timed every method (one clock for all), else the runs' own
    clock = step_ms or {}
    quiet = bool(clock) and all(m in clock for m in preset.methods)
    time_axis = "quiet" if quiet else "train_s"
    panels = (("linear_top1", "step", axes[0]), ("knn_top1", "step", axes[1]), ("linear_top1", time_axis, axes[2]))

    def x_value(row: Mapping[str, str], epoch: int, x_name: str, method: str) -> float | None:
        if x_name == "quiet":
            step = point_value(row, epoch, "step")
            return None if step is None else step * clock[method] / 60000
        value = point_value(row, epoch, x_name)
        return value / 60 if value is not None and x_name == "train_s" else value

    for measure, x_name, ax in panels:
        for i, method in enumerate(preset.methods):
            colour = f"C{i}"
            runs = final_rows(preset, rows, tuned, method)
            xs, means, lows, highs = [], [], [], []
            for e in preset.curve_epochs:
                pairs = [(x_value(r, e, x_name, method), point_value(r, e, measure)) for r in runs.values()]
                points = [(x, y) for x, y in pairs if x is not None and y is not None]
                if not points:
                    continue
                x = [p[0] for p in points]
                y = [p[1] for p in points]
                ax.scatter(x, y, s=8, color=colour, alpha=0.5)
                xs.append(sum(x) / len(x))
                means.append(sum(y) / len(y))
                lows.append(min(y))
                highs.append(max(y))
            if xs:
                ax.plot(xs, means, marker="o", color=colour, label=method)
                if x_name != "train_s":  # every seed has the same steps; its own training minutes vary
                    ax.fill_between(xs, lows, highs, color=colour, alpha=0.12)
        floor = [
            v
            for r in final_rows(preset, rows, tuned, "random").values()
            if (v := finite_number(r[measure])) is not None
        ]
        if floor:
            ax.axhline(sum(floor) / len(floor), ls="--", lw=1, color="gray", label="random encoder")
        ax.set_xlabel(
            {
                "step": "optimiser steps",
                "quiet": "training minutes (steps x the quiet timing pass's step time)",
                "train_s": "training minutes (the runs' own; this machine, load varies)",
            }[x_name]
        )
        ax.set_ylabel(f"test {'linear' if measure == 'linear_top1' else 'kNN'} top-1 (%)")
        ax.grid(alpha=0.3)
    if axes[0].lines:
        axes[2].legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(
        f"{preset.dataset}: learning curves at q = {preset.q} (mean over seeds; band: min to max; dots: seeds)"
    )
    save_figure(fig, out / "curves.png")

    methods = list(preset.methods)
    cols = min(4, max(1, len(methods)))
    nrows = math.ceil(len(methods) / cols)
    fig, grid = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    by_id = {r["run_id"]: r for r in rows}
    for k, method in enumerate(methods):
        ax = grid[k // cols][k % cols]
        search, state = tuned[method]
        for spec in state.runs:
            row = by_id.get(spec.run_id)
            if row is None:
                continue
            pts = [(point_value(row, e, "step"), point_value(row, e, "linear_top1")) for e in preset.curve_epochs]
            pts = [p for p in pts if p[0] is not None and p[1] is not None]
            if pts:
                best = spec == state.best_run
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    marker="o",
                    lw=2.5 if best else 1,
                    label=f"lr {float(spec.params['lr']):g}" + (" (chosen)" if best else ""),  # type: ignore[arg-type]
                )
        ax.set_title(method)
        ax.set_xlabel("optimiser steps")
        ax.set_ylabel("val linear top-1 (%)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for k in range(len(methods), nrows * cols):
        grid[k // cols][k % cols].axis("off")
    fig.suptitle(f"{preset.dataset}: tuning runs at the long budget (validation, seed {preset.tune_seed})")
    save_figure(fig, out / "tuning_curves.png")
