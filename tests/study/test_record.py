"""The recorded study (docs/records/study/fashion_mnist.*) is what the current code makes of its rows:
summary.md regenerates from the recorded CSVs byte for byte, and every table row of the study that
docs/comparison.md quotes is one of the record's."""

import shutil

import pytest
from helpers.records import DOCS, RECORDS, quoted_lines_not_in

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.study import report
from sfrik_experiments.study.presets import PRESETS

RECORD = RECORDS / "study" / "fashion_mnist"


def test_the_recorded_summary_regenerates_from_the_recorded_rows(tmp_path):
    shutil.copy(RECORD.with_suffix(".csv"), tmp_path / "results.csv")
    shutil.copy(RECORDS / "study" / "fashion_mnist_timing.csv", tmp_path / "timing.csv")
    preset = PRESETS["full"]
    rows = ResultsFile(tmp_path / "results.csv", preset.protocol()).rows
    assert report.write(tmp_path, preset, rows) == RECORD.with_suffix(".md").read_text()


def test_the_comparison_page_quotes_the_records_study_tables():
    page = (DOCS / "comparison.md").read_text()
    section = ("**The recorded study**", "## Past the first epochs")
    n, missing = quoted_lines_not_in(page, *section, RECORD.with_suffix(".md"))
    assert n > 20 and missing == []
