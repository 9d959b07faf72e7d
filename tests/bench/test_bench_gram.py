"""Smoke test of `sfrik-bench gram`: the block counts are timed against the full product for each
precision, every block count gives the full product within float32 rounding, and the default is
marked. Timings are not judged."""

import csv

import pytest
from helpers.processes import run_python

from sfrik_experiments.bench import gram

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles


def test_quick_gram_bench_writes_every_block_count(tmp_path):
    out = tmp_path / "gram.csv"
    proc = run_python(
        "-m",
        "sfrik_experiments.bench",
        "gram",
        "--quick",
        "--precisions",
        "float32",
        "bf16",
        "--csv",
        str(out),
        timeout=600,
    )
    assert "block counts (fastest / default" in proc.stdout
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    cells = {(int(r["n"]), int(r["q"]), r["precision"]) for r in rows}
    assert cells == {(n, q, p) for n in gram.QUICK_BATCHES for q in gram.QUICK_DIMS for p in ("float32", "bf16")}
    for n, q, precision in cells:
        cell = [r for r in rows if (int(r["n"]), int(r["q"]), r["precision"]) == (n, q, precision)]
        assert [r["blocks"] for r in cell] == ["full", *map(str, gram.QUICK_BLOCKS)]
        assert sum(r["default"] == "True" for r in cell) == 1
        for r in cell:
            assert float(r["ms_median"]) > 0 and float(r["max_abs_diff"]) < 1e-5, r
