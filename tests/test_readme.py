"""The README's figures recompute from the records they cite: the study's tables, paired tests and
statements (docs/records/study/fashion_mnist.{csv,md}), the quick demo's margins (the study's final rows,
docs/records/budget/v3.csv), the loss cost (docs/records/bench/losses_cpu.csv) and the GPU line
(docs/records/gpu/). A record that changes without its README line fails here."""

import re
from pathlib import Path

import pytest
from helpers.records import DOCS, RECORDS, study_final
from helpers.records import METHOD_LABELS as NAMES
from helpers.records import recorded as rows

pytest.importorskip("scipy", reason="the intervals need scipy")

from sfrik_experiments.study import stats

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BASELINES = ("auh", "vicreg", "barlow_twins", "simclr", "sigreg", "mmcr")


COST_RECORD = "docs/records/bench/losses_cpu.csv"  # the README's cost line and its plot


def table_after(prefix: str) -> tuple[list[str], list[list[str]]]:
    """The header and body rows of the README table whose header line starts with prefix."""
    lines = README.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(prefix))
    body = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return [c.strip() for c in lines[i].strip("|").split("|")], body


def signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def interval(d) -> str:
    return f"{signed(d.mean)} [{signed(d.low)}, {signed(d.high)}]"


def holm_text(p: float) -> str:
    return "< 0.001" if p < 1e-3 else f"{p:.3f}"


def comparisons(metric: str, q: int) -> dict[str, tuple]:
    """baseline -> (paired difference baseline − SFRIK, p, Holm p over the baselines), recomputed
    from the record's rows with the study's statistics (scipy underneath)."""
    sfrik = study_final(metric, "sfrik", q)
    tests = {}
    for m in BASELINES:
        other = study_final(metric, m, q)
        seeds = sorted(set(other) & set(sfrik))
        d = stats.paired_difference([other[s] for s in seeds], [sfrik[s] for s in seeds])
        tests[m] = (d, stats.paired_t_p_value(d))
    adjusted = stats.holm([p for _, p in tests.values()])
    return {m: (d, p, h) for (m, (d, p)), h in zip(tests.items(), adjusted)}


def verdict(d, p_holm: float) -> str:
    return "tie" if p_holm >= 0.05 else ("SFRIK ahead" if d.mean < 0 else "SFRIK behind")


def tuning_states() -> dict[tuple[str, int], str]:
    """(method, q) -> "interior" or what the record says of an edge, from the study record's table
    of tuning choices."""
    record = (RECORDS / "study" / "fashion_mnist.md").read_text()
    choices = record[record.index("| method | q | grid | choice |") : record.index("<details>")].splitlines()
    cells = [line.split("|") for line in choices if line.startswith("| ") and not line.startswith("| method")]
    return {(c[1].strip(), int(c[2])): c[-2].strip() for c in cells if len(c) == 8}


def test_the_study_table_recomputes_from_the_record():
    header, (cells,) = table_after("| random | SFRIK |")
    assert len(header) == len(cells) == 2 + len(BASELINES) and {NAMES[h] for h in header[2:]} == set(BASELINES)
    for label, cell in zip(header, cells):
        s = stats.summarise(list(study_final("linear_top1", NAMES[label], 1024).values()))
        assert s.n == 5 and cell == f"{s.mean:.2f} [{s.low:.2f}, {s.high:.2f}]", label


def test_the_studys_paired_table_recomputes_with_holms_correction():
    header, body = table_after("| baseline − SFRIK |")
    assert header[1:] == ["linear top-1 Δ [95 % CI]", "Holm p", "verdict", "kNN top-1 Δ [95 % CI]", "Holm p", "verdict"]
    assert {NAMES[r[0]] for r in body} == set(BASELINES)
    by_metric = {metric: comparisons(metric, 1024) for metric in ("linear_top1", "knn_top1")}
    for row in body:
        expected = [row[0]]
        for metric in by_metric:
            d, _, h = by_metric[metric][NAMES[row[0]]]
            assert d.n == 5
            expected += [interval(d), holm_text(h), verdict(d, h)]
        assert row == expected, row


def test_the_studys_plain_reading_recomputes():
    text = " ".join(README.split())
    linear = {m: stats.summarise(list(study_final("linear_top1", m, 1024).values())) for m in ("sfrik", *BASELINES)}
    assert max(linear, key=lambda m: linear[m].mean) == "sfrik" and min(linear, key=lambda m: linear[m].std) == "sfrik"
    assert f"at q = 1024 it is the steadiest (sd {linear['sfrik'].std:.2f} points over seeds;" in text
    at_256 = {m: stats.summarise(list(study_final("linear_top1", m, 256).values())) for m in ("sfrik", *BASELINES)}
    assert max(at_256, key=lambda m: at_256[m].std) == "sfrik" and at_256["sfrik"].n == 3
    assert f"at q = 256 its sd over three seeds, {at_256['sfrik'].std:.2f}, is the largest of the seven" in text
    by_metric = [comparisons(metric, 1024) for metric in ("linear_top1", "knn_top1")]
    verdicts = {m: {verdict(d, h) for c in by_metric for d, _, h in [c[m]]} for m in BASELINES}
    assert {m for m, v in verdicts.items() if v == {"SFRIK ahead"}} == {"barlow_twins", "sigreg"}
    assert "it is ahead of Barlow Twins and SIGReg, on both probes" in text
    assert not any("SFRIK behind" in v for v in verdicts.values()) and "No baseline is ahead of SFRIK" in text
    linear_tests = by_metric[0]
    for m in ("simclr", "mmcr", "vicreg"):  # "each interval excludes 0 alone, but none survives"
        d, p, h = linear_tests[m]
        assert d.high < 0 and p < 0.05 <= h and -2 < d.mean
    assert verdicts["auh"] == {"tie"} and "AUH is a tie on both probes" in text


def test_the_studys_choices_are_interior_but_sigregs_at_the_cap():
    states = {m: state for (m, q), state in tuning_states().items() if q == 1024}
    assert set(states) == {"sfrik", *BASELINES, "mmd_gaussian", "mmd_distance"}  # the ablation kernels' weights
    assert {m for m, state in states.items() if state != "interior"} == {"sigreg"}
    assert states["sigreg"] == "**at an edge at the cap**: lambda_param"
    text = " ".join(README.split())
    claim = "Every choice at q = 1024 ended inside its grid (the ablation kernels' MMD weights too) except SIGReg's"
    assert claim in text


def test_the_q_tables_reading_recomputes():
    text = " ".join(README.split())
    label = {v: k for k, v in NAMES.items()}
    means = {
        q: {m: stats.summarise(list(study_final("linear_top1", m, q).values())) for m in ("sfrik", *BASELINES)}
        for q in (256, 4096)
    }
    assert all(s.n == 3 for by_method in means.values() for s in by_method.values())
    at_256, at_4096 = means[256], means[4096]
    assert max(at_256, key=lambda m: at_256[m].mean) == "auh"
    auh, sfrik = at_256["auh"].mean, at_256["sfrik"].mean
    assert f"where AUH has the highest mean ({auh:.2f} against SFRIK's {sfrik:.2f}, a tie after the correction)" in text
    d, _, h = comparisons("linear_top1", 256)["auh"]
    assert d.mean > 0 and verdict(d, h) == "tie"
    assert sorted(at_4096, key=lambda m: -at_4096[m].mean)[:3] == ["sfrik", "auh", "simclr"]
    claim = "At q = 4096 SFRIK has the highest mean ({:.2f}), tied with AUH ({:.2f}) and SimCLR ({:.2f})"
    assert claim.format(*(at_4096[m].mean for m in ("sfrik", "auh", "simclr"))) in text
    verdicts = {m: verdict(d, h) for m, (d, _, h) in comparisons("linear_top1", 4096).items()}
    assert {m: v for m, v in verdicts.items() if v != "tie"} == {"barlow_twins": "SFRIK ahead"}
    assert "only Barlow Twins is significantly behind" in text
    retuned = {(m, q): state for (m, q), state in tuning_states().items() if q in (256, 4096)}
    assert len(retuned) == 14
    at_cap = {(label[m], q) for (m, q), state in retuned.items() if "at the cap" in state}
    assert at_cap == {("AUH", 256), ("AUH", 4096), ("VICReg", 4096), ("SimCLR", 4096)}
    claim = "Four of the fourteen re-tuned choices ended at an edge of their cap"
    claim += " (AUH at both q, VICReg and SimCLR at q = 4096)"
    assert claim in text


def test_the_quick_demos_test_margins_are_the_studys_final_rows():
    text = " ".join(README.split())
    random = study_final("linear_top1", "random", 1024)
    floor = sum(random[s] for s in range(3)) / 3  # the demo's three inits, seeds 0-2
    sfrik = study_final("linear_top1", "sfrik", 1024)
    margins = ", ".join(f"+{sfrik[s] - floor:.2f}" for s in sorted(sfrik))
    assert f"SFRIK − the floor ({floor:.2f} %) = {margins} points for seeds 0-4" in text
    assert min(sfrik[s] - floor for s in sfrik) >= 5
    ahead = {s: sorted(m for m in BASELINES if study_final("linear_top1", m, 1024)[s] > sfrik[s]) for s in sfrik}
    assert ahead == {0: ["auh"], 1: ["auh"], 2: ["vicreg"], 3: [], 4: []}
    claim = "SFRIK is the best method of seeds 3 and 4; AUH is ahead of it for seeds 0 and 1, and VICReg for seed 2"
    assert claim in text


def test_the_quick_demos_floor_statement_is_the_recorded_v3_sweep():
    text = " ".join(README.split())
    (chosen,) = [r for r in rows("budget/v3.csv") if r["chosen"] == "True"]
    assert (chosen["epochs"], chosen["train_size"]) == ("3", "15000") and "chose 3 x 15,000" in text
    margins = ", ".join(chosen["margins"].split())
    assert f"(20 inits, {float(chosen['floor']):.2f} %) = {margins} points" in text
    assert f"with a predicted {100 * float(chosen['below_floor_chance']):.1f} % chance" in text
    randoms = [float(r["linear_top1"]) for r in rows("budget/v3_runs.csv") if r["method"] == "random"]
    assert f"spans {min(randoms):.1f}-{max(randoms):.1f} % on the validation split" in text


def test_the_loss_cost_line_is_the_recorded_benchmark():
    cells = {
        (r["method"], r["q"]): r
        for r in rows(COST_RECORD.removeprefix("docs/records/"))
        if r["n"] == "2048" and r["device"] == "cpu"
    }
    sfrik, vicreg = cells["sfrik", "8192"], cells["vicreg", "8192"]
    expected = (
        f"takes {float(sfrik['ms_median']) / 1e3:.1f} s and {float(sfrik['peak_extra_mib']):.0f} MiB; "
        f"VICReg's takes {float(vicreg['ms_median']) / 1e3:.1f} s and {float(vicreg['peak_extra_mib']):.0f} MiB"
    )
    assert expected in " ".join(README.split()), expected
    (needs,) = re.findall(r"needs ~(\d+)\.\d GiB", cells["vicreg", "32768"]["status"])
    assert f"VICReg would need about {needs} GiB" in " ".join(README.split()), needs
    big = cells["sfrik", "32768"]
    line = f"SFRIK takes {float(big['ms_median']) / 1e3:.1f} s and {float(big['peak_extra_mib']) / 1024:.1f} GiB"
    assert line in " ".join(README.split()), line
    # the paragraph names the record its numbers come from, and its plot is that record's
    paragraph = README[README.index("**Cost**") : README.index("**On a GPU**")]
    assert f"record: {COST_RECORD}" in paragraph
    (plot,) = re.findall(r"!\[[^]]*\]\((docs/records/[^)]+)\.png\)", paragraph)
    assert f"{plot}.csv" == COST_RECORD, plot


def test_the_gpu_line_is_the_recorded_h100_run():
    text = " ".join(README.split())
    report = (RECORDS / "gpu" / "report_h100_2026-12-06.md").read_text()
    assert "every requires_cuda test, SFRIK_REQUIRE_CUDA=1: 360 passed, 0 failed" in report
    assert "all 360 CUDA tests pass" in text and "memcheck: no error (0 errors); racecheck: no error" in report
    losses = {
        (r["method"], int(r["q"])): r
        for r in rows("gpu/losses_h100_2026-12-06.csv")
        if r["autocast"] == "none" and not r["method"].startswith("lejepa")
    }
    sfrik, vicreg = losses["sfrik", 16384], losses["vicreg", 16384]
    assert f"SFRIK loss takes {float(sfrik['ms_median']):.2f} ms and {float(sfrik['peak_extra_mib']):.0f} MiB" in text
    assert f"VICReg's {float(vicreg['ms_median']):.2f} ms and {float(vicreg['peak_extra_mib']):.0f} MiB" in text
    assert losses["vicreg", 32768]["status"].startswith("does not fit")
    floor = float(losses["sfrik", 8192]["time_vs_gram_floor"])
    versus_sigreg = float(losses["sfrik", 32768]["ms_median"]) / float(losses["sigreg", 32768]["ms_median"])
    assert f"float32 loss takes {floor:.2f}x its two Gram products at q = 8192" in text
    assert f"{versus_sigreg:.2f}x SIGReg's loss at q = 32768" in text
    step = {(r["method"], int(r["q"])): r for r in rows("gpu/step_h100_2026-12-06.csv")}
    none, sfrik, vicreg, wide = step["none", 8192], step["sfrik", 8192], step["vicreg", 8192], step["sfrik", 32768]
    assert (
        f"SFRIK adds {float(sfrik['overhead_ms']):.2f} ms to {float(none['ms_median']):.1f} ms at q = 8192, "
        f"where VICReg adds {float(vicreg['overhead_ms']):.2f} ms, and {float(wide['overhead_ms']):.2f} "
        "ms at q = 32768, where VICReg runs out of the card's 80 GB" in text
    )
    assert step["vicreg", 32768]["status"].startswith("out of memory")


def test_the_ablations_reading_recomputes_with_paired_tests():
    """docs/comparison.md's reading of the ablation: the Gaussian kernel against L = 3 and L = 1
    against the random encoder, paired over the seeds they share (scipy's ttest_rel)."""
    from scipy import stats as sp

    text = " ".join((DOCS / "comparison.md").read_text().split())
    ablation = [r for r in rows("study/fashion_mnist.csv") if r["phase"] == "ablation" and r["status"] == "ok"]
    gauss = {int(r["seed"]): float(r["linear_top1"]) for r in ablation if r["method"] == "mmd_gaussian"}
    l1 = {
        int(r["seed"]): float(r["linear_top1"])
        for r in ablation
        if r["method"] == "sfrik" and "kernel_weights=(1) " in r["setting"]
    }
    l3, random = study_final("linear_top1", "sfrik", 1024), study_final("linear_top1", "random", 1024)
    assert sorted(gauss) == sorted(l1) == [0, 1, 2] and len(l3) == len(random) == 5
    d = stats.paired_difference([gauss[s] for s in gauss], [l3[s] for s in gauss])
    p = sp.ttest_rel([gauss[s] for s in gauss], [l3[s] for s in gauss]).pvalue
    assert f"Gaussian − L = 3 = {signed(d.mean)} ± {d.std:.2f} points (p {p:.2f})" in text and p > 0.05
    assert "does not reproduce at this scale" in text
    diffs = [l1[s] - random[s] for s in sorted(l1)]
    p = sp.ttest_rel([l1[s] for s in sorted(l1)], [random[s] for s in sorted(l1)]).pvalue
    shown = ", ".join(signed(x) for x in diffs[:-1]) + f" and {signed(diffs[-1])}"
    assert f"the differences are {shown} points (p {p:.2f}): no significant collapse" in text and p > 0.05
    l1_mean, random_mean = sum(l1.values()) / 3, sum(random.values()) / 5
    below = f"L = 1's mean ({l1_mean:.2f}, seeds 0-2) is below the random encoder's ({random_mean:.2f}, seeds 0-4)"
    assert below in text


def test_the_long_study_table_and_reading_recompute(tmp_path):
    """The README's 'Past the first epochs' paragraph against the long-budget record."""
    from helpers.long_record import PRESET, reading_figures, record_rows

    from sfrik_experiments.study.long_curves import comparisons_at, curve_values, ranking
    from sfrik_experiments.study.long_plan import tuning

    rows = record_rows(tmp_path)
    tuned = tuning(PRESET, rows)
    last = PRESET.curve_epochs[-1]
    header, (cells,) = table_after("| after epoch 10 | random |")
    labels = header[1:]
    order = [m for m, _ in ranking(PRESET, rows, tuned, last)]
    assert [NAMES[h] for h in labels[1:]] == order  # the columns in the record's order
    for label, cell in zip(labels, cells[1:]):
        s = stats.summarise(list(curve_values(PRESET, rows, tuned, NAMES[label], last, "linear_top1").values()))
        assert s.n == 3 and cell == f"{s.mean:.2f} [{s.low:.2f}, {s.high:.2f}]", label
    text = " ".join(README.split())
    f = reading_figures(rows)
    assert f"the seven methods lie within {f['spread_long']} points" in text
    assert f"SFRIK is ahead of MMCR only (by {f['mmcr_gap']} points, Holm p {f['mmcr_holm']})" in text
    assert f"is {f['vicreg_gap']} points behind it" in text and f"differences of {f['detectable']} points" in text
    significant = {
        measure: {c.method for c in comparisons_at(PRESET, rows, tuned, last, measure) if c.p_holm < 0.05}
        for measure in ("linear_top1", "knn_top1")
    }
    assert significant == {"linear_top1": {"mmcr"}, "knn_top1": set()}
    assert "On kNN no difference is significant" in text and "the short-budget ranking does not hold" in text
