"""The report's sections on the test split: the final runs at the main q with the paired tests
against SFRIK, linear top-1 (and kNN, v3) against q, and the ablations (v3: every variant on the
same seeds, with paired tests against L = 3)."""

from __future__ import annotations

from sfrik_experiments.engine.runs import format_setting
from sfrik_experiments.utils.output import markdown_table
from sfrik_plugin.kernels import KERNELS

from .plan import Choices
from .presets import Preset
from .report_paired import ablation_comparisons, ablation_reading, comparison_table, comparisons, plain_reading
from .report_rows import (
    PROBES,
    Rows,
    ablation_variants,
    escape_cell,
    final_match,
    seed_values,
    summary_of,
)
from .stats import summarise


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
        lin, knn = summary_of(rows, "linear_top1", **m), summary_of(rows, "knn_top1", **m)
        quality = [summary_of(rows, k, **m) for k in ("rankme", "alignment", "uniformity", "mmd_l3")]
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
        markdown_table(
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
                    cells.append(summary_of(rows, metric, **final_match(preset, chosen, method, q)).text() + value)
                table.append([method, *cells])
        if v3 and metric != "linear_top1":
            lines += ["", "The same runs' kNN top-1 %:", ""]
        lines.append(markdown_table(["method", *(f"q = {q}" for q in preset.table_qs)], table))
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
            summary_of(rows, "linear_top1", **match).text(),
            summary_of(rows, "knn_top1", **match).text(),
        ]
        for label, match in ablation_variants(preset, chosen)
    ]
    return lines + [markdown_table(["regulariser", "setting", "linear top-1 %", "kNN top-1 %"], table)]


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
            escape_cell(label),
            match["setting"],
            summarise(list(seed_values(rows, "linear_top1", seeds, match).values())).text(),
            summarise(list(seed_values(rows, "knn_top1", seeds, match).values())).text(),
        ]
        for label, match in variants
    ]
    lines.append(markdown_table(["regulariser", "setting", "linear top-1 %", "kNN top-1 %"], table))
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
