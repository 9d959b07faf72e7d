"""Summaries over seeds: mean, sample standard deviation and a Student-t 95 % confidence
interval, and paired differences (the same seeds: the same initial network and data order)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Summary(NamedTuple):
    n: int
    mean: float
    std: float  # sample standard deviation (n - 1); nan for one value
    low: float  # 95 % confidence interval of the mean (Student t, n - 1 degrees of freedom)
    high: float

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f} (1 seed)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def summarise(values: Sequence[float], confidence: float = 0.95) -> Summary:
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Summary:
    """Summary of a_s - b_s over paired seeds s."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: got {len(a)} and {len(b)} values")
    return summarise([x - y for x, y in zip(a, b)])


def paired_t_p_value(difference: Summary) -> float:
    """Two-sided p value of the paired t test that the mean difference is 0, from the summary of
    the paired differences (paired_difference); nan below 2 pairs."""
    from scipy import stats

    if difference.n < 2:
        return math.nan
    if difference.std == 0:
        return 1.0 if difference.mean == 0 else 0.0
    t = difference.mean / (difference.std / math.sqrt(difference.n))
    return float(2 * stats.t.sf(abs(t), difference.n - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values (family-wise error), in the order given; nan stays nan
    and does not count in the family."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m, adjusted, running = len(indexed), [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def detectable_difference(std: float, n: int, alpha: float, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t test on n pairs detects with the
    given power at level alpha, for differences of standard deviation std (exact, through the
    noncentral t distribution)."""
    from scipy import optimize, stats

    if n < 2 or not std > 0:
        return math.nan
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(delta: float) -> float:
        nc = delta * math.sqrt(n) / std
        lower = float(stats.nct.sf(crit, df, -nc))  # P(T < -crit), by symmetry; nct.cdf can give nan there
        return float(stats.nct.sf(crit, df, nc)) + (0.0 if math.isnan(lower) else lower) - power

    high = std
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high))
