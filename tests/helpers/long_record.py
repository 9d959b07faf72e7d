"""The long-budget study's record (docs/records/study/fashion_mnist_long.*) as its tests and the
README's read it: its rows, and the figures the README and docs/comparison.md quote from it,
recomputed with the study's statistics."""

from helpers.records import RECORDS, STUDY_V2, copy_record, study_final
from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.study.long_curves import comparisons_at, curve_values, kendall_tau, ranking, step_times
from sfrik_experiments.study.long_plan import LONG_PRESETS, V2_LINEAR_TOP1, tuning
from sfrik_experiments.study.report import read_timing
from sfrik_experiments.study.stats import summarise

RECORD = RECORDS / "study" / "fashion_mnist_long"
PRESET = LONG_PRESETS["long"]


def record_rows(folder):
    """The record's rows, read from a copy of its CSV and timing pass in folder (as results.csv and
    timing.csv, where the study reads them)."""
    return ResultsFile(copy_record(RECORD, folder), PRESET.protocol(), PRESET.fields).rows


def step_ms() -> dict[str, float]:
    """method -> its median step time (ms) at q in the record's timing pass."""
    return step_times(read_timing(RECORD.parent / f"{RECORD.name}_timing.csv"), PRESET.q)


def reading_figures(rows) -> dict[str, str]:
    """The figures docs/comparison.md's plain reading of the long record quotes, recomputed from
    the recorded rows (and the v2 record's, for the short budget) with the study's statistics."""
    tuned = tuning(PRESET, rows)
    last = PRESET.curve_epochs[-1]
    linear = dict(ranking(PRESET, rows, tuned, last))
    random_long = summarise(list(curve_values(PRESET, rows, tuned, "random", last, "linear_top1").values()))
    v2_random = summarise(list(study_final("linear_top1", "random", PRESET.q, STUDY_V2).values()))
    above_long = [s.mean - random_long.mean for s in linear.values()]
    above_short = [v - v2_random.mean for v in V2_LINEAR_TOP1.values()]
    tests = {c.method: c for c in comparisons_at(PRESET, rows, tuned, last, "linear_top1")}
    ties = [c.mdd for c in tests.values() if c.p_holm >= 0.05]
    means = sorted(linear.values(), key=lambda s: -s.mean)
    times = step_ms()
    return {
        "above_long": f"{min(above_long):.1f}-{max(above_long):.1f}",
        "random_long": f"{random_long.mean:.2f}",
        "above_short": f"{min(above_short):.1f}-{max(above_short):.1f}",
        "spread_long": f"{means[0].mean - means[-1].mean:.2f}",
        "sfrik_long": f"{linear['sfrik'].mean:.2f}",
        "vicreg_gap": f"{linear['sfrik'].mean - linear['vicreg'].mean:.2f}",
        "mmcr_gap": f"{-tests['mmcr'].diff.mean:.2f}",
        "mmcr_holm": f"{tests['mmcr'].p_holm:.3f}",
        "tau": f"{kendall_tau(list(linear), sorted(V2_LINEAR_TOP1, key=lambda m: -V2_LINEAR_TOP1[m])):.2f}",
        "detectable": f"{min(ties):.2f}-{max(ties):.2f}",
        "sigreg_time": f"{times['sigreg'] / times['sfrik']:.2f}",
        "vicreg_time": f"{times['vicreg'] / times['sfrik']:.2f}",
    }
