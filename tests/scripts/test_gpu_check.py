"""scripts/gpu_check.py --dry-run: every stage of the GPU check runs on the CPU at tiny sizes and
writes the report (one line per stage) and the CSVs, so the script is known to work before a GPU
is lent."""

import csv
import json
import re
from pathlib import Path

import pytest
from helpers.processes import failure, run_python

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # a safety net: the stages have their own limits; ~2 min on 2 quiet cores
STAGES = ("build", "tests", "sanitizer", "operator", "losses", "tiles", "demo", "solo-learn")


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_writes_the_report(tmp_path):
    if not (ROOT / "scripts" / "gpu_check.py").is_file():
        pytest.skip("not run from a checkout")
    pytest.importorskip("lightning", reason="the demo stage needs Lightning (the package's [demo] extra)")
    out = tmp_path / "out"
    script = ROOT / "scripts" / "gpu_check.py"
    proc = run_python(script, "--dry-run", "--out", out, cwd=ROOT, timeout=TIMEOUT_S, check=False)
    report = (out / "report.md").read_text() if (out / "report.md").exists() else ""
    assert proc.returncode == 0, failure(proc) + report
    lines = [line for line in report.splitlines() if re.match(r"- [a-h]\. ", line)]
    assert [re.match(r"- [a-h]\. ([\w-]+):", line).group(1) for line in lines] == list(STAGES), report
    status = {name: re.search(r"\*\*(\w+)\*\*", line).group(1) for name, line in zip(STAGES, lines)}
    expected = {
        "build": "passed",
        "tests": "passed",
        "sanitizer": "skipped",
        "operator": "passed",
        "losses": "passed",
        "tiles": "passed",
        "demo": "passed",
        "solo-learn": "skipped",
    }
    assert status == expected, report
    assert "reused the existing build (dry run: not rebuilt)" in report
    assert "no --solo-learn-dir given" in report
    for name in ("op_bandwidth.csv", "losses_float32.csv", "losses_bf16_autocast.csv", "tile_sweep.csv"):
        with open(out / name, newline="") as f:
            assert list(csv.DictReader(f)), name
    with open(out / "losses_bf16_autocast.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["autocast"] for r in rows} == {"bf16"}
    assert all(float(r["time_vs_gram_floor"]) > 0 for r in rows if r["status"] == "ok")
    decision = json.loads((out / "tile_default.json").read_text())
    assert decision["best_tile"] in (64, 128, 256, 600)
    with open(out / "demo" / "results.csv", newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["random", "sfrik"]
