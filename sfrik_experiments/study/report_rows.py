"""What the study's report reads from its results rows: the rows of a method's final runs at a q
(final_match) and of each ablation variant (ablation_variants), each seed's value of a metric, a
CSV cell as a number (the sections' Markdown tables are utils.output.markdown_table). The report's other
modules (study/report_*.py) and the long study's (study/long_report.py) build on these."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sfrik_experiments.engine.runs import format_setting
from sfrik_plugin.kernels import KERNELS

from .plan import Choices, Planner
from .presets import Preset
from .stats import Summary, summarise

Rows = Sequence[Mapping[str, str]]
METRICS = ("linear_top1", "knn_top1")
PROBES = (("linear_top1", "linear top-1"), ("knn_top1", "kNN top-1"))


def escape_cell(text: str) -> str:
    """A table cell's text with its pipes escaped (Markdown would split the cell there)."""
    return text.replace("|", "\\|")


def values_by_seed(rows: Rows, metric: str, **match) -> dict[int, float]:
    """seed -> value of the rows matching every field given."""
    return {
        int(r["seed"]): float(r[metric])
        for r in rows
        if all(str(r[k]) == str(v) for k, v in match.items()) and r[metric] != ""
    }


def summary_of(rows: Rows, metric: str, **match) -> Summary:
    return summarise(list(values_by_seed(rows, metric, **match).values()))


def seed_values(rows: Rows, metric: str, seeds: Sequence[int], match: Mapping[str, object]) -> dict[int, float]:
    """values_by_seed of these seeds only."""
    return {s: v for s, v in values_by_seed(rows, metric, **match).items() if s in seeds}


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


def finite_number(value: object) -> float | None:
    """A CSV cell as a finite number; None where it is empty, not a number or infinite."""
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def measured_value(value: object) -> float | None:
    """A step time or share from a CSV cell; None where it is not a positive finite number."""
    number = finite_number(value)
    return number if number is not None and number > 0 else None
