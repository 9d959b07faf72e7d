"""Smoke test of the benchmark command line: `python -m sfrik_experiments.bench legendre --quick`
runs end to end and writes one finite, positive row per method. Timings are not judged."""

import csv
import math

import pytest
from helpers.bandwidth import PASSES
from helpers.processes import run_python

from sfrik_experiments.bench import legendre

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles

# --quick is n in {256, 512}, L = 3: 15-25 s per suite on 2 quiet CPU cores, most of it
# torch.compile, and several times that when the cores are shared (120 s was exceeded then). The
# timeout turns a hang into a failure instead of a stuck test run; it is not a timing.
TIMEOUT_S = 600


def run_suite(out, *args: str) -> tuple[str, list[dict]]:
    """`python -m sfrik_experiments.bench ARGS --csv out`, which must succeed: its stdout and the CSV rows."""
    proc = run_python("-m", "sfrik_experiments.bench", *args, "--csv", out, timeout=TIMEOUT_S)
    with open(out, newline="") as f:
        return proc.stdout, list(csv.DictReader(f))


@pytest.mark.slow
def test_quick_legendre_bench_writes_csv(tmp_path):
    stdout, rows = run_suite(tmp_path / "bench.csv", "legendre", "--quick")
    assert "headline checks" in stdout
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


@pytest.mark.slow
def test_quick_losses_bench_writes_csv(tmp_path):
    from sfrik_experiments.bench import lejepa, losses
    from sfrik_plugin.baselines import baseline_losses

    stdout, rows = run_suite(tmp_path / "losses.csv", "losses", "--quick")
    assert "SFRIK loss / its floor" in stdout
    assert {(int(r["n"]), int(r["q"])) for r in rows} == {
        (n, q) for n in losses.QUICK_BATCHES for q in losses.QUICK_DIMS
    }
    baselines = baseline_losses()
    lejepa_rows = [r for r in rows if r["method"].startswith("lejepa_")]
    assert {(r["method"], int(r["views"])) for r in lejepa_rows} == {
        (m, v) for m in lejepa.SUITE_METHODS for v in lejepa.DEFAULT_VIEWS
    }
    assert "LeJEPA, V = 8 views" in stdout
    for r in lejepa_rows:
        assert r["status"] == "ok", r
        assert float(r["ms_median"]) > 0 and float(r["peak_extra_mib"]) > 0, r
        assert float(r["time_vs_sigreg"]) > 0, r
    for r in rows:
        if r["method"].startswith("lejepa_"):
            continue
        if r["method"].startswith("sfrik") or r["method"] == "auh" or r["method"] in baselines:
            assert r["status"] == "ok", r
            assert float(r["ms_median"]) > 0 and float(r["peak_extra_mib"]) > 0, r
        else:  # no library provides it here: said so, not replaced by a home-made copy
            assert r["status"].startswith("skipped: neither solo-learn nor lightly"), r
        if r["method"].startswith("sfrik"):
            assert abs(float(r["model_time_vs_vicreg"]) - int(r["n"]) / int(r["q"])) < 1e-12


@pytest.mark.slow
def test_quick_tiled_bench_writes_csv(tmp_path):
    from sfrik_experiments.bench import tiled

    stdout, rows = run_suite(tmp_path / "tiled.csv", "tiled", "--quick", "--loss", "--tiles", "64")
    assert "tiled fwd+bwd ran in" in stdout
    cells = {(int(r["n"]), int(r["q"])) for r in rows if r["what"] == "mmd_uniform"}
    assert cells == {(n, q) for n in tiled.QUICK_BATCHES for q in tiled.QUICK_DIMS} | {tiled.QUICK_LARGE}
    assert {r["what"] for r in rows} == {"mmd_uniform", "sfrik_loss", "tile sweep"}
    for r in rows:
        assert r["status"] == "ok", r
        for field in ("forward_ms", "forward_backward_ms", "peak_extra_mib"):
            value = float(r[field])
            assert math.isfinite(value) and value > 0, (field, r)


@pytest.mark.slow
def test_quick_sharded_bench_writes_csv(tmp_path):
    from sfrik_experiments.bench import sharded

    _, rows = run_suite(tmp_path / "sharded.csv", "sharded", "--quick", "--device", "cpu", "--threads", "1")
    assert [r["variant"] for r in rows] == list(sharded.VARIANTS)
    for r in rows:
        assert int(r["world_size"]) == 2 and float(r["ms_median"]) > 0 and float(r["peak_extra_mib"]) > 0, r
    assert all(float(r["gathered_over_sharded"]) > 0 for r in rows if r["variant"].startswith("sharded"))


@pytest.mark.slow
def test_quick_precision_bench_writes_csv(tmp_path):
    from sfrik_experiments.bench import precision

    _, rows = run_suite(tmp_path / "precision.csv", "precision", "--quick")
    assert len(rows) == len(precision.QUICK_DIMS) * len(precision.EMBEDDINGS) * len(precision.PRECISIONS)
    err = {(r["q"], r["embeddings"], r["precision"]): float(r["grad_rel_err_fro"]) for r in rows}
    for q in precision.QUICK_DIMS:
        for kind in precision.EMBEDDINGS:
            # float32 ~1e-7, 10-bit roundings ~1e-4, bfloat16's 7 bits ~1e-3: ordered as the mantissas
            assert err[(str(q), kind, "float32")] < 1e-5 < err[(str(q), kind, "tf32")] < err[(str(q), kind, "bf16")]


# The training-step suite at toy sizes: a two-block convnet, 2 x 8 images of 32 px, q = 64.
STEP_TOY = ("--device", "cpu", "--backbone", "tiny", "--batch", "8", "--image-size", "32", "--dims", "64")
STEP_TOY += ("--hidden", "64", "--steps", "3", "--warmup", "1")


def test_step_bench_times_every_method_against_the_step_without_a_loss(tmp_path):
    from sfrik_experiments.bench import step
    from sfrik_plugin.baselines import baseline_losses

    stdout, rows = run_suite(tmp_path / "step.csv", "step", *STEP_TOY)
    assert "loss overhead, ms a step over 'none'" in stdout
    assert [r["method"] for r in rows] == list(step.METHODS)
    by = {r["method"]: r for r in rows}
    none_ms = float(by["none"]["ms_median"])
    baselines = baseline_losses()
    for r in rows:
        if r["method"] not in ("none", "sfrik") and r["method"] not in baselines:
            assert r["status"].startswith("skipped: neither solo-learn nor lightly"), r
            continue
        assert r["status"] == "ok", r
        spread = [float(r[k]) for k in ("ms_min", "ms_q1", "ms_median", "ms_q3", "ms_max")]
        assert 0 < spread[0] and spread == sorted(spread), r
        assert int(r["steps"]) == 3 and (int(r["n"]), int(r["q"])) == (8, 64), r
        assert float(r["overhead_ms"]) == pytest.approx(float(r["ms_median"]) - none_ms, rel=0, abs=1e-9), r
        assert float(r["step_vs_none"]) == pytest.approx(float(r["ms_median"]) / none_ms), r
        assert float(r["peak_extra_mib"]) > 0 and r["peak_mib"] == "", r  # the CPU has no absolute peak
        assert math.isfinite(float(r["loss"])), r
    assert float(by["none"]["loss"]) == 0.0 and float(by["sfrik"]["loss"]) > 0


def test_bandwidth_bench_measures_every_op_beside_a_copy(tmp_path):
    from sfrik_experiments.bench import bandwidth

    n = 256
    stdout, rows = run_suite(tmp_path / "bw.csv", "bandwidth", "--device", "cpu", "--n", str(n), "--repeats", "2")
    assert "applies on a GPU" in stdout
    assert [(r["dtype"], r["op"]) for r in rows] == [(d, op) for d in ("float32", "bfloat16") for op in bandwidth.OPS]
    passes = {r["op"]: int(r["passes"]) for r in rows}
    assert passes == PASSES
    assert not any("fallback" in line for line in stdout.splitlines() if "PASS" in line or "FAIL" in line)
    for r in rows:
        assert r["status"] == "ok", r
        element = {"float32": 4, "bfloat16": 2}[r["dtype"]]
        assert int(r["bytes_moved"]) == int(r["passes"]) * n * n * element
        gb_per_s = int(r["bytes_moved"]) / (float(r["ms_median"]) / 1e3) / 1e9
        assert float(r["gb_per_s"]) == pytest.approx(gb_per_s)
        copy = next(float(c["gb_per_s"]) for c in rows if c["dtype"] == r["dtype"] and c["op"] == "device copy")
        assert float(r["fraction_of_copy"]) == pytest.approx(gb_per_s / copy)
        assert r["peak_gb_per_s"] == "" and r["fraction_of_peak"] == ""  # no theoretical peak on a CPU


def test_tile_sweep_alone_names_the_tile_with_the_best_score(tmp_path):
    cells = ("--sweep-cell", "300", "32", "--sweep-cell", "500", "32")
    args = ("tiled", "--sweep-only", "--tiles", "64", "128", "400", *cells, "--repeats", "1", "--device", "cpu")
    stdout, rows = run_suite(tmp_path / "tiles.csv", *args)
    assert {r["what"] for r in rows} == {"tile sweep"}
    assert sorted((int(r["n"]), int(r["tile"])) for r in rows) == [
        (300, 64),
        (300, 128),
        (500, 64),
        (500, 128),
        (500, 400),
    ]
    fastest = {n: min(float(r["forward_backward_ms"]) for r in rows if r["n"] == n) for n in ("300", "500")}
    scores = {}
    for tile in (64, 128):  # 400 does not fit the 300-row cell: not ranked
        own = [r for r in rows if int(r["tile"]) == tile]
        scores[tile] = sum(float(r["forward_backward_ms"]) / fastest[r["n"]] for r in own)
        assert all(float(r["sweep_score"]) == pytest.approx(scores[tile]) for r in own)
    assert all(r["sweep_score"] == "" for r in rows if r["tile"] == "400")
    assert f"best tile {min(scores, key=scores.__getitem__)} " in stdout
