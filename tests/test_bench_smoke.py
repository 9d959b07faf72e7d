"""Smoke test of the benchmark command line: `python -m sfrik_plugin.bench legendre --quick`
runs end to end and writes one finite, positive row per method. Timings are not judged."""
import csv
import math
import subprocess
import sys

import pytest

from sfrik_plugin.bench import legendre

# --quick is n in {256, 512}, L = 3: about 15 s on 2 CPU cores, most of it torch.compile.
# The timeout turns a hang into a failure instead of a stuck test run.
TIMEOUT_S = 120


@pytest.mark.slow
def test_quick_legendre_bench_writes_csv(tmp_path):
    out = tmp_path / "bench.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "sfrik_plugin.bench", "legendre", "--quick", "--csv", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "headline checks" in proc.stdout

    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    sizes = {int(r["n"]) for r in rows}
    assert sizes == set(legendre.QUICK_SIZES)
    for n in sizes:
        methods = [r["method"] for r in rows if int(r["n"]) == n]
        assert methods == list(legendre.METHODS)
    for r in rows:
        assert r["status"] == "ok", r
        for field in ("ms_median", "ms_min", "peak_extra_mib", "peak_extra_buffers"):
            value = float(r[field])
            assert math.isfinite(value) and value > 0, (field, r)
        assert float(r["grad_rel_err"]) < 1e-3, r
