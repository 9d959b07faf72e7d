"""summary.md and the plots of a study, from its results rows (and timing.csv when present)."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sfrik_plugin.engine.runs import format_setting

from .plan import SFRIK_KERNEL_WEIGHTS, Choices, Planner, Preset, choices
from .stats import Summary, detectable_difference, holm, paired_difference, paired_t_p_value, summarise

Rows = Sequence[Mapping[str, str]]
METRICS = ("linear_top1", "knn_top1")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
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


def final_match(preset: Preset, chosen: Choices, method: str, q: int) -> dict[str, object]:
    """The fields that pick a method's final runs at q (its setting chosen at that q)."""
    if method == "random":
        return {"phase": "final", "method": "random", "q": q, "split": "test"}
    setting = chosen.by_q.get(q, {}).get(method)
    return {"phase": "final", "method": method, "q": q, "split": "test", "setting": format_setting(setting or {})}


def ablation_variants(preset: Preset, choice: Choices) -> list[tuple]:
    """(label, match) of each ablation bar, L = 3 being SFRIK's final run."""
    variants, chosen = [], choice.main
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
    chosen = choices(preset, rows)
    timing = read_timing(out / "timing.csv")
    parts = [
        f"# sfrik-study ({preset.name})",
        "",
        f"Protocol: {preset.protocol()}.",
        "",
        f"{len(rows)} runs done (the plan has at least {Planner(preset).count()}; a grid that grows adds runs).",
    ]
    parts += ["", *tuning_section(preset, rows, chosen)]
    parts += ["", *final_section(preset, rows, chosen)]
    parts += ["", *table_section(preset, rows, chosen)]
    parts += ["", *ablation_section(preset, rows, chosen)]
    parts += ["", *timing_section(timing, rows)]
    parts += ["", *provenance_section(rows)]
    text = "\n".join(parts) + "\n"
    (out / "summary.md").write_text(text)
    try:
        plots(out, preset, rows, chosen)
    except ImportError:
        pass  # matplotlib missing: the tables are still written
    return text


def tuning_section(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
    p = preset
    lines = [
        f"## Tuning (validation split, seed {p.tune_seed}, which no final run uses)",
        "",
        "The same rule for every method (study.plan.search_state): a grid of learning rate x the method's "
        "main hyper-parameter on geometric ladders (factor 2), starting from 3 x 3 rungs; while the best "
        "validation linear top-1 sits at an edge of an axis, that axis gains the next rung, up to "
        f"{p.lr_max_rungs} rungs of learning rate and {p.param_max_rungs} of the hyper-parameter (the cap). "
        "At the other q only the hyper-parameter is re-tuned, around its q = "
        f"{p.main_q} choice, up to {p.table_max_rungs} rungs. The test split is not read.",
        "",
    ]
    by_id = {r["run_id"]: r for r in rows}
    summary, detail = [], []
    for search, state in chosen.searches:
        values = {a.name: sorted({float(s.params[a.name]) for s in state.runs}) for a in search.axes}  # type: ignore[arg-type]
        best_row = by_id.get(state.best_run.run_id) if state.best_run is not None else None
        done = sum(s.run_id in by_id for s in state.runs)
        if state.best is None:
            verdict = f"running ({done}/{len(state.runs)})" if done else "not started"
        elif state.at_cap:
            verdict = "**at an edge at the cap**: " + ", ".join(state.at_cap)
        else:
            verdict = "interior"
        summary.append(
            [
                search.method,
                search.q,
                "; ".join(f"{k}: " + ", ".join(f"{v:g}" for v in vs) for k, vs in values.items()),
                format_setting({a.name: state.best[a.name] for a in search.axes}) if state.best else "…",
                best_row["linear_top1"] if best_row else "…",
                verdict,
            ]
        )
        for spec in state.runs:
            row = by_id.get(spec.run_id)
            mark = "**chosen**" if spec == state.best_run else ""
            if row is not None and row["status"] != "ok":
                cells = [row["status"].split(":")[0], "-"]
            else:
                cells = [row["linear_top1"], row["knn_top1"]] if row else ["…", "…"]
            detail.append([spec.method, spec.q, spec.setting_text or "-", *cells, mark])
    lines.append(_table(["method", "q", "grid", "choice", "val linear %", "choice in the grid"], summary))
    lines += ["", "<details><summary>Every tuning run</summary>", ""]
    lines.append(_table(["method", "q", "setting", "val linear %", "val kNN %", ""], detail))
    return lines + ["", "</details>"]


@dataclass(frozen=True)
class Comparison:
    """One baseline against SFRIK at one q, over their common seeds."""

    method: str
    diff: Summary  # baseline - SFRIK
    p: float  # two-sided paired t test
    p_holm: float  # Holm-adjusted over the baselines
    mdd: float  # the smallest true difference found with 80 % power at Holm's strictest level

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_holm):
            return "-"
        if self.p_holm < 0.05:
            return "SFRIK ahead" if self.diff.mean < 0 else "SFRIK behind"
        return "no significant difference"


def comparisons(preset: Preset, rows: Rows, chosen: Choices, metric: str, q: int) -> list[Comparison]:
    """Each baseline against SFRIK at q over their common seeds: the paired difference (baseline -
    SFRIK), its two-sided paired t p value, the Holm-adjusted p value over the baselines, and the
    smallest difference detectable at 80 % power at Holm's strictest level (0.05 / baselines)."""
    if "sfrik" not in chosen.by_q.get(q, {}):
        return []
    sfrik = _values(rows, metric, **final_match(preset, chosen, "sfrik", q))
    tests = []
    for method in preset.methods:
        if method == "sfrik" or method not in chosen.by_q.get(q, {}):
            continue
        other = _values(rows, metric, **final_match(preset, chosen, method, q))
        seeds = sorted(set(other) & set(sfrik))
        diff = paired_difference([other[s] for s in seeds], [sfrik[s] for s in seeds])
        tests.append((method, diff, paired_t_p_value(diff)))
    level = 0.05 / max(1, len(tests))
    return [
        Comparison(method, diff, p, p_holm, detectable_difference(diff.std, diff.n, level))
        for (method, diff, p), p_holm in zip(tests, holm([p for _, _, p in tests]))
    ]


def _p(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}")


def comparison_table(items: list[Comparison]) -> str:
    table = [
        [
            c.method,
            c.diff.n,
            c.diff.text(),
            _p(c.p),
            _p(c.p_holm),
            "-" if math.isnan(c.mdd) else f"{c.mdd:.2f}",
            c.verdict,
        ]
        for c in items
    ]
    return _table(
        ["baseline", "seeds", "Δ (points) mean ± std [95 % CI]", "p", "Holm p", "detectable Δ", "after correction"],
        table,
    )


def plain_reading(items: list[Comparison], label: str) -> str:
    """The comparisons in words: who is significantly ahead or behind after the correction, and
    which differences are ties, with the size of difference the design would have found."""

    def name(c: Comparison) -> str:
        return f"{c.method} ({-c.diff.mean:+.2f} for SFRIK, Holm p {_p(c.p_holm)})"

    ahead = [name(c) for c in items if c.verdict == "SFRIK ahead"]
    behind = [name(c) for c in items if c.verdict == "SFRIK behind"]
    ties = [c for c in items if c.verdict == "no significant difference"]
    parts = [f"In {label}, after Holm's correction over {len(items)} baselines:"]
    parts.append(f"SFRIK is ahead of {', '.join(ahead)}." if ahead else "SFRIK is ahead of none.")
    parts.append(f"SFRIK is behind {', '.join(behind)}." if behind else "SFRIK is behind none.")
    if ties:
        detectable = [c.mdd for c in ties if not math.isnan(c.mdd)]
        power = (
            f"; this design finds a true difference of {min(detectable):.2f}-{max(detectable):.2f} points "
            "with 80 % power, and smaller ones may be missed"
            if detectable
            else ""
        )
        parts.append(f"No significant difference from {', '.join(c.method for c in ties)}{power}.")
    return " ".join(parts)


def final_section(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
    q = preset.main_q
    lines = [
        f"## Final runs (test split, q = {q}, seeds {list(preset.final_seeds)})",
        "",
        "Mean ± sample std [95 % Student-t confidence interval] over seeds.",
        "",
    ]
    table = []
    for method in ("random", *preset.methods):
        if method != "random" and method not in chosen.main:
            continue
        m = final_match(preset, chosen, method, q)
        lin, knn = _summary(rows, "linear_top1", **m), _summary(rows, "knn_top1", **m)
        quality = [_summary(rows, k, **m) for k in ("rankme", "alignment", "uniformity", "mmd_l3")]
        table.append(
            [
                method if method != "random" else "random encoder",
                format_setting(chosen.main[method]) if method != "random" else "-",
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
    for metric, label in (("linear_top1", "linear top-1"), ("knn_top1", "kNN top-1")):
        items = comparisons(preset, rows, chosen, metric, q)
        if items:
            lines += [
                "",
                f"Paired differences in {label} (baseline − SFRIK over the same seeds; negative: SFRIK ahead). "
                "p: two-sided paired t test; Holm p: adjusted over the baselines (family-wise 5 %); "
                "detectable Δ: the smallest true difference this design finds with 80 % power at level "
                f"0.05 / {len(items)}, given the observed spread.",
                "",
                comparison_table(items),
                "",
                plain_reading(items, label),
            ]
    lines += [
        "",
        "Label-free measures on the test images: RankMe (effective rank of the backbone features), "
        "alignment E||u1 - u2||^2 of two augmented views, uniformity log E exp(-2||u_i - u_j||^2), "
        "and the SFRIK MMD with b = (1, 40, 40) of the normalised projections (comparable at equal q).",
    ]
    return lines


def table_section(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
    lines = [
        "## Linear top-1 against q (the paper's Table 1 in shape)",
        "",
        f"Each method's main hyper-parameter re-tuned at each q on the validation split around its q = "
        f"{preset.main_q} choice (learning rate kept); projector {preset.proj_hidden_dim}-"
        f"{preset.proj_hidden_dim}-q; seeds {list(preset.repeat_seeds)} at the other q, "
        f"{list(preset.final_seeds)} at q = {preset.main_q}.",
        "",
    ]
    table = []
    for method in preset.methods:
        if method in chosen.main:
            grid = preset.grids[method]
            cells = []
            for q in preset.table_qs:
                setting = chosen.by_q.get(q, {}).get(method)
                value = f" ({grid.parameter} {float(setting[grid.parameter]):g})" if setting else ""  # type: ignore[arg-type]
                cells.append(_summary(rows, "linear_top1", **final_match(preset, chosen, method, q)).text() + value)
            table.append([method, *cells])
    lines.append(_table(["method", *(f"q = {q}" for q in preset.table_qs)], table))
    for q in preset.table_qs:
        if q == preset.main_q:
            continue
        items = comparisons(preset, rows, chosen, "linear_top1", q)
        if items:
            lines += ["", f"At q = {q}, linear top-1, baseline − SFRIK:", "", comparison_table(items)]
    return lines


def ablation_section(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
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


OVER_100 = "†"  # marks a network share above 100 % in the timing table
NOT_MEASURED = "not measured"


def _number(value: object) -> float | None:
    """A CSV cell as a finite number; None where it is empty, not a number or infinite."""
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _measured(value: object) -> float | None:
    """A step time or share from a CSV cell; None where it is not a positive finite number."""
    number = _number(value)
    return number if number is not None and number > 0 else None


def timing_section(timing: list[dict[str, str]], rows: Rows = ()) -> list[str]:
    """The interleaved pass's table; a share above 100 % and a missing step time are flagged, not
    printed as if they were measurements, and so are trained runs without a step time of their own."""
    lines = ["## Step time (interleaved pass)", ""]
    if not timing:
        return lines + ["Not measured yet (`--phases timing`).", *_untimed_runs(rows)]
    lines += [
        "Every method steps in turn on the same batches (the order rotates every round), so a change of "
        "load falls on all alike. Median over rounds; network = backbone + projector forward and backward "
        "with a negligible loss; loss = the loss alone, forward and backward on fixed embeddings.",
        "",
    ]
    table, over, missing = [], [], []
    for r in timing:
        step, share = _measured(r.get("step_ms")), _measured(r.get("network_share"))
        if step is None:
            missing.append(f"{r['method']} at q = {r['q']}")
            step_cell, share_cell = NOT_MEASURED, "-"
        elif share is None:
            step_cell, share_cell = r["step_ms"], "-"
        else:
            step_cell, share_cell = r["step_ms"], r["network_share"]
            if share > 100:
                over.append(f"{r['method']} at q = {r['q']}")
                share_cell += f" {OVER_100}"
        network, loss = (r[k] if _number(r.get(k)) is not None else "-" for k in ("network_ms", "loss_ms"))
        table.append([r["method"], r["q"], step_cell, network, loss, share_cell])
    lines.append(_table(["method", "q", "step ms", "network ms", "loss ms", "network share %"], table))
    if over:
        lines += [
            "",
            f"{OVER_100} A network share above 100 % ({', '.join(over)}) is not a measurement: that method's "
            "step took less time than the network alone. The network is timed in a step of its own, and the "
            "loss alone on fixed embeddings (step ms is not network ms + loss ms), so a share carries the noise "
            "of two medians; where the loss costs a few percent of a step, as at toy sizes, that noise is "
            "larger than the loss. Read it as: the loss costs next to nothing here.",
        ]
    if missing:
        lines += [
            "",
            f"No step time was recorded for {', '.join(missing)} (timing.csv holds no number there): "
            "their network share is not computed. Run `--phases timing` again.",
        ]
    return lines + _untimed_runs(rows)


def _untimed_runs(rows: Rows) -> list[str]:
    """A note on the trained runs whose own step time (results.csv's sec_per_step) is missing."""
    trained = [r for r in rows if r["status"] == "ok" and r["method"] != "random"]
    untimed = [r for r in trained if _measured(r["sec_per_step"]) is None]
    if not untimed:
        return []
    return [
        "",
        f"The runs' own step time (sec_per_step in results.csv) is not measured in {len(untimed)} of the "
        f"{len(trained)} trained runs (nan or empty there): a run's first steps (warm-up, the memory "
        "measurement) are not timed, and these runs were too short to time any. The interleaved pass is "
        "this study's step time.",
    ]


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


def plots(out: Path, preset: Preset, rows: Rows, chosen: Choices) -> None:
    from sfrik_plugin.utils.output import pyplot, save_figure

    plt = pyplot()
    q = preset.main_q
    methods = [m for m in preset.methods if m in chosen.main]

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
    fig, ax = plt.subplots(figsize=(8.5, 4))
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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: inside it hid the curves
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
