"""The v3 report (study.report for a version-3 preset) on synthetic rows: the tuning tables with the
confirmation seeds, kNN paired tests at every q, the training-time table (the equal-wall-time
reading) and its dominance column, the ablation variants on the same seeds with paired tests against
L = 3 recomputed with scipy, what it says of the Gaussian kernel, and the plots; and the v2 record
read under v3 (what the report shows at the start of the v3 runs)."""

import csv
import math
import re
import shutil

import pytest

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from helpers.records import RECORDS, STUDY_V2
from helpers.study import fake_row, run_plan

from sfrik_experiments.study import presets, report, report_paired, stats

V3 = presets.PRESETS["v3"]
MEANS = {"sfrik": 83.0, "auh": 82.5, "vicreg": 82.0, "barlow_twins": 81.0, "simclr": 83.2, "sigreg": 81.5}
MEANS |= {"mmcr": 82.2, "random": 77.5}
MINUTES = {"sfrik": 1.0, "auh": 1.0, "vicreg": 1.2, "barlow_twins": 1.0, "simclr": 1.1, "sigreg": 1.3, "mmcr": 1.1}
STEP_MS = {"sfrik": 340.0, "auh": 340.0, "vicreg": 390.0, "barlow_twins": 345.0, "simclr": 350.0}
STEP_MS |= {"sigreg": 430.0, "mmcr": 350.0}
OFFSETS = [-0.2, 0.2, -0.1, 0.1, 0.0, 0.0, 0.3, -0.3, 0.05, -0.05]  # sum 0: each method's mean is MEANS'
# the ablation variants against L = 3 (SFRIK's seeds 0-4), seed by seed
ABLATION = {"(1)": [-1.0, -1.3, -0.8, -1.1, -0.9], "(1,40)": [-0.1, 0.2, -0.3, 0.1, 0.0]}
ABLATION |= {"mmd_gaussian": [0.1, -0.2, 0.15, -0.05, 0.0], "mmd_distance": [-2.0, -2.2, -1.9, -2.1, -1.8]}


def score(spec):
    """Tuning: a peak at lr 5e-3 and each ladder's centre, no seed effect; tests: MEANS with the
    seeds' offsets; the ablation: L = 3's seed plus ABLATION's difference."""
    if spec.phase == "tune":
        if spec.method == "random":
            return 78.0
        grid = {**V3.grids, **V3.ablation_grids}[spec.method]
        value = float(spec.params.get("lr", 5e-3)) / 5e-3, float(spec.params[grid.parameter]) / grid.ladder.centre
        return round(84.0 - math.log2(value[0]) ** 2 - math.log2(value[1]) ** 2, 2)
    if spec.phase == "ablation":
        weights = spec.params.get("kernel_weights")
        key = spec.method if weights is None else "(" + ",".join(f"{w:g}" for w in weights) + ")"
        return round(MEANS["sfrik"] + OFFSETS[spec.seed] + ABLATION[key][spec.seed], 2)
    return round(MEANS[spec.method] + OFFSETS[spec.seed], 2)


def row(spec, value):
    minutes = MINUTES.get(spec.method, 1.0) if spec.method != "random" else 0.0
    return fake_row(spec, value, train_minutes=minutes, sec_per_step=0.3, wall_s=60.0, library="lightly")


@pytest.fixture(scope="module")
def v3_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("v3")
    rows = run_plan(V3, score, row=row)
    with open(out / "timing.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "q", "step_ms", "network_ms", "loss_ms", "network_share"])
        writer.writeheader()
        for q in V3.table_qs:
            for method, ms in STEP_MS.items():
                writer.writerow({"method": method, "q": q, "step_ms": ms, "network_ms": 300, "loss_ms": 5})
    text = report.write(out, V3, rows)
    return out, rows, text


def table_lines(text, header_start, after=""):
    """The body rows' cells of the first table whose header starts with header_start, after the line
    containing `after` (an escaped pipe, \\|, is a cell's text)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    i = next(k for k in range(start, len(lines)) if lines[k].startswith(header_start))
    out = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
        out.append([c.strip().replace("\\|", "|") for c in cells])
    return out


def table(text, header_start, after=""):
    """table_lines as first cell -> the other cells (the first row of each first cell)."""
    out = {}
    for cells in table_lines(text, header_start, after):
        out.setdefault(cells[0], cells[1:])
    return out


def test_the_v3_tuning_tables_show_the_confirmation(v3_out):
    _, rows, text = v3_out
    summary = table(text, "| search | q | grid | choice |")
    assert len(summary) == 11  # first cell per search key: 7 methods + 4 ablation searches (the q table's repeat keys)
    assert "mean over seeds 10, 11, 12" in text and "gains the next rung" in text and "2 more rungs" in text
    confirmation = table_lines(text, "| search | q | cell |")
    assert len(confirmation) == 11 * 3  # three cells of each of the 11 confirmed searches (q = 1024)
    assert sum(cells[-1] == "**chosen**" for cells in confirmation) == 11
    for cells in confirmation:  # the mean of the three seeds; every score with two decimals
        assert cells[6] == f"{sum(float(c) for c in cells[3:6]) / 3:.2f}", cells
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells[3:7]), cells


def test_knn_paired_tests_at_every_q(v3_out):
    _, _, text = v3_out
    for q in (256, 4096):
        for label in ("linear top-1", "kNN top-1"):
            assert f"At q = {q}, {label}, baseline − SFRIK:" in text
            assert f"In {label} at q = {q}, after Holm's correction over 6 baselines" in text
    assert "Paired differences in kNN top-1 (baseline − SFRIK" in text and "The same runs' kNN top-1 %:" in text


def test_the_training_time_table_reads_equal_wall_time(v3_out):
    _, _, text = v3_out
    rows = table(text, "| method | linear top-1 % | pretraining min per run |")
    assert list(rows) == list(MEANS)[:-1]
    for method, cells in rows.items():
        assert cells[0].startswith(f"{MEANS[method]:.2f} ± ")
        assert cells[1].startswith(f"{MINUTES[method]:.2f} ± 0.00")
        assert cells[2] == f"{STEP_MS[method]:.1f}" and cells[3] == f"{STEP_MS[method] / STEP_MS['sfrik']:.2f}"
        # per minute of the quiet pass: its step time x the run's steps, not the run's own (shared) minutes
        quiet_minutes = STEP_MS[method] * (V3.train_size // V3.train.batch_size) * V3.train.epochs / 60000
        assert cells[4] == f"{(MEANS[method] - MEANS['random']) / quiet_minutes:.2f}"
    # dominated: a method at most as slow (interleaved step) with a higher mean linear top-1
    assert rows["sfrik"][5] == "-" and rows["simclr"][5] == "-"  # SimCLR is more accurate, but slower
    assert rows["auh"][5] == "sfrik"  # as fast, less accurate
    assert rows["vicreg"][5] == "sfrik, auh, simclr, mmcr"
    assert rows["sigreg"][5] == "sfrik, auh, vicreg, simclr, mmcr"
    assert "Not dominated: sfrik, simclr;" in text


def test_the_ablation_variants_share_their_seeds_and_are_tested_against_l3_with_scipy(v3_out):
    from scipy import stats as sp

    _, rows, text = v3_out
    assert "## Ablations (test split, q = 1024, seeds [0, 1, 2, 3, 4] for every variant)" in text
    variants = table(text, "| regulariser | setting |")
    assert list(variants) == ["Legendre L = 1", "Legendre L = 2", "Legendre L = 3", "Gaussian exp(-2s(1-t))"] + [
        "distance -||u-v||^p"
    ]
    sfrik = {int(r["seed"]): float(r["linear_top1"]) for r in rows if r["phase"] == "final" and r["method"] == "sfrik"}
    l3 = [sfrik[s] for s in range(5)]
    assert variants["Legendre L = 3"][1].startswith(f"{sum(l3) / 5:.2f} ± ")  # seeds 0-4 only, not SFRIK's ten
    tests = table(text, "| variant |", after="Paired differences in linear top-1 (variant − L = 3")
    keys = {"Legendre L = 1": "(1)", "Legendre L = 2": "(1,40)", "Gaussian exp(-2s(1-t))": "mmd_gaussian"}
    keys["distance -||u-v||^p"] = "mmd_distance"
    ablation = [r for r in rows if r["phase"] == "ablation"]
    p_values = []
    for label, key in keys.items():
        if key.startswith("("):
            matching = [r for r in ablation if f"kernel_weights={key} " in r["setting"]]
        else:
            matching = [r for r in ablation if r["method"] == key]
        values = [float(r["linear_top1"]) for r in sorted(matching, key=lambda r: int(r["seed"]))]
        assert len(values) == 5
        p_values.append(sp.ttest_rel(values, l3).pvalue)  # scipy's paired t test, the oracle
        mean = sum(a - b for a, b in zip(values, l3)) / 5
        assert tests[label][0] == "5" and tests[label][1].startswith(f"{mean:.2f} ± "), label
        assert tests[label][2] in (f"{p_values[-1]:.4f}", f"{p_values[-1]:.1e}"), label
    for (label, cells), adjusted in zip(tests.items(), stats.holm(p_values)):  # Holm over the four variants
        assert cells[3] in (f"{adjusted:.4f}", f"{adjusted:.1e}"), label
    assert tests["Legendre L = 1"][5] == "L = 3 ahead" and tests["distance -||u-v||^p"][5] == "L = 3 ahead"
    assert tests["Gaussian exp(-2s(1-t))"][5] == "no significant difference"
    assert "here the Gaussian kernel is a tie with L = 3, so that part of the paper does not reproduce here" in text


def test_the_gaussian_sentence_follows_the_test():
    ahead = report_paired.Comparison(
        "Gaussian exp(-2s(1-t))",
        stats.paired_difference([80.0, 80.1, 79.9], [82.0, 82.2, 81.9]),
        p=0.001,
        p_holm=0.004,
        mdd=0.5,
        reference="L = 3",
    )
    assert ahead.verdict == "L = 3 ahead"
    text = report_paired.ablation_reading([ahead], "linear top-1")
    assert "As in the paper, the Legendre kernel (L = 3) is ahead of the Gaussian one." in text
    assert "does not reproduce" not in text


def test_the_v3_plots_are_written(v3_out):
    out, _, _ = v3_out
    for name in ("accuracy.png", "accuracy_vs_q.png", "ablation.png", "paired_differences.png", "accuracy_vs_time.png"):
        assert (out / name).stat().st_size > 10_000, name


def test_the_v2_record_read_under_v3_reports_the_searches_running(tmp_path):
    shutil.copy(RECORDS / STUDY_V2, tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    text = report.write(tmp_path, V3, rows)
    summary = table(text, "| search | q | grid | choice |")
    assert summary["sfrik"][-1] == "running (12/18)"  # its grid of 12 done, six confirmation runs to go
    assert summary["sigreg"][-1] == "running (20/28)"  # 4 x 5 done, the cap rule's 4 x 2 to go
    assert "## Final runs (test split, q = 1024, seeds [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])" in text
