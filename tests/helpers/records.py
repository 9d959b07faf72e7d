"""The recorded results in docs/records/ (the study, the demo, the budget sweep, the benchmarks, the
GPU check; its README is the index), read as the README and docs/comparison.md cite them."""

import csv
import functools
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECORDS = DOCS / "records"  # one folder per suite: bench, budget, demo, gpu, study

# The methods' names as the README and docs/comparison.md print them -> the records' method keys.
METHOD_LABELS = {"random": "random", "SFRIK": "sfrik", "AUH": "auh", "VICReg": "vicreg", "SimCLR": "simclr"}
METHOD_LABELS |= {"Barlow Twins": "barlow_twins", "SIGReg": "sigreg", "MMCR": "mmcr"}


@functools.cache
def _rows(name: str) -> tuple[dict, ...]:
    with open(RECORDS / name, newline="") as f:
        return tuple(csv.DictReader(f))


def recorded(name: str) -> list[dict]:
    """The rows of docs/records/<name> (a CSV, e.g. "study/fashion_mnist.csv"), read from disk once per test session."""
    return [dict(r) for r in _rows(name)]  # copies: a test may not change another's rows


def study_final(metric: str, method: str, q: int) -> dict[int, float]:
    """seed -> a method's finished final-run value of metric at q in the recorded study
    (study/fashion_mnist.csv)."""
    return {
        int(r["seed"]): float(r[metric])
        for r in _rows("study/fashion_mnist.csv")
        if r["phase"] == "final" and r["method"] == method and r["q"] == str(q) and r["status"] == "ok"
    }


def rows_of(path: Path) -> list[dict]:
    """The rows of a results CSV a test's command wrote ([] while it does not exist), read afresh."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def quoted_lines_not_in(page: str, start: str, end: str, record: Path) -> tuple[int, list[str]]:
    """The table lines (header and body, not the separators) and the block quotes ("> " lines) of
    page between the markers start and end: how many there are, and those that are not lines of the
    record (a report it quotes)."""
    section = page[page.index(start) : page.index(end)].splitlines()
    lines = set(record.read_text().splitlines())
    quoted = [line for line in section if line.startswith("| ") and not line.startswith("|---")]
    quoted += [line.removeprefix("> ") for line in section if line.startswith("> ")]
    return len(quoted), [line for line in quoted if line not in lines]
