"""The quick demo's floor: the random encoder's expected accuracy, the mean over its inits (the
demo prints SFRIK's margin over it; the budget sweep's rule is measured against it)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RandomFloor:
    """The random encoder's linear top-1 over several initialisations (on the split evaluated). The
    floor SFRIK must clear is their mean, the expected accuracy of an untrained encoder, not one draw."""

    accuracy: Mapping[int, float]  # init seed -> linear top-1
    wall_s: float  # one init's run (median)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, str]]) -> RandomFloor:
        done = [r for r in rows if r["method"] == "random" and r["status"] == "ok"]
        accuracy = {int(r["seed"]): float(r["linear_top1"]) for r in done}
        return cls(accuracy, statistics.median(float(r["wall_s"]) for r in done) if done else float("nan"))

    @property
    def inits(self) -> int:
        return len(self.accuracy)

    @property
    def mean(self) -> float:
        return statistics.mean(self.accuracy.values()) if self.accuracy else float("nan")

    @property
    def sd(self) -> float:
        return statistics.stdev(self.accuracy.values()) if self.inits > 1 else 0.0
