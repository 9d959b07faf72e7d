"""The study's results file: one CSV row per finished run, appended and flushed to disk as soon as
the run ends, so that an interruption loses at most the run in progress (a run cut short raises
before it has a row: utils.interrupt). Rereading it tells what is done."""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from sfrik_plugin.utils.files import atomic_write
from sfrik_plugin.utils.interrupt import signals_deferred

# What a run measures (empty for a run that diverged), then what identifies and dates it.
MEASURES = (
    "linear_top1",
    "knn_top1",
    "rankme",
    "alignment",
    "uniformity",
    "mmd_l3",
    "sec_per_step",
    "peak_mem_mb",
    "train_minutes",
)
FIELDS = (
    "phase",
    "method",
    "q",
    "seed",
    "setting",
    "split",
    "status",
    *MEASURES,
    "wall_s",
    "preset",
    "protocol",
    "library",
    "versions",
    "commit",
    "finished_at",
    "run_id",
)


class ResultsFile:
    """fields: the columns (FIELDS; a study that records more per run, as the long study's
    learning curves, gives FIELDS and its own columns)."""

    def __init__(self, path: Path, protocol: str, fields: Sequence[str] = FIELDS):
        self.path, self.protocol, self.fields = Path(path), protocol, tuple(fields)
        self.rows: list[dict[str, str]] = self._read()

    def _read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return []
            if tuple(reader.fieldnames) != self.fields:
                raise ValueError(
                    f"{self.path} is not a results file of this version of sfrik-study "
                    f"(columns {reader.fieldnames}); use another --out"
                )
            rows, dropped = [], 0
            for row in reader:
                if None in row.values() or None in row or not row["run_id"]:
                    dropped += 1  # a line cut short by an interruption
                    continue
                rows.append(row)
        others = {r["protocol"] for r in rows} - {self.protocol}
        if others:
            raise ValueError(
                f"{self.path} holds runs of another protocol ({sorted(others)[0]!r}; this one is "
                f"{self.protocol!r}): use another --out, or the same preset and options"
            )
        if dropped:
            warnings.warn(f"{self.path}: {dropped} incomplete line(s) dropped (an interrupted write)", stacklevel=2)
            self._rewrite(rows)
        return rows

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        with atomic_write(self.path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def replace(self, row: Mapping[str, object]) -> None:
        """Puts `row` in place of the recorded row of the same run (a run done again): the old row
        stays on disk until the new one replaces it in one rename."""
        self._check(row)
        new = {k: str(row[k]) for k in self.fields}
        if new["run_id"] not in self.done:
            raise ValueError(f"{self.path}: no recorded run {new['run_id']!r} to replace")
        rows = [new if r["run_id"] == new["run_id"] else r for r in self.rows]
        with signals_deferred():
            self._rewrite(rows)
            self.rows = rows

    @property
    def done(self) -> set:
        return {r["run_id"] for r in self.rows}

    def _check(self, row: Mapping[str, object]) -> None:
        missing = set(self.fields) - set(row)
        if missing:
            raise ValueError(f"a results row lacks {sorted(missing)}")

    def append(self, row: Mapping[str, object]) -> None:
        self._check(row)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with signals_deferred(), open(self.path, "a", newline="") as f:  # a row is written whole
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in self.fields})
            f.flush()
            os.fsync(f.fileno())
        self.rows.append({k: str(row[k]) for k in self.fields})
