"""The long-budget study's numbers read from its results rows: curve points, each method's final
runs at its chosen setting, the paired comparisons at one point of the curves, the ranking, and the
quiet step times; study/long_report.py writes them up, study/long_plots.py draws them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sfrik_experiments.engine.runs import format_setting

from .long_plan import LongPreset, Tuned, chosen
from .report_paired import Comparison
from .report_rows import Rows, finite_number, measured_value
from .stats import Summary, detectable_difference, holm, paired_difference, paired_t_p_value, summarise


def point_value(row: Mapping[str, str], epoch: int, measure: str) -> float | None:
    """A curve point's measure (ep<E>_<measure>) as a number; None where it is empty."""
    return finite_number(row.get(f"ep{epoch}_{measure}"))


def final_rows(preset: LongPreset, rows: Rows, tuned: Tuned, method: str) -> dict[int, Mapping[str, str]]:
    """seed -> the finished (ok) final row of a method at its chosen setting (the random encoder: its
    rows)."""
    if method == "random":
        setting = ""
    else:
        best = chosen(tuned).get(method)
        if best is None:
            return {}
        setting = format_setting(best)
    return {
        int(r["seed"]): r
        for r in rows
        if r["phase"] == "final" and r["method"] == method and r["setting"] == setting and r["status"] == "ok"
    }


def curve_values(
    preset: LongPreset, rows: Rows, tuned: Tuned, method: str, epoch: int, measure: str
) -> dict[int, float]:
    """seed -> a method's final-run value of `measure` after `epoch`."""
    out = {}
    for seed, row in final_rows(preset, rows, tuned, method).items():
        value = point_value(row, epoch, measure)
        if value is not None:
            out[seed] = value
    return out


def comparisons_at(preset: LongPreset, rows: Rows, tuned: Tuned, epoch: int, measure: str) -> list[Comparison]:
    """Each baseline against SFRIK after `epoch` over their common seeds (baseline - SFRIK), the
    two-sided paired t p value, Holm's adjustment over the baselines that have a final run, and the
    smallest difference detectable with 80 % power at Holm's strictest level: study.report_paired's
    comparison, on one point of the curves."""
    sfrik = curve_values(preset, rows, tuned, "sfrik", epoch, measure)
    if not sfrik:
        return []
    tests = []
    for method in preset.methods:
        if method == "sfrik":
            continue
        other = curve_values(preset, rows, tuned, method, epoch, measure)
        seeds = sorted(set(other) & set(sfrik))
        if not seeds:
            continue
        diff = paired_difference([other[s] for s in seeds], [sfrik[s] for s in seeds])
        tests.append((method, diff, paired_t_p_value(diff)))
    level = 0.05 / max(1, len(tests))
    return [
        Comparison(method, diff, p, p_holm, detectable_difference(diff.std, diff.n, level))
        for (method, diff, p), p_holm in zip(tests, holm([p for _, _, p in tests]))
    ]


def ranking(
    preset: LongPreset, rows: Rows, tuned: Tuned, epoch: int, measure: str = "linear_top1"
) -> list[tuple[str, Summary]]:
    """[(method, summary over seeds)] of the methods with a final run, best mean first."""
    items = []
    for method in preset.methods:
        s = summarise(list(curve_values(preset, rows, tuned, method, epoch, measure).values()))
        if s.n:
            items.append((method, s))
    return sorted(items, key=lambda item: -item[1].mean)


def kendall_tau(order_a: Sequence[str], order_b: Sequence[str]) -> float:
    """Kendall's tau between two orders of the same items (nan below two items)."""
    common = [m for m in order_a if m in order_b]
    if len(common) < 2:
        return math.nan
    position = {m: i for i, m in enumerate(order_b)}
    concordant = discordant = 0
    for i in range(len(common)):
        for j in range(i + 1, len(common)):
            if position[common[i]] < position[common[j]]:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / (concordant + discordant)


def steps_at(preset: LongPreset, rows: Rows, epoch: int, split: str = "test") -> int | None:
    """The optimiser steps of the finished runs of a split at `epoch` (one value: every run of a
    split has the same steps per epoch)."""
    steps = {point_value(r, epoch, "step") for r in rows if r["split"] == split and r["method"] != "random"}
    steps.discard(None)
    return int(steps.pop()) if len(steps) == 1 else None  # type: ignore[arg-type]


def step_times(timing: Sequence[Mapping[str, str]], q: int) -> dict[str, float]:
    """method -> its median step time (ms) at q in an interleaved timing pass (timing.csv rows:
    study/timing.py, quiet cores, every method on the same batches); methods without a measured
    step time are left out."""
    return {
        r["method"]: value
        for r in timing
        if r.get("q") == str(q) and (value := measured_value(r.get("step_ms"))) is not None
    }
