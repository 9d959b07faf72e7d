"""The long-budget study's record (docs/records/study/fashion_mnist_long.*) is complete and is what
the current code makes of its rows: every method's three final seeds measured at every point of
the curve, summary.md regenerated from the recorded CSVs byte for byte, and every table line of it
that docs/comparison.md quotes one of the record's."""

import math

import pytest
from helpers.records import DOCS, quoted_lines_not_in

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from helpers.long_record import PRESET, RECORD, reading_figures, record_rows, step_ms

from sfrik_experiments.study import long_report
from sfrik_experiments.study.long_curves import comparisons_at, final_rows, point_value, ranking
from sfrik_experiments.study.long_plan import V2_LINEAR_TOP1, V2_VERDICTS, tuning


def test_the_long_record_is_complete(tmp_path):
    rows = record_rows(tmp_path)
    tuned = tuning(PRESET, rows)
    assert all(state.best is not None for _, state in tuned.values()), "a learning-rate search has not ended"
    for method in ("random", *PRESET.methods):
        finals = final_rows(PRESET, rows, tuned, method)
        assert sorted(finals) == sorted(PRESET.final_seeds), method
        for row in finals.values():
            assert all(point_value(row, e, "linear_top1") is not None for e in PRESET.curve_epochs), method


@pytest.mark.slow  # draws the plots: seconds
def test_the_long_summary_regenerates_from_the_recorded_rows(tmp_path):
    pytest.importorskip("matplotlib")
    rows = record_rows(tmp_path)
    assert long_report.write(tmp_path, PRESET, rows) == RECORD.with_suffix(".md").read_text()


def test_the_comparison_page_quotes_the_long_records_tables():
    page = (DOCS / "comparison.md").read_text()
    n, missing = quoted_lines_not_in(page, "**The long-budget record**", "## The main job", RECORD.with_suffix(".md"))
    assert n > 10 and missing == []


def test_the_comparison_pages_reading_of_the_long_record_recomputes(tmp_path):
    rows = record_rows(tmp_path)
    page = (DOCS / "comparison.md").read_text()
    text = " ".join(page[page.index("**The long-budget record**") : page.index("## The main job")].split())
    f = reading_figures(rows)
    assert f"every method is {f['above_long']} points above the random encoder ({f['random_long']} %)" in text
    assert f"against {f['above_short']} at the short budget, and the seven lie within {f['spread_long']} points" in text
    assert f"highest mean linear top-1 ({f['sfrik_long']}), VICReg is next by {f['vicreg_gap']} points" in text
    assert f"ahead of MMCR only ({f['mmcr_gap']} points, Holm p {f['mmcr_holm']}); on kNN it is ahead of none" in text
    assert f"(Kendall's tau {f['tau']})" in text and f"differences of {f['detectable']} points" in text
    assert f"SIGReg takes {f['sigreg_time']}x SFRIK's time, VICReg {f['vicreg_time']}x" in text
    # the orders and verdicts the sentences state
    tuned = tuning(PRESET, rows)
    last = PRESET.curve_epochs[-1]
    order = [m for m, _ in ranking(PRESET, rows, tuned, last)]
    v2_order = sorted(V2_LINEAR_TOP1, key=lambda m: -V2_LINEAR_TOP1[m])
    assert order[:2] == ["sfrik", "vicreg"] and order[-1] == "mmcr"
    assert v2_order.index("vicreg") == 4 and v2_order.index("mmcr") == 3  # fifth and fourth
    for measure, ahead in (("linear_top1", {"mmcr"}), ("knn_top1", set())):
        tests = comparisons_at(PRESET, rows, tuned, last, measure)
        assert {c.method for c in tests if c.p_holm < 0.05} == ahead and all(
            c.diff.mean < 0 for c in tests if c.p_holm < 0.05
        )
    assert "SFRIK's two significant leads at the short budget, over Barlow Twins and SIGReg, are gone" in text
    assert {m for m, v in V2_VERDICTS.items() if v == "SFRIK ahead"} == {"barlow_twins", "sigreg"}
    times = step_ms()
    assert sorted(times, key=times.__getitem__)[:2] in (["sfrik", "auh"], ["auh", "sfrik"])
    # the tuning sentence: every choice interior, VICReg, Barlow Twins and SIGReg one rung up, MMCR one down
    moves = {}
    for method, (_, state) in tuned.items():
        assert state.best is not None and not state.at_cap and not state.at_edge, method
        moves[method] = round(math.log2(float(state.best["lr"]) / float(PRESET.start[method]["lr"])))
    assert moves == {"sfrik": 0, "auh": 0, "vicreg": 1, "barlow_twins": 1, "simclr": 0, "sigreg": 1, "mmcr": -1}
    assert "Every choice is interior; VICReg, Barlow Twins and SIGReg moved one rung up" in text
    assert "from their short-budget learning rate, MMCR one down" in text
