"""The report's plots: accuracy per method and against q, the ablation bars (v3: each seed's
point over them), and for a version-3 preset the paired differences with their intervals and each
final run's accuracy against its training time. Written with matplotlib where it is installed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .plan import Choices
from .presets import Preset
from .report_paired import Comparison, ablation_comparisons, comparisons
from .report_rows import (
    METRICS,
    PROBES,
    Rows,
    ablation_variants,
    final_match,
    measured_value,
    seed_values,
    summary_of,
    values_by_seed,
)
from .report_time import training_times
from .stats import summarise


def plots(out: Path, preset: Preset, rows: Rows, chosen: Choices) -> None:
    from sfrik_experiments.utils.output import pyplot, save_figure

    plt = pyplot()
    q = preset.main_q
    methods = [m for m in preset.methods if m in chosen.main]
    per_seed = preset.version >= 3  # v3: each seed's point over the bars and curves

    # accuracy per method with 95 % intervals
    fig, ax = plt.subplots(figsize=(8, 4))
    for offset, metric, label in ((-0.2, "linear_top1", "linear probe"), (0.2, "knn_top1", "weighted kNN")):
        sums = [summary_of(rows, metric, **final_match(preset, chosen, m, q)) for m in methods]
        ax.bar(
            [i + offset for i in range(len(methods))],
            [s.mean for s in sums],
            width=0.4,
            label=label,
            yerr=[[s.mean - s.low if s.n > 1 else 0 for s in sums], [s.high - s.mean if s.n > 1 else 0 for s in sums]],
            capsize=4,
        )
        if per_seed:
            for i, m in enumerate(methods):
                values = list(values_by_seed(rows, metric, **final_match(preset, chosen, m, q)).values())
                ax.scatter([i + offset] * len(values), values, s=9, color="black", alpha=0.6, zorder=3)
        floor = summary_of(rows, metric, **final_match(preset, chosen, "random", q))
        if floor.n:
            ax.axhline(floor.mean, ls="--", lw=1, color="gray" if metric == "linear_top1" else "silver")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("test top-1 (%), 95 % CI")
    _tight_ylim(ax, rows)
    if methods:
        ax.legend()
    ax.set_title(f"{preset.dataset}: final runs at q = {q} (dashed: random encoder)")
    save_figure(fig, out / "accuracy.png")

    # accuracy against q with bands
    fig, ax = plt.subplots(figsize=(8.5, 4))
    for m in methods:
        sums = [summary_of(rows, "linear_top1", **final_match(preset, chosen, m, qq)) for qq in preset.table_qs]
        xs = [qq for qq, s in zip(preset.table_qs, sums) if s.n]
        if not xs:
            continue
        means = [s.mean for s in sums if s.n]
        ax.plot(xs, means, marker="o", label=m)
        lows = [s.low if s.n > 1 else s.mean for s in sums if s.n]
        highs = [s.high if s.n > 1 else s.mean for s in sums if s.n]
        ax.fill_between(xs, lows, highs, alpha=0.15)
        if per_seed:
            color = ax.lines[-1].get_color()
            for qq in preset.table_qs:
                values = list(values_by_seed(rows, "linear_top1", **final_match(preset, chosen, m, qq)).values())
                ax.scatter([qq] * len(values), values, s=8, color=color, alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("q (projector output width)")
    ax.set_ylabel("test linear top-1 (%), 95 % CI")
    if ax.lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: inside it hid the curves
    ax.set_title(f"{preset.dataset}: linear top-1 against q")
    save_figure(fig, out / "accuracy_vs_q.png")

    # ablation bars
    variants = ablation_variants(preset, chosen)
    if variants:
        fig, ax = plt.subplots(figsize=(8, 4))
        if per_seed:  # v3: every variant on the same seeds
            sums = [
                summarise(list(seed_values(rows, "linear_top1", preset.ablation_seeds, m).values()))
                for _, m in variants
            ]
        else:
            sums = [summary_of(rows, "linear_top1", **match) for _, match in variants]
        ax.bar(
            range(len(variants)),
            [s.mean for s in sums],
            color="tab:purple",
            yerr=[[s.mean - s.low if s.n > 1 else 0 for s in sums], [s.high - s.mean if s.n > 1 else 0 for s in sums]],
            capsize=4,
        )
        if per_seed:
            for i, (_, match) in enumerate(variants):
                values = list(seed_values(rows, "linear_top1", preset.ablation_seeds, match).values())
                ax.scatter([i] * len(values), values, s=9, color="black", alpha=0.6, zorder=3)
        ax.set_xticks(range(len(variants)), [label for label, _ in variants], rotation=12)
        ax.set_ylabel("test linear top-1 (%), 95 % CI")
        _tight_ylim(ax, rows)
        ax.set_title(f"{preset.dataset}: ablations at q = {q}")
        save_figure(fig, out / "ablation.png")


def plots_v3(out: Path, preset: Preset, rows: Rows, chosen: Choices, timing: Sequence[Mapping[str, str]]) -> None:
    """paired_differences.png (each paired difference with its 95 % interval and each seed's
    difference: the baselines − SFRIK at every q, linear and kNN, and the ablation variants − L = 3)
    and accuracy_vs_time.png (each final run's linear top-1 against its pretraining minutes)."""
    from sfrik_experiments.utils.output import pyplot, save_figure

    plt = pyplot()
    panels = [
        (
            f"baseline − SFRIK, q = {q}",
            {label: comparisons(preset, rows, chosen, metric, q) for metric, label in PROBES},
        )
        for q in preset.table_qs
    ]
    panels.append(
        (
            "ablation variant − L = 3",
            {label: ablation_comparisons(preset, rows, chosen, metric) for metric, label in PROBES},
        )
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, by_probe) in zip(axes[0], panels):
        names = sorted({c.method for items in by_probe.values() for c in items}, key=_order(by_probe))
        for offset, (label, items) in zip((-0.15, 0.15), by_probe.items()):
            for c in items:
                y = names.index(c.method) + offset
                if c.diff.n > 1:
                    ax.errorbar(
                        c.diff.mean,
                        y,
                        xerr=[[c.diff.mean - c.diff.low], [c.diff.high - c.diff.mean]],
                        fmt="o",
                        color="tab:blue" if label == "linear top-1" else "tab:orange",
                        capsize=3,
                        label=label if c is items[0] else None,
                    )
                ax.scatter(c.differences, [y] * len(c.differences), s=8, color="black", alpha=0.5, zorder=3)
        ax.axvline(0.0, color="gray", lw=1)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()  # the tables' order, top down
        ax.set_xlabel("Δ test top-1 (points), 95 % CI; dots: seeds")
        ax.set_title(title, fontsize=10)
        if names and ax is axes[0][0]:
            ax.legend(fontsize=8)
    save_figure(fig, out / "paired_differences.png")

    q = preset.main_q
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for t in training_times(preset, rows, chosen, timing, q):
        m = final_match(preset, chosen, t.method, q)
        points = [
            (float(r["train_minutes"]), float(r["linear_top1"]))
            for r in rows
            if all(str(r[k]) == str(v) for k, v in m.items())
            and measured_value(r["train_minutes"]) is not None
            and r["linear_top1"] != ""
        ]
        if not points:
            continue
        dots = ax.scatter(*zip(*points), s=12, alpha=0.6)
        if t.linear.n and t.minutes.n:
            ax.scatter(
                [t.minutes.mean], [t.linear.mean], s=70, marker="D", color=dots.get_facecolor()[0], label=t.method
            )
    floor = summary_of(rows, "linear_top1", **final_match(preset, chosen, "random", q))
    if floor.n:
        ax.axhline(floor.mean, ls="--", lw=1, color="gray")
    ax.set_xlabel("pretraining minutes per run (the run's own)")
    ax.set_ylabel("test linear top-1 (%)")
    ax.set_title(f"{preset.dataset}, q = {q}: dots each run, diamonds the means")
    if ax.collections:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, out / "accuracy_vs_time.png")


def _order(by_probe: Mapping[str, list[Comparison]]):
    """Sort key of a panel's rows: the order of its first probe's comparisons."""
    first = [c.method for items in by_probe.values() for c in items]
    return lambda name: first.index(name)


def _tight_ylim(ax, rows: Rows) -> None:
    values = [float(r[k]) for r in rows for k in METRICS if r["split"] == "test" and r[k] != ""]
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
