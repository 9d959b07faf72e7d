"""The README's figures recompute from the records they cite: the study's table and statements
(docs/study_fashion_mnist.csv), the quick demo's margins (docs/demo_quick_seed*.csv) and the loss
cost (docs/bench_losses_cpu_after.csv). A record that changes without its README line fails here."""

import csv
import re
from pathlib import Path

import pytest

pytest.importorskip("scipy", reason="the intervals need scipy")

from sfrik_plugin.study import stats

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NAMES = {"random": "random", "SFRIK": "sfrik", "SimCLR": "simclr", "AUH": "auh", "Barlow Twins": "barlow_twins"}
NAMES["VICReg"] = "vicreg"


def rows(name):
    with open(ROOT / "docs" / name, newline="") as f:
        return list(csv.DictReader(f))


def final(metric, method, q):
    return {
        int(r["seed"]): float(r[metric])
        for r in rows("study_fashion_mnist.csv")
        if r["phase"] == "final" and r["method"] == method and r["q"] == str(q)
    }


def test_the_study_table_recomputes_from_the_record():
    lines = README.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("| random | SFRIK |"))
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    cells = [c.strip() for c in lines[i + 2].strip("|").split("|")]
    assert len(header) == len(cells) == 6
    for label, cell in zip(header, cells):
        s = stats.summarise(list(final("linear_top1", NAMES[label], 1024).values()))
        assert s.n == 3 and cell == f"{s.mean:.2f} [{s.low:.2f}, {s.high:.2f}]", label


def test_the_studys_plain_reading_recomputes():
    sfrik = {k: final(k, "sfrik", 1024) for k in ("linear_top1", "knn_top1")}
    adjusted = {}
    for metric in sfrik:
        methods = ("vicreg", "barlow_twins", "simclr", "auh")
        seeds = sorted(sfrik[metric])
        ps = [
            stats.paired_t_p_value(
                stats.paired_difference([final(metric, m, 1024)[s] for s in seeds], [sfrik[metric][s] for s in seeds])
            )
            for m in methods
        ]
        adjusted[metric] = dict(zip(methods, stats.holm(ps)))
    assert min(adjusted["linear_top1"].values()) >= 0.05  # "on linear top-1 no difference survives"
    assert f"(Holm p = {adjusted['knn_top1']['auh']:.3f})" in README and adjusted["knn_top1"]["auh"] < 0.05
    assert all(p >= 0.05 for m, p in adjusted["knn_top1"].items() if m != "auh")
    sf, sc = final("linear_top1", "sfrik", 256), final("linear_top1", "simclr", 256)
    d = stats.paired_difference([sf[s] for s in sorted(sf)], [sc[s] for s in sorted(sf)])
    assert f"SFRIK − SimCLR = {d.mean:.2f} [{d.low:.2f}, {d.high:.2f}] points".replace("-", "−") in README


def test_the_quick_demos_test_margin_is_the_recorded_run():
    demo = rows("demo_quick_v3_seed0.csv")
    randoms = [float(r["linear_top1"]) for r in demo if r["method"] == "random"]
    (sfrik,) = [float(r["linear_top1"]) for r in demo if r["method"] == "sfrik"]
    floor = sum(randoms) / len(randoms)
    assert len(randoms) == 3 and f"SFRIK − the floor = +{sfrik - floor:.2f} points" in README
    assert f"({sfrik:.2f} against {floor:.2f} %;" in README
    (simclr,) = [float(r["linear_top1"]) for r in demo if r["method"] == "simclr"]
    assert simclr > sfrik and f"SimCLR ({simclr:.2f} %) is ahead of SFRIK" in " ".join(README.split())


def test_the_quick_demos_floor_statement_is_the_recorded_v3_sweep():
    text = " ".join(README.split())
    (chosen,) = [r for r in rows("demo_budget_v3.csv") if r["chosen"] == "True"]
    assert (chosen["epochs"], chosen["train_size"]) == ("3", "15000") and "chose 3 x 15,000" in text
    margins = ", ".join(chosen["margins"].split())
    assert f"(20 inits, {float(chosen['floor']):.2f} %) = {margins} points" in text
    assert f"with a predicted {100 * float(chosen['below_floor_chance']):.1f} % chance" in text
    shipped = next(r for r in rows("demo_budget_v3_sim16000.csv") if r["epochs"] == "3")
    low, high = min(shipped["margins"].split(), key=float), max(shipped["margins"].split(), key=float)
    assert f"gives {low} to {high} ({100 * float(shipped['below_floor_chance']):.1f} %)" in text
    randoms = [float(r["linear_top1"]) for r in rows("demo_budget_v2_runs.csv") if r["method"] == "random"]
    assert f"spans {min(randoms):.1f}-{max(randoms):.1f} % on the validation split" in text


def test_the_loss_cost_line_is_the_recorded_benchmark():
    cells = {
        (r["method"], r["q"]): r
        for r in rows("bench_losses_cpu_after.csv")
        if r["n"] == "2048" and r["device"] == "cpu"
    }
    sfrik, vicreg = cells["sfrik", "8192"], cells["vicreg", "8192"]
    expected = (
        f"takes {float(sfrik['ms_median']) / 1e3:.1f} s and {float(sfrik['peak_extra_mib']):.0f} MiB; "
        f"VICReg's takes {float(vicreg['ms_median']) / 1e3:.1f} s and {float(vicreg['peak_extra_mib']):.0f} MiB"
    )
    assert expected in " ".join(README.split()), expected
    assert re.search(r"needs ~34\.0 GiB", cells["vicreg", "32768"]["status"]) and "about 34 GiB" in README
    big = cells["sfrik", "32768"]
    line = f"SFRIK takes {float(big['ms_median']) / 1e3:.1f} s and {float(big['peak_extra_mib']) / 1024:.1f} GiB"
    assert line in " ".join(README.split()), line


def log_table(name: str, header: str) -> dict[str, list[str]]:
    """The rows (first cell -> cells) of the first table after the line starting with header in a
    recorded benchmark log (docs/gpu_h200/), as the suite printed it."""
    lines = (ROOT / "docs" / "gpu_h200" / name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    start = next(i for i in range(start, len(lines)) if lines[i].startswith("---"))  # the rule under the header
    table = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        table[cells[0]] = cells[1:]
    return table


def test_the_gpu_line_is_the_recorded_h200_run():
    text = " ".join(README.split())
    report = (ROOT / "docs" / "gpu_h200" / "report_2026-12-04.md").read_text()
    assert "every requires_cuda test, SFRIK_REQUIRE_CUDA=1: 295 passed, 0 failed" in report
    assert "all 295 CUDA tests pass" in text and "memcheck: no error (0 errors); racecheck: no error" in report
    losses = log_table("losses-none_2026-12-04.log", "n = 2048, q = 16384")
    sfrik, vicreg = losses["sfrik"], losses["vicreg"]  # source, ms, peak MiB, ...
    assert f"SFRIK loss takes {sfrik[1]} ms and {float(sfrik[2]):.0f} MiB" in text
    assert f"VICReg's {vicreg[1]} ms and {float(vicreg[2]):.0f} MiB" in text
    step = log_table("step_2026-12-04.log", "method ")
    none, sfrik, vicreg = step["none"], step["sfrik"], step["vicreg"]  # source, ms/step, min-max, IQR, overhead
    assert f"SFRIK adds {float(sfrik[4]):.2f} ms to {none[1]} ms; VICReg adds {float(vicreg[4]):.2f} ms" in text
