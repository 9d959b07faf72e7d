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
