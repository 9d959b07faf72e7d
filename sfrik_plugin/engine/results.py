"""The study's results file: one CSV row per finished run, appended and flushed to disk as soon as
the run ends, so that an interruption loses at most the run in progress. Rereading it tells what
is done."""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

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
    def __init__(self, path: Path, protocol: str):
        self.path, self.protocol = Path(path), protocol
        self.rows: list[dict[str, str]] = self._read()

    def _read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return []
            if tuple(reader.fieldnames) != FIELDS:
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
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def remove(self, run_ids: set) -> list[dict[str, str]]:
        """Drops the rows of these runs from the file (to run them again); returns the dropped rows."""
        dropped = [r for r in self.rows if r["run_id"] in run_ids]
        self.rows = [r for r in self.rows if r["run_id"] not in run_ids]
        self._rewrite(self.rows)
        return dropped

    @property
    def done(self) -> set:
        return {r["run_id"] for r in self.rows}

    def append(self, row: Mapping[str, object]) -> None:
        missing = set(FIELDS) - set(row)
        if missing:
            raise ValueError(f"a results row lacks {sorted(missing)}")
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in FIELDS})
            f.flush()
            os.fsync(f.fileno())
        self.rows.append({k: str(row[k]) for k in FIELDS})
