"""The recorded studies are what the current code makes of their rows: the current record
(docs/records/study/fashion_mnist_v3.*, preset v3) is complete, and its summary.md, like the
superseded v2 record's (docs/records/study/superseded/fashion_mnist_v2.*, preset full),
regenerates from the recorded CSVs byte for byte; every table row and block quote of the study
that docs/comparison.md quotes is one of the current record's lines."""

import pytest
from helpers.records import DOCS, RECORDS, STUDY, STUDY_PRESETS, STUDY_V2, copy_record, quoted_lines_not_in

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.study import plan, report
from sfrik_experiments.study.presets import PRESETS

RECORD = (RECORDS / STUDY).with_suffix("")  # docs/records/study/fashion_mnist_v3


def record_rows(record, preset, tmp_path) -> list[dict]:
    return ResultsFile(copy_record(record, tmp_path), preset.protocol()).rows


@pytest.mark.parametrize("name", [STUDY, STUDY_V2], ids=["v3", "v2"])
def test_the_recorded_summary_regenerates_from_the_recorded_rows(tmp_path, name):
    record, preset = (RECORDS / name).with_suffix(""), PRESETS[STUDY_PRESETS[name]]
    rows = record_rows(record, preset, tmp_path)
    assert report.write(tmp_path, preset, rows) == record.with_suffix(".md").read_text()


def test_the_record_is_complete(tmp_path):
    # every run the v3 plan asks for is in the record (so `make study` resumes and runs nothing),
    # every search has ended, and each method's chosen setting has its ten final seeds at q = 1024
    preset = PRESETS["v3"]
    rows = record_rows(RECORD, preset, tmp_path)
    done = {r["run_id"] for r in rows}
    runs = plan.study_runs(preset, rows)
    assert [s.run_id for s in runs if s.run_id not in done] == []
    summary = RECORD.with_suffix(".md").read_text()
    assert "running (" not in summary and "not started" not in summary
    finals = [s for s in runs if s.phase == "final" and s.q == preset.main_q]
    for method in ("random", *preset.methods):
        assert sorted(s.seed for s in finals if s.method == method) == list(range(10)), method


def test_the_comparison_page_quotes_the_records_study_tables():
    page = (DOCS / "comparison.md").read_text()
    section = ("**The recorded study**", "## Past the first epochs")
    n, missing = quoted_lines_not_in(page, *section, RECORD.with_suffix(".md"))
    assert n > 20 and missing == []


def test_make_study_and_the_default_command_run_the_recorded_preset():
    # `make study` resumes from this record with its preset, and `sfrik-study --out DIR` defaults to it
    from sfrik_experiments.study import cli

    makefile = (RECORDS.parents[1] / "Makefile").read_text()
    assert f"STUDY_RECORD := {RECORD.relative_to(RECORDS.parents[1])}\n" in makefile
    assert "-m sfrik_experiments.study --preset v3 --library lightly --out $(STUDY_OUT)" in makefile
    assert cli.parse_args(["--out", "x"]).preset == "v3"


def test_the_comparison_pages_reading_recomputes():
    import helpers.study_reading as reading

    page = (DOCS / "comparison.md").read_text()
    section = " ".join(page[page.index("**The recorded study**") : page.index("## Past the first epochs")].split())
    for sentence in [*reading.tuning_sentences().values(), *reading.comparison_sentences().values()]:
        assert sentence in section, sentence
    # "the move lowers Barlow Twins' test score": v3's choice against v2's on the test split
    assert reading.summary("barlow_twins").mean < reading.summary("barlow_twins", record=STUDY_V2).mean


def test_the_comparison_pages_ablation_verdicts_recompute():
    # "a tie after the correction on both probes" (Gaussian), "L = 2 is a tie with L = 3 as well",
    # L = 1 "behind L = 3 on both probes", the distance kernel "behind L = 3 on both probes"
    import helpers.study_reading as reading

    for metric in ("linear_top1", "knn_top1"):
        verdicts = reading.ablation_verdicts(metric)
        assert verdicts == {
            "Legendre L = 1": "L = 3 ahead",
            "Legendre L = 2": "tie",
            "Gaussian exp(-2s(1-t))": "tie",
            "distance -||u-v||^p": "L = 3 ahead",
        }, metric
