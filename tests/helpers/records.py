"""The recorded results in docs/records/ (the study, the demo, the budget sweep, the benchmarks, the
GPU check; its README is the index), read as the README and docs/comparison.md cite them."""

import csv
import functools
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECORDS = DOCS / "records"  # one folder per suite: bench, budget, demo, gpu, study

# The methods' names as the README and docs/comparison.md print them -> the records' method keys.
METHOD_LABELS = {"random": "random", "SFRIK": "sfrik", "AUH": "auh", "VICReg": "vicreg", "SimCLR": "simclr"}
METHOD_LABELS |= {"Barlow Twins": "barlow_twins", "SIGReg": "sigreg", "MMCR": "mmcr"}

# The comparison study's record (v3: ten final seeds at q = 1024) and the v2 record it superseded,
# still read where the text speaks of v2 (the quick demo and the long study run at v2's choices).
STUDY = "study/fashion_mnist_v3.csv"
STUDY_V2 = "study/superseded/fashion_mnist_v2.csv"


@functools.cache
def _rows(name: str) -> tuple[dict, ...]:
    with open(RECORDS / name, newline="") as f:
        return tuple(csv.DictReader(f))


def recorded(name: str) -> list[dict]:
    """The rows of docs/records/<name> (a CSV, e.g. STUDY), read from disk once per test session."""
    return [dict(r) for r in _rows(name)]  # copies: a test may not change another's rows


# each study record's preset: the rule that says which setting's final runs are its results
STUDY_PRESETS = {STUDY: "v3", STUDY_V2: "full"}


@functools.cache
def study_choices(record: str = STUDY):
    """The plan's choices (study.plan.choices) read from a recorded study's rows."""
    from sfrik_experiments.study.plan import choices
    from sfrik_experiments.study.presets import PRESETS

    return choices(PRESETS[STUDY_PRESETS[record]], _rows(record))


def study_final(metric: str, method: str, q: int, record: str = STUDY) -> dict[int, float]:
    """seed -> a method's finished final-run value of metric at q in a recorded study (default:
    the current one), at the setting the study chose at that q. A record may hold final runs of
    another setting too (v3 holds v2's where its choice moved), so the setting is matched."""
    setting = None
    if method != "random":
        from sfrik_experiments.engine.runs import format_setting

        setting = format_setting(study_choices(record).by_q[q][method])
    return {
        int(r["seed"]): float(r[metric])
        for r in _rows(record)
        if r["phase"] == "final"
        and r["method"] == method
        and r["q"] == str(q)
        and r["status"] == "ok"
        and setting in (None, r["setting"])
    }


def copy_record(record: Path, folder: Path) -> Path:
    """A study record's CSV and timing pass (docs/records/study/<stem>.csv, <stem>_timing.csv)
    copied into folder as results.csv and timing.csv, where the study reads them; returns the
    results path."""
    shutil.copy(record.with_suffix(".csv"), folder / "results.csv")
    shutil.copy(record.parent / f"{record.name}_timing.csv", folder / "timing.csv")
    return folder / "results.csv"


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
