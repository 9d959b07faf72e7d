"""summary.md and the plots of a study, from its results rows (and timing.csv when present).

A preset of version 3 (study.plan: "v3", "smoke-v3") gets the v3 report: the tuning tables with the
confirmation seeds and the cap rule, kNN paired tests at every q, each method's training time
beside its accuracy (the equal-wall-time reading), the ablation variants on the same seeds with
paired tests against L = 3, and plots with each seed's point and the paired differences with their
intervals. A version-2 preset ("full", the recorded study) gets the report it was recorded with."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sfrik_experiments.engine.runs import format_setting
from sfrik_plugin.kernels import KERNELS

from .plan import Choices, Planner, Preset, Search, SearchState, choices, mean_score
from .stats import Summary, detectable_difference, holm, paired_difference, paired_t_p_value, summarise

Rows = Sequence[Mapping[str, str]]
METRICS = ("linear_top1", "knn_top1")
PROBES = (("linear_top1", "linear top-1"), ("knn_top1", "kNN top-1"))


def _run_cells(row: Mapping[str, str] | None) -> list[str]:
    """A tuning run's cells in the every-run table: its linear and kNN top-1, its status where it
    did not finish ok, or "…" while it has not run."""
    if row is None:
        return ["…", "…"]
    if row["status"] != "ok":
        return [row["status"].split(":")[0], "-"]
    return [row["linear_top1"], row["knn_top1"]]


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


def _seed_values(rows: Rows, metric: str, seeds: Sequence[int], match: Mapping[str, object]) -> dict[int, float]:
    """_values of these seeds only."""
    return {s: v for s, v in _values(rows, metric, **match).items() if s in seeds}


def final_match(preset: Preset, chosen: Choices, method: str, q: int) -> dict[str, object]:
    """The fields that pick a method's final runs at q (its setting chosen at that q)."""
    if method == "random":
        return {"phase": "final", "method": "random", "q": q, "split": "test"}
    setting = chosen.by_q.get(q, {}).get(method)
    return {"phase": "final", "method": method, "q": q, "split": "test", "setting": format_setting(setting or {})}


def ablation_variants(preset: Preset, choice: Choices) -> list[tuple]:
    """(label, match) of each ablation bar, L = 3 being SFRIK's final run."""
    variants, chosen = [], choice.main
    planner = Planner(preset)
    if "sfrik" in chosen:
        for degree in sorted((*preset.ablation_degrees, 3)):
            params = chosen["sfrik"] if degree == 3 else planner.degree_setting(chosen, degree)
            if params is None:
                continue  # its own search has not ended
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
    for method, label in ((f"mmd_{name}", entry.label) for name, entry in KERNELS.items()):
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
    if preset.version >= 3:
        parts += ["", *tuning_section_v3(preset, rows, chosen)]
        parts += ["", *final_section(preset, rows, chosen)]
        parts += ["", *wall_time_section(preset, rows, chosen, timing)]
        parts += ["", *table_section(preset, rows, chosen)]
        parts += ["", *ablation_section_v3(preset, rows, chosen)]
    else:
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
        if preset.version >= 3:
            plots_v3(out, preset, rows, chosen, timing)
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
            mark = "**chosen**" if spec == state.best_run else ""
            detail.append([spec.method, spec.q, spec.setting_text or "-", *_run_cells(by_id.get(spec.run_id)), mark])
    lines.append(_table(["method", "q", "grid", "choice", "val linear %", "choice in the grid"], summary))
    lines += ["", "<details><summary>Every tuning run</summary>", ""]
    lines.append(_table(["method", "q", "setting", "val linear %", "val kNN %", ""], detail))
    return lines + ["", "</details>"]


def _grid_text(search: Search, state: SearchState) -> str:
    values = {a.name: sorted({float(s.params[a.name]) for s in state.grid}) for a in search.axes}  # type: ignore[arg-type]
    return "; ".join(f"{k}: " + ", ".join(f"{v:g}" for v in vs) for k, vs in values.items())


def search_verdict(search: Search, state: SearchState, by_id: Mapping[str, Mapping[str, str]]) -> str:
    """Where a v3 search's choice sits: interior, at an edge at the cap (after the cap rule's rungs
    where the axis gained them), at an edge below the cap (where the confirmation moved it), or how
    far the search has come."""
    if state.best is None:
        done = sum(s.run_id in by_id for s in state.runs)
        return f"running ({done}/{len(state.runs)})" if done else "not started"
    parts = []
    if state.at_cap:
        extra = {a.name: a.extra_rungs for a in search.axes}
        parts.append(
            "**at an edge at the cap**: "
            + ", ".join(
                f"{name} (after {extra[name]} more rungs)" if name in state.extended else name for name in state.at_cap
            )
        )
    if state.at_edge:
        parts.append("at an edge below the cap, moved there by the confirmation: " + ", ".join(state.at_edge))
    extended = [name for name in state.extended if name not in state.at_cap]
    if not parts:
        parts.append("interior" + (f" (after the cap rule's rungs on {', '.join(extended)})" if extended else ""))
    return "; ".join(parts)


def _rungs(span: tuple[int, int]) -> int:
    return span[1] - span[0] + 1


def tuning_section_v3(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
    p = preset
    seeds = (p.tune_seed, *p.confirm_seeds)
    seed_list = ", ".join(map(str, seeds))
    kinds = {"tune": f"each method's at q = {p.main_q}", "ablation": "the ablation's", "table": "the q table's"}
    lines = [
        f"## Tuning (validation split, seed {p.tune_seed}; confirmation seeds "
        f"{', '.join(map(str, p.confirm_seeds))}; no final run uses them)",
        "",
        "The same rule for every search (study.plan.search_state, version 3, fixed before the runs): a grid "
        "of learning rate x the method's main hyper-parameter on geometric ladders (factor 2), starting from "
        f"{_rungs(p.lr_span)} x {_rungs(p.param_span)} rungs; while the best validation linear top-1 at the tuning "
        "seed sits at an edge of an axis, that "
        f"axis gains the next rung, up to {p.lr_max_rungs} rungs of learning rate and {p.param_max_rungs} of the "
        f"hyper-parameter (the cap). The cap rule: a search that would end with its choice at an edge of an axis "
        f"at its cap gives that axis {p.cap_extension} more rungs beyond that edge, once, and goes on. "
        f"Confirmation: once the grid has ended, its {p.confirm_top} best cells at seed {p.tune_seed} run again "
        f"with seeds {', '.join(map(str, p.confirm_seeds))}, and the choice is the cell with the best mean over "
        f"seeds {seed_list} (ties: the first in grid order); the grid does not grow after that. Confirmed: "
        f"{', '.join(kinds[k] for k in kinds if k in p.confirm_in) or 'none'} searches. "
        f"At the other q only the hyper-parameter is re-tuned, around its q = {p.main_q} choice, up to "
        f"{p.table_max_rungs} rungs. The ablation kernels' MMD weight and the truncated Legendre kernels' "
        "(L < 3) sim weight are tuned at SFRIK's learning rate. The test split is not read.",
        "",
    ]
    by_id = {r["run_id"]: r for r in rows}
    summary, confirmation, detail = [], [], []
    for search, state in chosen.searches:
        best_row = by_id.get(state.best_run.run_id) if state.best_run is not None else None
        mean = (
            f"{mean_score(by_id, state.best_run, seeds):.2f}"
            if state.best_run is not None and search.confirm_seeds and state.confirmed
            else "-"
        )
        summary.append(
            [
                search.key,
                search.q,
                _grid_text(search, state),
                format_setting({a.name: state.best[a.name] for a in search.axes}) if state.best else "…",
                best_row["linear_top1"] if best_row else "…",
                mean if state.best else "…",
                search_verdict(search, state, by_id),
            ]
        )
        for cell in state.confirmed:
            cells = []
            for seed in (cell.seed, *search.confirm_seeds):
                row = by_id.get(replace(cell, seed=seed).run_id)
                cells.append("…" if row is None else row["linear_top1"] if row["status"] == "ok" else "diverged")
            value = mean_score(by_id, cell, (cell.seed, *search.confirm_seeds))
            confirmation.append(
                [
                    search.key,
                    search.q,
                    format_setting({a.name: cell.params[a.name] for a in search.axes}),
                    *cells,
                    "…" if math.isnan(value) else f"{value:.2f}",
                    "**chosen**" if cell == state.best_run else "",
                ]
            )
        for spec in state.runs:
            mark = "**chosen**" if spec == state.best_run else ""
            cells = _run_cells(by_id.get(spec.run_id))
            detail.append([search.key, spec.q, spec.seed, spec.setting_text or "-", *cells, mark])
    lines.append(
        _table(
            [
                "search",
                "q",
                "grid",
                "choice",
                f"val linear % (seed {p.tune_seed})",
                f"mean over seeds {seed_list}",
                "choice in the grid",
            ],
            summary,
        )
    )
    if confirmation:
        lines += [
            "",
            f"The confirmation: each search's {p.confirm_top} best cells at seed {p.tune_seed}, validation linear "
            "top-1 % at each seed and their mean (a diverged run counts as the lowest score).",
            "",
            _table(
                ["search", "q", "cell", *(f"seed {s}" for s in seeds), "mean", ""],
                confirmation,
            ),
        ]
    lines += ["", "<details><summary>Every tuning run</summary>", ""]
    lines.append(_table(["search", "q", "seed", "setting", "val linear %", "val kNN %", ""], detail))
    return lines + ["", "</details>"]


@dataclass(frozen=True)
class Comparison:
    """One baseline against SFRIK at one q, over their common seeds (or an ablation variant
    against L = 3: reference)."""

    method: str
    diff: Summary  # baseline - SFRIK
    p: float  # two-sided paired t test
    p_holm: float  # Holm-adjusted over the baselines
    mdd: float  # the smallest true difference found with 80 % power at Holm's strictest level
    reference: str = "SFRIK"
    seeds: tuple[int, ...] = ()  # the paired seeds, in order (diff is over these)
    differences: tuple[float, ...] = ()  # each seed's difference

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_holm):
            return "-"
        if self.p_holm < 0.05:
            return f"{self.reference} ahead" if self.diff.mean < 0 else f"{self.reference} behind"
        return "no significant difference"


def comparisons(preset: Preset, rows: Rows, chosen: Choices, metric: str, q: int) -> list[Comparison]:
    """Each baseline against SFRIK at q over their common seeds: the paired difference (baseline -
    SFRIK), its two-sided paired t p value, the Holm-adjusted p value over the baselines, and the
    smallest difference detectable at 80 % power at Holm's strictest level (0.05 / baselines)."""
    if "sfrik" not in chosen.by_q.get(q, {}):
        return []
    sfrik = _values(rows, metric, **final_match(preset, chosen, "sfrik", q))
    others = [
        (method, _values(rows, metric, **final_match(preset, chosen, method, q)))
        for method in preset.methods
        if method != "sfrik" and method in chosen.by_q.get(q, {})
    ]
    return paired_tests(sfrik, others)


def paired_tests(
    reference: Mapping[int, float], others: Sequence[tuple[str, Mapping[int, float]]], name: str = "SFRIK"
) -> list[Comparison]:
    """Each of others against the reference over their common seeds: the paired difference (other -
    reference), its two-sided paired t p value, the Holm-adjusted p value over the others, and the
    smallest difference detectable at 80 % power at Holm's strictest level (0.05 / len(others))."""
    tests = []
    for method, other in others:
        seeds = sorted(set(other) & set(reference))
        diff = paired_difference([other[s] for s in seeds], [reference[s] for s in seeds])
        each = tuple(other[s] - reference[s] for s in seeds)
        tests.append((method, diff, paired_t_p_value(diff), tuple(seeds), each))
    level = 0.05 / max(1, len(tests))
    return [
        Comparison(method, diff, p, p_holm, detectable_difference(diff.std, diff.n, level), name, seeds, each)
        for (method, diff, p, seeds, each), p_holm in zip(tests, holm([t[2] for t in tests]))
    ]


def _escape(text: str) -> str:
    """A table cell's text with its pipes escaped (Markdown would split the cell there)."""
    return text.replace("|", "\\|")


def _p(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}")


def comparison_table(items: list[Comparison], first: str = "baseline", escape: bool = False) -> str:
    """The paired tests as a table; escape: the pipes in a name written \\| (the v3 report: the
    distance kernel's label has two)."""
    table = [
        [
            _escape(c.method) if escape else c.method,
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
        [first, "seeds", "Δ (points) mean ± std [95 % CI]", "p", "Holm p", "detectable Δ", "after correction"],
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
    v3 = preset.version >= 3
    for metric in ("linear_top1", "knn_top1") if v3 else ("linear_top1",):
        table = []
        for method in preset.methods:
            if method in chosen.main:
                grid = preset.grids[method]
                cells = []
                for q in preset.table_qs:
                    setting = chosen.by_q.get(q, {}).get(method)
                    value = f" ({grid.parameter} {float(setting[grid.parameter]):g})" if setting else ""  # type: ignore[arg-type]
                    cells.append(_summary(rows, metric, **final_match(preset, chosen, method, q)).text() + value)
                table.append([method, *cells])
        if v3 and metric != "linear_top1":
            lines += ["", "The same runs' kNN top-1 %:", ""]
        lines.append(_table(["method", *(f"q = {q}" for q in preset.table_qs)], table))
    for q in preset.table_qs:
        if q == preset.main_q:
            continue
        for metric, label in PROBES if v3 else PROBES[:1]:
            items = comparisons(preset, rows, chosen, metric, q)
            if not items:
                continue
            if not v3:
                lines += ["", f"At q = {q}, linear top-1, baseline − SFRIK:", "", comparison_table(items)]
                continue
            lines += [
                "",
                f"At q = {q}, {label}, baseline − SFRIK:",
                "",
                comparison_table(items),
                "",
                plain_reading(items, f"{label} at q = {q}"),
            ]
    return lines


def _kernel_titles(preset: Preset) -> str:
    """The preset's kernels in prose: "the Gaussian and the distance kernel"."""
    names = [m.removeprefix("mmd_") for m in preset.ablation_grids]
    return " and ".join(f"the {KERNELS[name].title}" for name in names if name in KERNELS) + " kernel"


def ablation_section(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
    lines = [
        f"## Ablations (test split, q = {preset.main_q})",
        "",
        "SFRIK's kernel truncated at degree L (same other hyper-parameters), and the MMD to the uniform "
        f"distribution with {_kernel_titles(preset)} (their MMD weight tuned on the validation "
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


@dataclass(frozen=True)
class TrainingTime:
    """A method's accuracy and training time at one q, from its final runs (and the timing pass)."""

    method: str
    linear: Summary
    minutes: Summary  # its final runs' own pretraining minutes (train_minutes), over seeds
    step_ms: float | None  # the interleaved pass's median step, where measured

    @property
    def cost(self) -> float | None:
        """What the methods' times are compared on: the interleaved step time where measured, else
        the runs' own minutes (every run takes the same steps)."""
        return self.step_ms if self.step_ms is not None else (self.minutes.mean if self.minutes.n else None)


def training_times(
    preset: Preset, rows: Rows, chosen: Choices, timing: Sequence[Mapping[str, str]], q: int
) -> list[TrainingTime]:
    steps = {r["method"]: _measured(r.get("step_ms")) for r in timing if r["q"] == str(q)}
    out = []
    for method in preset.methods:
        if method in chosen.by_q.get(q, {}):
            m = final_match(preset, chosen, method, q)
            minutes = [
                float(r["train_minutes"])
                for r in rows
                if all(str(r[k]) == str(v) for k, v in m.items()) and _measured(r["train_minutes"]) is not None
            ]
            out.append(TrainingTime(method, _summary(rows, "linear_top1", **m), summarise(minutes), steps.get(method)))
    return out


def wall_time_section(
    preset: Preset, rows: Rows, chosen: Choices, timing: Sequence[Mapping[str, str]] = ()
) -> list[str]:
    """Each method's training time beside its accuracy at q = main_q: the equal-wall-time reading of
    a study whose runs take equal steps."""
    q = preset.main_q
    times = training_times(preset, rows, chosen, timing, q)
    lines = [
        f"## Accuracy and training time (q = {q}: the equal-wall-time reading)",
        "",
        "Every run takes the same number of steps (equal steps), so a slower loss gets more compute. Here each "
        "method's time stands beside its accuracy: pretraining minutes per run (the final runs' own "
        "train_minutes, mean ± std over seeds, measured on a machine others may have shared) and the median "
        "step time of the interleaved pass (quiet cores, every method on the same batches; `--phases timing`). "
        "Time × SFRIK and the dominance column compare the interleaved step times (the runs' own minutes where "
        "the pass is missing, marked *). Dominated by: the methods at most as slow and with a higher mean "
        "linear top-1. Points per minute: mean linear top-1 above the random encoder's, per pretraining minute "
        "(the interleaved step time x the run's steps; the runs' own minutes, marked *, where the pass is missing). "
        "One budget per method: what a faster method would reach in a slower one's time is not measured here. "
        "The plot accuracy_vs_time.png shows each final run's linear top-1 against its own pretraining minutes.",
        "",
    ]
    if not times:
        return lines + ["No final runs yet."]
    floor = _summary(rows, "linear_top1", **final_match(preset, chosen, "random", q))
    steps = (preset.train_size // preset.train.batch_size) * preset.train.epochs  # per run (drop_last)
    sfrik = next((t for t in times if t.method == "sfrik"), None)
    table, front = [], []
    for t in times:
        relative = "-"
        if sfrik is not None and t.cost is not None and sfrik.cost and (t.step_ms is None) == (sfrik.step_ms is None):
            relative = f"{t.cost / sfrik.cost:.2f}" + (" *" if t.step_ms is None else "")
        dominated = [
            o.method
            for o in times
            if o is not t
            and o.cost is not None
            and t.cost is not None
            and (o.step_ms is None) == (t.step_ms is None)
            and o.cost <= t.cost
            and o.linear.n
            and t.linear.n
            and o.linear.mean > t.linear.mean
        ]
        if t.linear.n and not dominated:
            front.append(t.method)
        # minutes per run from the quiet interleaved pass where it measured the method (the runs'
        # own minutes, marked *, only where it did not: they include whatever shared the cores)
        quiet_minutes = t.step_ms * steps / 60000 if t.step_ms is not None else None
        minutes = quiet_minutes if quiet_minutes is not None else (t.minutes.mean if t.minutes.n else None)
        per_minute = (
            f"{(t.linear.mean - floor.mean) / minutes:.2f}" + ("" if quiet_minutes is not None else " *")
            if t.linear.n and floor.n and minutes
            else "-"
        )
        table.append(
            [
                t.method,
                t.linear.text(),
                t.minutes.text(),
                f"{t.step_ms:.1f}" if t.step_ms is not None else NOT_MEASURED,
                relative,
                per_minute,
                ", ".join(dominated) or "-",
            ]
        )
    lines.append(
        _table(
            [
                "method",
                "linear top-1 %",
                "pretraining min per run",
                "step ms (interleaved pass)",
                "time × SFRIK",
                "points above random per min",
                "dominated by",
            ],
            table,
        )
    )
    if front:
        lines += [
            "",
            f"Not dominated: {', '.join(front)}; every other method has one at most as slow and more accurate "
            "(a reading of means, not a test).",
        ]
    return lines


def ablation_section_v3(preset: Preset, rows: Rows, chosen: Choices) -> list[str]:
    """The ablation variants on the same seeds, with paired tests against L = 3 (SFRIK's final runs
    of those seeds)."""
    seeds = preset.ablation_seeds
    lines = [
        f"## Ablations (test split, q = {preset.main_q}, seeds {list(seeds)} for every variant)",
        "",
        "SFRIK's kernel truncated at degree L, each L < 3 with its sim weight re-tuned on the validation split "
        "(a ladder around SFRIK's choice, at SFRIK's lr), and the MMD to the uniform distribution with "
        f"{_kernel_titles(preset)} (their MMD weight tuned on the validation split at SFRIK's lr and sim "
        "weight). L = 3 is SFRIK's final runs of the same seeds.",
        "",
    ]
    variants = ablation_variants(preset, chosen)
    table = [
        [
            _escape(label),
            match["setting"],
            summarise(list(_seed_values(rows, "linear_top1", seeds, match).values())).text(),
            summarise(list(_seed_values(rows, "knn_top1", seeds, match).values())).text(),
        ]
        for label, match in variants
    ]
    lines.append(_table(["regulariser", "setting", "linear top-1 %", "kNN top-1 %"], table))
    reference = next((match for label, match in variants if label == "Legendre L = 3"), None)
    if reference is None:
        return lines
    for metric, label in PROBES:
        items = ablation_comparisons(preset, rows, chosen, metric)
        if not items:
            continue
        lines += [
            "",
            f"Paired differences in {label} (variant − L = 3 over the same seeds; negative: L = 3 ahead; Holm "
            f"over the {len(items)} variants; detectable Δ at level 0.05 / {len(items)}):",
            "",
            comparison_table(items, "variant", escape=True),
            "",
            ablation_reading(items, label),
        ]
    return lines


def ablation_comparisons(preset: Preset, rows: Rows, chosen: Choices, metric: str) -> list[Comparison]:
    """Each ablation variant against L = 3 over the ablation seeds they share."""
    seeds = preset.ablation_seeds
    variants = ablation_variants(preset, chosen)
    reference = next((match for label, match in variants if label == "Legendre L = 3"), None)
    if reference is None:
        return []
    others = [
        (label, _seed_values(rows, metric, seeds, match)) for label, match in variants if label != "Legendre L = 3"
    ]
    return paired_tests(_seed_values(rows, metric, seeds, reference), others, "L = 3")


def ablation_reading(items: list[Comparison], label: str) -> str:
    """The ablation's paired tests in words, and whether the paper's Legendre-over-Gaussian ablation
    reproduces."""
    words = {"L = 3 ahead": "L = 3 ahead", "L = 3 behind": "L = 3 behind", "no significant difference": "a tie"}
    parts = [
        f"{c.method}: {c.diff.mean:+.2f} ({words.get(c.verdict, c.verdict)}, Holm p {_p(c.p_holm)})"
        for c in items
        if c.diff.n
    ]
    text = f"In {label}: " + "; ".join(parts) + "." if parts else f"In {label}: no paired seeds yet."
    # the paper's claim is about the Gaussian kernel: the one row this sentence speaks of
    gaussian = next((c for c in items if c.method == KERNELS["gaussian"].label and c.diff.n > 1), None)
    if gaussian is not None:
        if gaussian.verdict == "L = 3 ahead":
            text += " As in the paper, the Legendre kernel (L = 3) is ahead of the Gaussian one."
        else:
            text += (
                " The paper finds the Legendre kernel (L = 3) ahead of the Gaussian one; here the Gaussian kernel is "
                + ("a tie with L = 3" if gaussian.verdict == "no significant difference" else "ahead of L = 3")
                + ", so that part of the paper does not reproduce here."
            )
    return text


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
    from sfrik_experiments.utils.output import pyplot, save_figure

    plt = pyplot()
    q = preset.main_q
    methods = [m for m in preset.methods if m in chosen.main]
    per_seed = preset.version >= 3  # v3: each seed's point over the bars and curves

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
        if per_seed:
            for i, m in enumerate(methods):
                values = list(_values(rows, metric, **final_match(preset, chosen, m, q)).values())
                ax.scatter([i + offset] * len(values), values, s=9, color="black", alpha=0.6, zorder=3)
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
        if per_seed:
            color = ax.lines[-1].get_color()
            for qq in preset.table_qs:
                values = list(_values(rows, "linear_top1", **final_match(preset, chosen, m, qq)).values())
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
                summarise(list(_seed_values(rows, "linear_top1", preset.ablation_seeds, m).values()))
                for _, m in variants
            ]
        else:
            sums = [_summary(rows, "linear_top1", **match) for _, match in variants]
        ax.bar(
            range(len(variants)),
            [s.mean for s in sums],
            color="tab:purple",
            yerr=[[s.mean - s.low if s.n > 1 else 0 for s in sums], [s.high - s.mean if s.n > 1 else 0 for s in sums]],
            capsize=4,
        )
        if per_seed:
            for i, (_, match) in enumerate(variants):
                values = list(_seed_values(rows, "linear_top1", preset.ablation_seeds, match).values())
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
            and _measured(r["train_minutes"]) is not None
            and r["linear_top1"] != ""
        ]
        if not points:
            continue
        dots = ax.scatter(*zip(*points), s=12, alpha=0.6)
        if t.linear.n and t.minutes.n:
            ax.scatter(
                [t.minutes.mean], [t.linear.mean], s=70, marker="D", color=dots.get_facecolor()[0], label=t.method
            )
    floor = _summary(rows, "linear_top1", **final_match(preset, chosen, "random", q))
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
