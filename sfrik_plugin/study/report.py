"""summary.md and the plots of a study, from its results rows (and timing.csv when present)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from .plan import SFRIK_KERNEL_WEIGHTS, Planner, Preset, chosen_settings, format_setting
from .stats import Summary, paired_difference, summarise

Rows = Sequence[Mapping[str, str]]
METRICS = ("linear_top1", "knn_top1")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _values(rows: Rows, metric: str, **match) -> dict[int, float]:
    """seed -> value of the rows matching every field given."""
    return {
        int(r["seed"]): float(r[metric])
        for r in rows
        if all(str(r[k]) == str(v) for k, v in match.items()) and r[metric] != ""
    }


def _summary(rows: Rows, metric: str, **match) -> Summary:
    return summarise(list(_values(rows, metric, **match).values()))


def final_match(preset: Preset, chosen: Mapping[str, dict[str, object]], method: str, q: int) -> dict[str, object]:
    if method == "random":
        return {"phase": "final", "method": "random", "q": q, "split": "test"}
    return {"phase": "final", "method": method, "q": q, "split": "test", "setting": format_setting(chosen[method])}


def ablation_variants(preset: Preset, chosen) -> list[tuple]:
    """(label, match) of each ablation bar, L = 3 being SFRIK's final run."""
    variants = []
    if "sfrik" in chosen:
        for degree in sorted((*preset.ablation_degrees, 3)):
            params = {**chosen["sfrik"], "kernel_weights": SFRIK_KERNEL_WEIGHTS[degree]}
            phase = "final" if degree == 3 else "ablation"
            variants.append(
                (
                    f"Legendre L = {degree}",
                    {
                        "phase": phase,
                        "method": "sfrik",
                        "q": preset.main_q,
                        "split": "test",
                        "setting": format_setting(params),
                    },
                )
            )
    for method, label in (("mmd_gaussian", "Gaussian exp(-2s(1-t))"), ("mmd_distance", "distance -||u-v||^p")):
        if method in chosen:
            variants.append(
                (
                    label,
                    {
                        "phase": "ablation",
                        "method": method,
                        "q": preset.main_q,
                        "split": "test",
                        "setting": format_setting(chosen[method]),
                    },
                )
            )
    return variants


def read_timing(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(out: Path, preset: Preset, rows: Rows) -> str:
    """Writes summary.md and the plots into out; returns the summary text."""
    chosen = chosen_settings(preset, rows)
    timing = read_timing(out / "timing.csv")
    parts = [
        f"# sfrik-study ({preset.name})",
        "",
        f"Protocol: {preset.protocol()}.",
        "",
        f"{len(rows)} of {Planner(preset).count()} runs done.",
    ]
    parts += ["", *tuning_section(preset, rows, chosen)]
    parts += ["", *final_section(preset, rows, chosen)]
    parts += ["", *table_section(preset, rows, chosen)]
    parts += ["", *ablation_section(preset, rows, chosen)]
    parts += ["", *timing_section(timing)]
    parts += ["", *provenance_section(rows)]
    text = "\n".join(parts) + "\n"
    (out / "summary.md").write_text(text)
    try:
        plots(out, preset, rows, chosen)
    except ImportError:
        pass  # matplotlib missing: the tables are still written
    return text


def tuning_section(preset: Preset, rows: Rows, chosen) -> list[str]:
    lines = [
        f"## Tuning (validation split, seed {preset.tune_seed})",
        "",
        "Each method's grid: learning rate x one loss hyper-parameter, the same size for every method; "
        "the choice is the best validation linear top-1. The test split is not read.",
        "",
    ]
    table = []
    planner = Planner(preset)
    specs = planner.tune_runs() + planner.ablation_tune_runs(chosen)
    by_id = {r["run_id"]: r for r in rows}
    for spec in specs:
        row = by_id.get(spec.run_id)
        mark = "**chosen**" if spec.method in chosen and spec.params == chosen[spec.method] else ""
        if row is not None and row["status"] != "ok":
            cells = [row["status"].split(":")[0], "-"]
        else:
            cells = [row["linear_top1"], row["knn_top1"]] if row else ["…", "…"]
        table.append([spec.method, spec.setting_text or "-", *cells, mark])
    return lines + [_table(["method", "setting", "val linear %", "val kNN %", ""], table)]


def final_section(preset: Preset, rows: Rows, chosen) -> list[str]:
    q = preset.main_q
    lines = [
        f"## Final runs (test split, q = {q}, seeds {list(preset.final_seeds)})",
        "",
        "Mean ± sample std [95 % Student-t confidence interval] over seeds.",
        "",
    ]
    table = []
    for method in ("random", *preset.methods):
        if method != "random" and method not in chosen:
            continue
        m = final_match(preset, chosen, method, q)
        lin, knn = _summary(rows, "linear_top1", **m), _summary(rows, "knn_top1", **m)
        quality = [_summary(rows, k, **m) for k in ("rankme", "alignment", "uniformity", "mmd_l3")]
        table.append(
            [
                method if method != "random" else "random encoder",
                format_setting(chosen[method]) if method != "random" else "-",
                lin.text(),
                knn.text(),
                *(f"{s.mean:.3g}" if s.n else "-" for s in quality),
            ]
        )
    lines.append(
        _table(
            ["method", "setting", "linear top-1 %", "kNN top-1 %", "RankMe", "alignment", "uniformity", "MMD (L=3)"],
            table,
        )
    )
    if "sfrik" in chosen:
        lines += ["", "Paired difference to SFRIK over the same seeds (baseline − SFRIK; negative: SFRIK ahead):", ""]
        diffs = []
        sfrik = {k: _values(rows, k, **final_match(preset, chosen, "sfrik", q)) for k in METRICS}
        for method in preset.methods:
            if method == "sfrik" or method not in chosen:
                continue
            cells = []
            for k in METRICS:
                other = _values(rows, k, **final_match(preset, chosen, method, q))
                seeds = sorted(set(other) & set(sfrik[k]))
                cells.append(paired_difference([other[s] for s in seeds], [sfrik[k][s] for s in seeds]).text())
            diffs.append([method, *cells])
        lines.append(_table(["baseline", "Δ linear (points)", "Δ kNN (points)"], diffs))
    lines += [
        "",
        "Label-free measures on the test images: RankMe (effective rank of the backbone features), "
        "alignment E||u1 - u2||^2 of two augmented views, uniformity log E exp(-2||u_i - u_j||^2), "
        "and the SFRIK MMD with b = (1, 40, 40) of the normalised projections (comparable at equal q).",
    ]
    return lines


def table_section(preset: Preset, rows: Rows, chosen) -> list[str]:
    lines = [
        "## Linear top-1 against q (the paper's Table 1 in shape)",
        "",
        f"Each method at its setting chosen at q = {preset.main_q} (reused, not retuned per q); projector "
        f"{preset.proj_hidden_dim}-{preset.proj_hidden_dim}-q.",
        "",
    ]
    table = []
    for method in preset.methods:
        if method in chosen:
            table.append(
                [
                    method,
                    *(
                        _summary(rows, "linear_top1", **final_match(preset, chosen, method, q)).text()
                        for q in preset.table_qs
                    ),
                ]
            )
    return lines + [_table(["method", *(f"q = {q}" for q in preset.table_qs)], table)]


def ablation_section(preset: Preset, rows: Rows, chosen) -> list[str]:
    lines = [
        f"## Ablations (test split, q = {preset.main_q})",
        "",
        "SFRIK's kernel truncated at degree L (same other hyper-parameters), and the MMD to the uniform "
        "distribution with the Gaussian and the distance kernel (their MMD weight tuned on the validation "
        "split at SFRIK's lr and sim weight).",
        "",
    ]
    table = [
        [
            label,
            match["setting"],
            _summary(rows, "linear_top1", **match).text(),
            _summary(rows, "knn_top1", **match).text(),
        ]
        for label, match in ablation_variants(preset, chosen)
    ]
    return lines + [_table(["regulariser", "setting", "linear top-1 %", "kNN top-1 %"], table)]


def timing_section(timing: list[dict[str, str]]) -> list[str]:
    lines = ["## Step time (interleaved pass)", ""]
    if not timing:
        return lines + ["Not measured yet (`--phases timing`)."]
    lines += [
        "Every method steps in turn on the same batches (the order rotates every round), so a change of "
        "load falls on all alike. Median over rounds; network = backbone + projector forward and backward "
        "with a negligible loss; loss = the loss alone, forward and backward on fixed embeddings.",
        "",
    ]
    table = [[r["method"], r["q"], r["step_ms"], r["network_ms"], r["loss_ms"], r["network_share"]] for r in timing]
    return lines + [_table(["method", "q", "step ms", "network ms", "loss ms", "network share %"], table)]


def provenance_section(rows: Rows) -> list[str]:
    if not rows:
        return []
    hours = sum(float(r["wall_s"]) for r in rows) / 3600
    versions = sorted({r["versions"] for r in rows})
    commits = sorted({r["commit"] for r in rows})
    return [
        "## Provenance",
        "",
        f"Wall time of the runs: {hours:.2f} h. Baselines from "
        f"{', '.join(sorted({r['library'] for r in rows}))}. Versions: {'; '.join(versions)}. "
        f"Commit(s): {', '.join(commits)}.",
    ]


def plots(out: Path, preset: Preset, rows: Rows, chosen) -> None:
    from sfrik_plugin.utils.output import pyplot, save_figure

    plt = pyplot()
    q = preset.main_q
    methods = [m for m in preset.methods if m in chosen]

    # accuracy per method with 95 % intervals
    fig, ax = plt.subplots(figsize=(8, 4))
    for offset, metric, label in ((-0.2, "linear_top1", "linear probe"), (0.2, "knn_top1", "weighted kNN")):
        sums = [_summary(rows, metric, **final_match(preset, chosen, m, q)) for m in methods]
        ax.bar(
            [i + offset for i in range(len(methods))],
            [s.mean for s in sums],
            width=0.4,
            label=label,
            yerr=[[s.mean - s.low if s.n > 1 else 0 for s in sums], [s.high - s.mean if s.n > 1 else 0 for s in sums]],
            capsize=4,
        )
        floor = _summary(rows, metric, **final_match(preset, chosen, "random", q))
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
    fig, ax = plt.subplots(figsize=(7, 4))
    for m in methods:
        sums = [_summary(rows, "linear_top1", **final_match(preset, chosen, m, qq)) for qq in preset.table_qs]
        xs = [qq for qq, s in zip(preset.table_qs, sums) if s.n]
        if not xs:
            continue
        means = [s.mean for s in sums if s.n]
        ax.plot(xs, means, marker="o", label=m)
        lows = [s.low if s.n > 1 else s.mean for s in sums if s.n]
        highs = [s.high if s.n > 1 else s.mean for s in sums if s.n]
        ax.fill_between(xs, lows, highs, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("q (projector output width)")
    ax.set_ylabel("test linear top-1 (%), 95 % CI")
    if ax.lines:
        ax.legend()
    ax.set_title(f"{preset.dataset}: linear top-1 against q")
    save_figure(fig, out / "accuracy_vs_q.png")

    # ablation bars
    variants = ablation_variants(preset, chosen)
    if variants:
        fig, ax = plt.subplots(figsize=(8, 4))
        sums = [_summary(rows, "linear_top1", **match) for _, match in variants]
        ax.bar(
            range(len(variants)),
            [s.mean for s in sums],
            color="tab:purple",
            yerr=[[s.mean - s.low if s.n > 1 else 0 for s in sums], [s.high - s.mean if s.n > 1 else 0 for s in sums]],
            capsize=4,
        )
        ax.set_xticks(range(len(variants)), [label for label, _ in variants], rotation=12)
        ax.set_ylabel("test linear top-1 (%), 95 % CI")
        _tight_ylim(ax, rows)
        ax.set_title(f"{preset.dataset}: ablations at q = {q}")
        save_figure(fig, out / "ablation.png")


def _tight_ylim(ax, rows: Rows) -> None:
    values = [float(r[k]) for r in rows for k in METRICS if r["split"] == "test" and r[k] != ""]
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
