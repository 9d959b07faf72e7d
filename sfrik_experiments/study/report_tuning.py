"""The report's tuning section: each search's grid, choice and where the choice sits in the grid
(interior, at an edge at the cap), every tuning run, and for a version-3 preset the confirmation
seeds' table (study.search's rule, as the report states it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from sfrik_experiments.engine.runs import format_setting
from sfrik_experiments.utils.output import markdown_table

from .plan import Choices, Search, SearchState, mean_score
from .presets import Preset
from .report_rows import Rows


def _run_cells(row: Mapping[str, str] | None) -> list[str]:
    """A tuning run's cells in the every-run table: its linear and kNN top-1, its status where it
    did not finish ok, or "…" while it has not run."""
    if row is None:
        return ["…", "…"]
    if row["status"] != "ok":
        return [row["status"].split(":")[0], "-"]
    return [row["linear_top1"], row["knn_top1"]]


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
    lines.append(markdown_table(["method", "q", "grid", "choice", "val linear %", "choice in the grid"], summary))
    lines += ["", "<details><summary>Every tuning run</summary>", ""]
    lines.append(markdown_table(["method", "q", "setting", "val linear %", "val kNN %", ""], detail))
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
                # two decimals like the mean beside them (the CSV drops a trailing zero: 83.0)
                cells.append(
                    "…" if row is None else f"{float(row['linear_top1']):.2f}" if row["status"] == "ok" else "diverged"
                )
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
        markdown_table(
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
            markdown_table(
                ["search", "q", "cell", *(f"seed {s}" for s in seeds), "mean", ""],
                confirmation,
            ),
        ]
    lines += ["", "<details><summary>Every tuning run</summary>", ""]
    lines.append(markdown_table(["search", "q", "seed", "setting", "val linear %", "val kNN %", ""], detail))
    return lines + ["", "</details>"]
