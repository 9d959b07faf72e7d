"""Every entry of the two registries reaches every part of the project that lists baselines or
kernels: the objectives, the study's plan and report (the smoke preset, which takes every entry;
the recorded presets keep the methods they ran), the benchmarks (method lists, cost model, help
texts) and the GPU check. Each consumer is asked for its own output (its grid, its help
text, its report, its method list), so that a consumer with a list of its own that leaves an entry
out fails here: adding a baseline or a kernel is its entry and its test (CONTRIBUTING.md)."""

import math

import pytest
from helpers.gpu_check import SCRIPT, gpu_check_module

from sfrik_plugin.baselines import BASELINES_REGISTRY
from sfrik_plugin.kernels import KERNELS

BASELINE_NAMES = list(BASELINES_REGISTRY)
KERNEL_NAMES = list(KERNELS)


def _suite_help(suite: str) -> str:
    from sfrik_experiments.bench.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "suite")
    return subparsers.choices[suite].format_help()


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_a_baseline_reaches_the_objectives_and_the_benchmarks(name):
    from sfrik_experiments.bench import capacity, losses, step
    from sfrik_experiments.engine.objectives import ALL_METHODS

    entry = BASELINES_REGISTRY[name]
    assert name in ALL_METHODS
    assert name in losses.METHODS and name in step.METHODS
    for n, q in ((256, 1024), (2048, 32768)):
        assert capacity.predicted_flops(name, n, q) == entry.cost.flops(n, q) > 0
        assert capacity.predicted_bytes(name, n, q, 4) == entry.cost.bytes(n, q, 4) > 0
    for suite in ("losses", "step"):
        text = " ".join(_suite_help(suite).split())
        assert f"{name} {entry.title} ({entry.reference})" in text, suite


@pytest.mark.skipif(not SCRIPT.is_file(), reason="not run from a checkout")
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_a_baseline_reaches_the_gpu_check(name):
    module = gpu_check_module()
    assert name in module.loss_methods("none")
    assert (name in module.loss_methods("bf16")) == BASELINES_REGISTRY[name].autocast


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_a_kernel_reaches_the_objectives(name):
    import torch

    from sfrik_experiments.engine.objectives import ALL_METHODS, build_objective

    entry = KERNELS[name]
    assert f"mmd_{name}" in ALL_METHODS
    _, loss = build_objective(f"mmd_{name}", mmd_loss_weight=1.0)
    assert isinstance(loss.kernel, entry.cls) and getattr(loss.kernel, entry.parameter) == entry.default
    assert torch.isfinite(loss(torch.randn(8, 4), torch.randn(8, 4)))
    # the tests' oracle is defined where the derivative exists
    k, dk = entry.reference(__import__("numpy").array([-1.0, 0.0, 0.5]), entry.default)
    assert all(math.isfinite(v) for v in (*k, *dk))


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    """The study's plan run to its end on the smoke preset with synthetic scores, and its report."""
    pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
    pytest.importorskip("scipy", reason="the study's intervals need scipy")
    from helpers.study import fake_row, run_plan

    from sfrik_experiments.study import presets, report

    preset = presets.PRESETS["smoke"]
    rows = run_plan(
        preset,
        lambda spec: 80.0 + (spec.seed % 3) + 0.1 * len(spec.method),
        row=lambda spec, value: fake_row(
            spec, value, train_minutes=1.0, sec_per_step=0.3, wall_s=60.0, library="lightly"
        ),
    )
    out = tmp_path_factory.mktemp("smoke-report")
    return preset, rows, report.write(out, preset, rows)


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_a_baseline_reaches_the_study(name, smoke_report):
    from sfrik_experiments.study import presets

    preset, rows, text = smoke_report
    entry = BASELINES_REGISTRY[name]
    assert preset.grids[name] == presets.Grid(entry.tuned, presets.Ladder(*entry.ladder))
    assert {r["phase"] for r in rows if r["method"] == name} >= {"tune", "final"}
    assert f"| {name} |" in text or f"| {name} " in text


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_a_kernel_reaches_the_study(name, smoke_report):
    from sfrik_experiments.study import presets

    preset, rows, text = smoke_report
    entry = KERNELS[name]
    expected = presets.Grid("mmd_loss_weight", presets.Ladder(*entry.ladder), ((entry.parameter, entry.default),))
    assert preset.ablation_grids[f"mmd_{name}"] == expected
    assert any(r["method"] == f"mmd_{name}" and r["phase"] == "ablation" for r in rows)
    assert entry.label in text and entry.title in text


def test_the_recorded_presets_keep_the_methods_they_ran():
    """The recorded study's presets list their baselines and kernels (a later entry would change the
    runs its record regenerates from); each is still read from its registry entry."""
    from sfrik_experiments.study import presets

    for name in ("full", "v3"):
        preset = presets.PRESETS[name]
        assert tuple(preset.grids) == ("sfrik", "auh", *presets.RECORDED_BASELINES)
        assert tuple(preset.ablation_grids) == tuple(f"mmd_{k}" for k in presets.RECORDED_KERNELS)
        for baseline in presets.RECORDED_BASELINES:
            entry = BASELINES_REGISTRY[baseline]
            assert preset.grids[baseline] == presets.Grid(entry.tuned, presets.Ladder(*entry.ladder))
