"""The report's paired tests: each baseline against SFRIK at a q (comparisons), each ablation
variant against L = 3 (ablation_comparisons), over the seeds they share, with Holm's correction
and the difference the design can detect; their table, and what they say in words. The long study
(study/long_report.py) reads its comparisons with the same table and words."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sfrik_experiments.utils.output import markdown_table
from sfrik_plugin.kernels import KERNELS

from .plan import Choices
from .presets import Preset
from .report_rows import Rows, ablation_variants, escape_cell, final_match, seed_values, values_by_seed
from .stats import Summary, detectable_difference, holm, paired_difference, paired_t_p_value


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
    sfrik = values_by_seed(rows, metric, **final_match(preset, chosen, "sfrik", q))
    others = [
        (method, values_by_seed(rows, metric, **final_match(preset, chosen, method, q)))
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


def ablation_comparisons(preset: Preset, rows: Rows, chosen: Choices, metric: str) -> list[Comparison]:
    """Each ablation variant against L = 3 over the ablation seeds they share."""
    seeds = preset.ablation_seeds
    variants = ablation_variants(preset, chosen)
    reference = next((match for label, match in variants if label == "Legendre L = 3"), None)
    if reference is None:
        return []
    others = [
        (label, seed_values(rows, metric, seeds, match)) for label, match in variants if label != "Legendre L = 3"
    ]
    return paired_tests(seed_values(rows, metric, seeds, reference), others, "L = 3")


def format_p(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}")


def comparison_table(items: list[Comparison], first: str = "baseline", escape: bool = False) -> str:
    """The paired tests as a table; escape: the pipes in a name written \\| (the v3 report: the
    distance kernel's label has two)."""
    table = [
        [
            escape_cell(c.method) if escape else c.method,
            c.diff.n,
            c.diff.text(),
            format_p(c.p),
            format_p(c.p_holm),
            "-" if math.isnan(c.mdd) else f"{c.mdd:.2f}",
            c.verdict,
        ]
        for c in items
    ]
    return markdown_table(
        [first, "seeds", "Δ (points) mean ± std [95 % CI]", "p", "Holm p", "detectable Δ", "after correction"],
        table,
    )


def plain_reading(items: list[Comparison], label: str) -> str:
    """The comparisons in words: who is significantly ahead or behind after the correction, and
    which differences are ties, with the size of difference the design would have found."""

    def name(c: Comparison) -> str:
        return f"{c.method} ({-c.diff.mean:+.2f} for SFRIK, Holm p {format_p(c.p_holm)})"

    ahead = [name(c) for c in items if c.verdict == "SFRIK ahead"]
    behind = [name(c) for c in items if c.verdict == "SFRIK behind"]
    ties = [c for c in items if c.verdict == "no significant difference"]
    parts = [f"In {label}, after Holm's correction over {len(items)} baselines:"]
    parts.append(f"SFRIK is ahead of {', '.join(ahead)}." if ahead else "SFRIK is ahead of none.")
    parts.append(f"SFRIK is behind {', '.join(behind)}." if behind else "SFRIK is behind none.")
    if ties:
        detectable = sorted((f"{c.mdd:.2f}" for c in ties if not math.isnan(c.mdd)), key=float)
        low, high = (detectable[0], detectable[-1]) if detectable else ("", "")
        size = low if low == high else f"{low}-{high}"  # one size is "2.26", not "2.26-2.26"
        power = (
            f"; this design finds a true difference of {size} points with 80 % power, and smaller ones may be missed"
            if detectable
            else ""
        )
        parts.append(f"No significant difference from {', '.join(c.method for c in ties)}{power}.")
    return " ".join(parts)


def ablation_reading(items: list[Comparison], label: str) -> str:
    """The ablation's paired tests in words, and whether the paper's Legendre-over-Gaussian ablation
    reproduces."""
    words = {"L = 3 ahead": "L = 3 ahead", "L = 3 behind": "L = 3 behind", "no significant difference": "a tie"}
    parts = [
        f"{c.method}: {c.diff.mean:+.2f} ({words.get(c.verdict, c.verdict)}, Holm p {format_p(c.p_holm)})"
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
