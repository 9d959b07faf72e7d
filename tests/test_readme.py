"""The README's figures recompute from the records they cite: the study's tables, paired tests and
statements (docs/records/study/fashion_mnist_v3.{csv,md}), the quick demo's margins (the v2 study's final rows,
docs/records/budget/v3.csv), the loss cost (docs/records/bench/losses_cpu.csv) and the GPU line
(docs/records/gpu/). A record that changes without its README line fails here."""

import re
from pathlib import Path

import helpers.study_reading as reading
import pytest
from helpers.records import METHOD_LABELS as NAMES
from helpers.records import RECORDS, STUDY, STUDY_V2, study_final
from helpers.records import recorded as rows

pytest.importorskip("scipy", reason="the intervals need scipy")

from sfrik_experiments.study import stats

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BASELINES = reading.BASELINES
NAMES_OF = reading.LABELS


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


def tuning_states() -> dict[tuple[str, int], str]:
    """(search, q) -> "interior" or what the record says of an edge, from the study record's table
    of tuning choices."""
    record = (RECORDS / STUDY).with_suffix(".md").read_text()
    choices = record[record.index("| search | q | grid | choice |") : record.index("The confirmation:")].splitlines()
    cells = [line.split("|") for line in choices if line.startswith("| ") and not line.startswith("| search")]
    return {(c[1].strip(), int(c[2])): c[-2].strip() for c in cells}


def test_the_study_table_recomputes_from_the_record():
    header, (cells,) = table_after("| random | SFRIK |")
    assert [NAMES[h] for h in header] == ["random", *reading.by_mean(("sfrik", *BASELINES))]  # by mean
    for label, cell in zip(header, cells):
        s = reading.summary(NAMES[label])
        assert s.n == 10 and cell == f"{s.mean:.2f} [{s.low:.2f}, {s.high:.2f}]", label


def test_the_studys_paired_table_recomputes_with_holms_correction():
    header, body = table_after("| baseline − SFRIK |")
    assert header[1:] == ["linear top-1 Δ [95 % CI]", "Holm p", "verdict", "kNN top-1 Δ [95 % CI]", "Holm p", "verdict"]
    assert {NAMES[r[0]] for r in body} == set(BASELINES)
    by_metric = {metric: reading.comparisons(metric) for metric in ("linear_top1", "knn_top1")}
    for row in body:
        expected = [row[0]]
        for metric in by_metric:
            d, _, h = by_metric[metric][NAMES[row[0]]]
            assert d.n == 10
            expected += [interval(d), holm_text(h), reading.verdict(d, h)]
        assert row == expected, row


def test_the_studys_plain_reading_recomputes():
    text = " ".join(README.split())
    for sentence in reading.reading_sentences().values():
        assert sentence in text, sentence


def test_the_studys_choices_at_q_1024_are_as_the_readme_says():
    states = {m: state for (m, q), state in tuning_states().items() if q == 1024}
    assert set(states) == {"sfrik", *BASELINES, "sfrik_L1", "sfrik_L2", "mmd_gaussian", "mmd_distance"}
    assert not any(state.startswith(("running", "not started")) for state in states.values())
    at_edge = sorted(m for m, state in states.items() if not state.startswith("interior"))
    text = " ".join(README.split())
    assert at_edge == ["barlow_twins"] and "moved there by the confirmation: lr" in states["barlow_twins"]
    assert "Every choice at q = 1024 ended inside its grid but Barlow Twins'" in text
    assert states["sigreg"] == "interior (after the cap rule's rungs on lambda_param)"
    assert "SIGReg's lambda, at the cap in v2, is interior after the cap rule's two rungs" in text


def test_the_q_tables_reading_recomputes():
    text = " ".join(README.split())
    for q in (256, 4096):
        assert all(reading.summary(m, q).n == 3 for m in ("sfrik", *BASELINES))
    for sentence in reading.q_sentences().values():
        assert sentence in text, sentence
    sfrik = [reading.summary("sfrik", q).mean for q in (256, 1024, 4096)]
    assert max(sfrik) - min(sfrik) < 0.1 and "SFRIK's own mean moves by less than 0.1 points across q" in text
    retuned = {(m, q): state for (m, q), state in tuning_states().items() if q in (256, 4096)}
    assert len(retuned) == 14 and not any(s.startswith(("running", "not started")) for s in retuned.values())
    at_edge = sorted((NAMES_OF[m], q) for (m, q), state in retuned.items() if not state.startswith("interior"))
    if at_edge:
        listed = ", ".join(f"{label} at q = {q}" for label, q in at_edge)
        assert f"{len(at_edge)} of the fourteen re-tuned choices still end at an edge ({listed})" in text
    else:
        assert "With the cap rule every re-tuned choice ends inside its grid: the four at the cap in v2" in text
        extended = {(m, q) for (m, q), state in retuned.items() if "after the cap rule" in state}
        assert extended == {("auh", 256), ("auh", 4096), ("vicreg", 4096), ("simclr", 4096)}
        for m, q in extended:  # "and kept their v2 choice": the same final runs as v2's
            assert study_final("linear_top1", m, q) == study_final("linear_top1", m, q, STUDY_V2), (m, q)


def test_the_quick_demos_test_margins_are_the_v2_studys_final_rows():
    # the demo runs at the v2 study's choices: its rows are the v2 record's (tests/demo/test_demo.py)
    text = " ".join(README.split())
    random = study_final("linear_top1", "random", 1024, STUDY_V2)
    floor = sum(random[s] for s in range(3)) / 3  # the demo's three inits, seeds 0-2
    sfrik = study_final("linear_top1", "sfrik", 1024, STUDY_V2)
    margins = ", ".join(f"+{sfrik[s] - floor:.2f}" for s in sorted(sfrik))
    assert f"SFRIK − the floor ({floor:.2f} %) = {margins} points for seeds 0-4" in text
    assert min(sfrik[s] - floor for s in sfrik) >= 5
    others = {m: study_final("linear_top1", m, 1024, STUDY_V2) for m in BASELINES}
    ahead = {s: sorted(m for m in BASELINES if others[m][s] > sfrik[s]) for s in sfrik}
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


def test_the_ablations_gaussian_tie_is_the_records():
    """The README's one line on the ablation: the Gaussian kernel against L = 3, paired over seeds
    0-4 with Holm's correction over the variants (docs/comparison.md reads the rest)."""
    text = " ".join(README.split())
    for metric in ("linear_top1", "knn_top1"):
        assert reading.ablation_verdicts(metric)["Gaussian exp(-2s(1-t))"] == "tie", metric
    claim = "the Gaussian kernel ties SFRIK's Legendre kernel, so the paper's key ablation does not reproduce here"
    assert claim in text


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
    short = reading.verdicts("linear_top1")  # the v3 record's ten seeds at the short budget
    assert set(short.values()) == {"SFRIK ahead"} and len(short) == 6
    assert "of SFRIK's six significant leads with v3's ten seeds, one, over MMCR, survives the long budget" in text
    assert "On kNN no difference is significant" in text and "the short-budget ranking does not hold" in text
