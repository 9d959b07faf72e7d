"""summary.md of the long-budget study (study/long.py, study/long_plan.py), from its results rows,
and its plots (study/long_plots.py). Every part reads whatever rows there are: a method whose tuning
has not ended, or a seed not yet run, is shown as such, so the report of the first finished runs is
already useful."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from sfrik_experiments.engine.runs import format_setting
from sfrik_experiments.utils.output import markdown_table
from sfrik_plugin.utils.files import atomic_write

from .long_curves import (
    comparisons_at,
    curve_values,
    kendall_tau,
    point_value,
    ranking,
    step_times,
    steps_at,
)
from .long_plan import V2_LINEAR_TOP1, V2_VERDICTS, LongPreset, Tuned, chosen, count, tuning
from .long_plots import plots
from .report import read_timing
from .report_paired import Comparison, comparison_table, plain_reading
from .report_rows import Rows, finite_number
from .report_time import dominated_by
from .stats import summarise


def write(out: Path, preset: LongPreset, rows: Rows) -> str:
    """Writes summary.md and the plots (curves.png, tuning_curves.png) into out; returns the text.
    A timing pass in <out>/timing.csv, when there is one, gives the equal-wall-time reading."""
    tuned = tuning(preset, rows)
    timing = read_timing(out / "timing.csv")
    text = summary(preset, rows, tuned, timing)
    with atomic_write(out / "summary.md") as f:
        f.write(text)
    try:
        plots(out, preset, rows, tuned, step_times(timing, preset.q))
    except ImportError:
        pass  # matplotlib missing: the tables are still written
    return text


def summary(
    preset: LongPreset, rows: Rows, tuned: Tuned | None = None, timing: Sequence[Mapping[str, str]] = ()
) -> str:
    tuned = tuning(preset, rows) if tuned is None else tuned
    at_least, at_most = count(preset)
    t = preset.train
    parts = [
        f"# sfrik-study, long budget ({preset.name})",
        "",
        f"Protocol: {preset.protocol()}.",
        "",
        f"{len(rows)} runs done of {at_least} to {at_most} (a learning-rate ladder that grows adds runs). "
        f"Every run trains {t.epochs} epochs and measures its frozen encoder on its own split after epochs "
        f"{', '.join(map(str, preset.curve_epochs))} (linear probe, kNN, the label-free measures); the last "
        "point is the trained encoder.",
    ]
    parts += ["", *tuning_section(preset, rows, tuned)]
    parts += ["", *curves_section(preset, rows, tuned)]
    parts += ["", *verdict_section(preset, rows, tuned)]
    parts += ["", *time_section(preset, rows, tuned, timing)]
    parts += ["", *provenance_section(preset, rows)]
    return "\n".join(parts) + "\n"


def tuning_section(preset: LongPreset, rows: Rows, tuned: Tuned) -> list[str]:
    last = preset.curve_epochs[-1]
    lines = [
        f"## Tuning at the long budget (validation split, seed {preset.tune_seed}, which no final run uses)",
        "",
        "The same rule for every method: the learning rate on a factor-"
        f"{preset.lr_factor:g} ladder centred on the method's short-budget (v2) choice, starting with the "
        f"rungs {preset.lr_span[0]:+d} to {preset.lr_span[1]:+d}; while the best validation linear top-1 after "
        f"epoch {last} sits at an edge, the ladder gains the next rung beyond it, up to {preset.lr_max_rungs} "
        "rungs (the cap). The other hyper-parameters keep their v2 choice. The test split is not read.",
        "",
    ]
    by_id = {r["run_id"]: r for r in rows}
    table, detail = [], []
    for method, (_, state) in tuned.items():
        lrs = sorted({float(s.params["lr"]) for s in state.runs})  # type: ignore[arg-type]
        done = sum(s.run_id in by_id for s in state.runs)
        best_row = by_id.get(state.best_run.run_id) if state.best_run is not None else None
        if state.best is None:
            verdict = f"running ({done}/{len(state.runs)})" if done else "not started"
        elif state.at_cap:
            verdict = "**at an edge at the cap**"
        else:
            verdict = "interior"
        table.append(
            [
                method,
                format_setting(preset.start[method]),
                ", ".join(f"{v:g}" for v in lrs),
                f"lr={float(state.best['lr']):g}" if state.best else "…",  # type: ignore[arg-type]
                best_row["linear_top1"] if best_row else "…",
                verdict,
            ]
        )
        for spec in state.runs:
            row = by_id.get(spec.run_id)
            cells: list[object]
            if row is None:
                cells = ["…"] * (len(preset.curve_epochs) + 1)
            else:
                cells = [_cell(point_value(row, e, "linear_top1")) for e in preset.curve_epochs]
                cells.append(
                    _cell(finite_number(row["knn_top1"])) if row["status"] == "ok" else row["status"].split(":")[0]
                )
            mark = "**chosen**" if spec == state.best_run else ""
            detail.append([method, f"{float(spec.params['lr']):g}", *cells, mark])  # type: ignore[arg-type]
    random_row = next((r for r in rows if r["phase"] == "tune" and r["method"] == "random"), None)
    lines.append(
        markdown_table(
            ["method", "v2 choice", "lr grid", "choice", f"val linear % (epoch {last})", "in the grid"], table
        )
    )
    if random_row is not None:
        lines += [
            "",
            f"Random encoder (seed {random_row['seed']}): validation linear top-1 {random_row['linear_top1']} %.",
        ]
    lines += ["", *early_ranking(preset, rows, tuned)]
    header = ["method", "lr", *(f"val linear % ep {e}" for e in preset.curve_epochs), f"val kNN % ep {last}", ""]
    lines += ["", "<details><summary>Every tuning run (its validation curve)</summary>", ""]
    lines += [markdown_table(header, detail), "", "</details>"]
    return lines


def early_ranking(preset: LongPreset, rows: Rows, tuned: Tuned) -> list[str]:
    """The first reading the study gives: each method's tuning run at its short-budget learning
    rate (the first runs of the study), ranked by validation linear top-1 at each point (one seed)."""
    by_id = {r["run_id"]: r for r in rows}
    at_v2: dict[str, Mapping[str, str]] = {}
    for method, (search, state) in tuned.items():
        centre = search.axes[0].ladder.centre
        spec = next((s for s in state.runs if float(s.params["lr"]) == centre), None)  # type: ignore[arg-type]
        if spec is not None and spec.run_id in by_id and by_id[spec.run_id]["status"] == "ok":
            at_v2[method] = by_id[spec.run_id]
    if not at_v2:
        return []
    table = []
    for e in preset.curve_epochs:
        values = {m: v for m, r in at_v2.items() if (v := point_value(r, e, "linear_top1")) is not None}
        order = sorted(values, key=lambda m: -values[m])
        table.append([e, " > ".join(f"{m} ({values[m]:.2f})" for m in order)])
    return [
        f"Each method at its short-budget learning rate ({len(at_v2)} of {len(preset.methods)} methods so far; "
        f"validation, one seed), ranked by linear top-1 at each point:",
        "",
        markdown_table(["epoch", "order"], table),
    ]


def _cell(value: float | None) -> str:
    return "…" if value is None else f"{value:.2f}"


def curves_section(preset: LongPreset, rows: Rows, tuned: Tuned) -> list[str]:
    seeds = list(preset.final_seeds)
    lines = [
        f"## Learning curves (test split, seeds {seeds}, each method at its long-budget choice)",
        "",
        "Mean ± sample std [95 % Student-t interval] over the seeds finished so far; the step is the "
        "optimiser step at the end of the epoch. The random encoder is the untrained network of the same "
        "seeds (every method starts from it).",
        "",
    ]
    methods = ["random", *preset.methods]
    for measure, label in (("linear_top1", "Linear top-1 %"), ("knn_top1", "kNN top-1 %")):
        header = ["method", "setting"]
        for e in preset.curve_epochs:
            step = steps_at(preset, rows, e)
            header.append(f"epoch {e}" + (f" (step {step})" if step is not None else ""))
        table = []
        for method in methods:
            if method != "random" and method not in chosen(tuned):
                continue
            cells = [
                summarise(list(curve_values(preset, rows, tuned, method, e, measure).values())).text()
                for e in preset.curve_epochs
            ]
            setting = "-" if method == "random" else format_setting(chosen(tuned)[method])
            table.append(["random encoder" if method == "random" else method, setting, *cells])
        lines += [f"{label}:", "", markdown_table(header, table), ""]
    lines += ["Ranking by mean test linear top-1 at each point (ties not separated; see the paired tests):", ""]
    order_rows = []
    for e in preset.curve_epochs:
        ranked = ranking(preset, rows, tuned, e)
        order_rows.append([e, " > ".join(f"{m} ({s.mean:.2f})" for m, s in ranked) or "…"])
    lines += [markdown_table(["epoch", "order"], order_rows), ""]
    for e in preset.curve_epochs:
        for measure, label in (("linear_top1", "linear top-1"), ("knn_top1", "kNN top-1")):
            items = comparisons_at(preset, rows, tuned, e, measure)
            if not items:
                continue
            lines += [
                f"After epoch {e}, {label}: baseline − SFRIK over the same seeds (negative: SFRIK ahead); p: "
                f"two-sided paired t test; Holm p over the {len(items)} baselines; detectable Δ at 80 % power.",
                "",
                comparison_table(items),
                "",
                plain_reading(items, f"{label} after epoch {e}"),
                "",
            ]
    return lines


def _verdicts(items: Sequence[Comparison]) -> dict[str, str]:
    return {c.method: c.verdict for c in items}


def holds_sentence(preset: LongPreset, rows: Rows, tuned: Tuned, epoch: int | None = None) -> str:
    """Whether the short-budget (v2) ranking holds at a point of the curves (default: the last), in
    one plain sentence: the order by mean linear top-1 against v2's (Kendall's tau over the methods
    both have), and SFRIK's paired verdicts after Holm's correction against v2's. "Holds" means the
    same order and the same verdicts; "holds in its verdicts" the same verdicts in another order."""
    epoch = preset.curve_epochs[-1] if epoch is None else epoch
    ranked = ranking(preset, rows, tuned, epoch)
    if not ranked:
        return f"Not known yet: no final run has measured epoch {epoch}."
    seeds = max(s.n for _, s in ranked)
    order = [m for m, _ in ranked]
    v2_order = sorted(V2_LINEAR_TOP1, key=lambda m: -V2_LINEAR_TOP1[m])
    v2_common = [m for m in v2_order if m in order]
    tau = kendall_tau(order, v2_common)
    tests = {c.method: c for c in comparisons_at(preset, rows, tuned, epoch, "linear_top1")}
    verdicts = _verdicts(list(tests.values()))

    def change(m: str, v: str) -> str:
        c = tests[m]
        # a difference no longer significant may be the smaller design's: give its power
        detail = (
            f": Δ {c.diff.mean:+.2f} [{c.diff.low:+.2f}, {c.diff.high:+.2f}] over {c.diff.n} seeds, "
            f"detectable Δ {c.mdd:.2f}"
            if v == "no significant difference" and math.isfinite(c.mdd)
            else ""
        )
        return f"{m} ({V2_VERDICTS[m]} at the short budget, {v} here{detail})"

    changed = [change(m, v) for m, v in verdicts.items() if m in V2_VERDICTS and v not in ("-", V2_VERDICTS[m])]
    partial = len(order) < len(preset.methods) or seeds < len(preset.final_seeds)
    scope = (
        f"on partial results ({len(order)} of {len(preset.methods)} methods, at most {seeds} of "
        f"{len(preset.final_seeds)} seeds)"
        if partial
        else f"over {len(order)} methods and {seeds} seeds"
    )
    same_order = order == v2_common
    tested = [m for m, v in verdicts.items() if v != "-"]
    if not tested:
        judgement = "The paired verdicts cannot be read yet (fewer than two common seeds)."
        holds = "holds in its order" if same_order else "does not hold in its order"
    elif changed:
        judgement = "SFRIK's paired verdicts change: " + "; ".join(changed) + "."
        holds = "does not hold"
    else:
        judgement = f"SFRIK's paired verdicts after Holm's correction are the short budget's for {', '.join(tested)}."
        holds = "holds" if same_order else "holds in its verdicts but not in its order"
    tau_text = "-" if math.isnan(tau) else f"{tau:.2f}"
    return (
        f"After epoch {epoch}, {scope}, the short-budget ranking {holds}: the order by mean test linear top-1 "
        f"is {' > '.join(order)}, against {' > '.join(v2_common)} at the short budget (Kendall's tau "
        f"{tau_text}). {judgement}"
    )


def verdict_section(preset: LongPreset, rows: Rows, tuned: Tuned) -> list[str]:
    lines = [
        "## Does the short-budget ranking hold?",
        "",
        "The short budget is the v2 study's (3 epochs of 15,000 images, 5 seeds at q = 1024: "
        + " > ".join(f"{m} {v:.2f}" for m, v in sorted(V2_LINEAR_TOP1.items(), key=lambda kv: -kv[1]))
        + "; SFRIK ahead of "
        + ", ".join(m for m, v in V2_VERDICTS.items() if v == "SFRIK ahead")
        + " after Holm's correction, no significant difference from the others).",
        "",
    ]
    lines.append(holds_sentence(preset, rows, tuned))
    for e in preset.curve_epochs[:-1]:
        lines += ["", holds_sentence(preset, rows, tuned, e)]
    return lines


def time_section(preset: LongPreset, rows: Rows, tuned: Tuned, timing: Sequence[Mapping[str, str]]) -> list[str]:
    """The equal-wall-time reading of the curves: every final run takes the same steps, so a slower
    loss gets more compute. Each method's time is its steps x its median step time in a quiet
    interleaved timing pass (the runs' own training seconds include whatever shared the cores);
    beside it, the last point of its curve that fits in SFRIK's time for the whole run, and which
    methods are at most as slow and more accurate after the last epoch (a reading of means)."""
    last = preset.curve_epochs[-1]
    lines = [
        f"## Accuracy against training time (q = {preset.q}: the equal-wall-time reading)",
        "",
    ]
    ms = step_times(timing, preset.q)
    machines = sorted({r.get("machine", "") for r in timing if r.get("q") == str(preset.q)} - {""})
    if not ms:
        return lines + [
            "No timing pass in this folder (timing.csv): the equal-wall-time reading needs the step times of a "
            "quiet interleaved pass (`sfrik-study --phases timing` of a preset with the same network, batch and q)."
        ]
    lines += [
        "Every final run takes the same steps, so a slower loss gets more compute. Here a method's time is its "
        "steps × its median step time in the interleaved timing pass in timing.csv (quiet cores, every method on "
        f"the same batches; {', '.join(machines) or 'machine not recorded'}), not the runs' own training seconds, "
        "which include whatever shared the cores. *Within SFRIK's time*: the last point of the method's curve "
        f"reached within SFRIK's time for its {last} epochs (a measured point, not an interpolation). *Dominated "
        f"by*: the methods at most as slow with a higher mean linear top-1 after epoch {last} (a reading of means, "
        "not a test).",
        "",
    ]
    steps = {e: steps_at(preset, rows, e) for e in preset.curve_epochs}
    linear = {
        (m, e): summarise(list(curve_values(preset, rows, tuned, m, e, "linear_top1").values()))
        for m in preset.methods
        for e in preset.curve_epochs
    }
    measured = [m for m in preset.methods if linear[(m, last)].n]
    if not measured or steps[last] is None:
        return lines + [f"No final run has measured epoch {last} yet."]
    sfrik_budget = steps[last] * ms["sfrik"] if "sfrik" in ms else None  # type: ignore[operator]
    table = []
    for m in measured:
        if m not in ms:
            table.append([m, "not measured", "-", "-", linear[(m, last)].text(), "-", "-"])
            continue
        within = "-"
        if sfrik_budget is not None:
            reached = [e for e in preset.curve_epochs if (n := steps[e]) is not None and n * ms[m] <= sfrik_budget]
            if reached:
                e = reached[-1]
                within = f"epoch {e}: {linear[(m, e)].mean:.2f}" if linear[(m, e)].n else f"epoch {e}: -"
            else:
                within = f"none (epoch {preset.curve_epochs[0]} takes longer)"
        dominated = dominated_by(
            m, {o: ms[o] for o in measured if o in ms}, {o: linear[(o, last)].mean for o in measured}
        )
        table.append(
            [
                m,
                f"{ms[m]:.1f}",
                f"{ms[m] / ms['sfrik']:.2f}" if "sfrik" in ms else "-",
                f"{steps[last] * ms[m] / 60000:.1f}",  # type: ignore[operator]
                linear[(m, last)].text(),
                within,
                ", ".join(dominated) or "-",
            ]
        )
    header = [
        "method",
        "step ms (timing pass)",
        "time × SFRIK",
        f"minutes for {last} epochs",
        f"linear top-1 % after epoch {last}",
        "within SFRIK's time",
        "dominated by",
    ]
    return lines + [markdown_table(header, table)]


LAST_POINT_MEASURES = ("linear_top1", "knn_top1", "rankme", "alignment", "uniformity", "mmd_l3")


def last_point_mismatches(preset: LongPreset, rows: Rows) -> list[str]:
    """The run ids of the finished trained runs whose curve's last point differs from the
    measurement of the trained encoder after training (the two are the same measurement of the
    same weights: a difference would be a fault of the curve)."""
    last = preset.curve_epochs[-1]
    return [
        r["run_id"]
        for r in rows
        if r["status"] == "ok"
        and r["method"] != "random"
        and any(finite_number(r[m]) != point_value(r, last, m) for m in LAST_POINT_MEASURES)
    ]


def provenance_section(preset: LongPreset, rows: Rows) -> list[str]:
    if not rows:
        return []
    hours = sum(float(r["wall_s"]) for r in rows) / 3600
    trained = [r for r in rows if r["status"] == "ok" and r["method"] != "random"]
    wrong = last_point_mismatches(preset, rows)
    check = (
        f"In {len(trained) - len(wrong)} of the {len(trained)} finished trained runs the curve's last point "
        "equals the measurement after training" + (f"; it differs in {', '.join(wrong)}" if wrong else "") + "."
    )
    return [
        "## Provenance",
        "",
        check,
        "",
        f"Wall time of the runs: {hours:.2f} h. Baselines from {', '.join(sorted({r['library'] for r in rows}))}. "
        f"Versions: {'; '.join(sorted({r['versions'] for r in rows}))}. "
        f"Commit(s): {', '.join(sorted({r['commit'] for r in rows}))}.",
    ]
