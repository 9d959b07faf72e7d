"""The training-step suite's parts (sfrik-bench step), the bandwidth suite's op table and the tile
sweep's ranking, on small inputs in this process."""

import argparse

import pytest
import torch
from helpers.bandwidth import PASSES

from sfrik_experiments.bench import bandwidth, step, step_timing, tiled
from sfrik_experiments.bench.cli import main
from sfrik_plugin.tiled import DEFAULT_TILE_SIZE


def _args(**given):
    names = ("backbone", "hidden", "batch", "image_size", "dims", "autocast", "steps", "warmup")
    return argparse.Namespace(**{name: given.get(name) for name in names})


def test_unset_options_take_the_devices_defaults():
    assert step.resolve_setting(_args(), torch.device("cuda")) == step.DEFAULTS["cuda"]
    setting = step.resolve_setting(_args(batch=8, dims=[64]), torch.device("cpu"))
    assert (setting.batch, setting.dims, setting.backbone) == (8, (64,), step.DEFAULTS["cpu"].backbone)


def test_batch_of_one_image_is_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        main(["step", "--batch", "1"])
    assert "--batch" in capsys.readouterr().err


def test_the_step_without_a_loss_still_runs_backward_through_the_whole_network():
    torch.manual_seed(0)
    model = torch.nn.Sequential(step.tiny_convnet(), torch.nn.Linear(step.TINY_FEATURES, 8))
    x = torch.randn(4, 3, 16, 16)
    loss = step.none_loss(model(x), model(x + 1))
    loss.backward()
    first = model[0][0].weight.grad
    assert loss.item() == 0.0 and first is not None and torch.count_nonzero(first) == 0


def test_methods_take_turns_and_only_the_rounds_after_the_warm_up_are_timed():
    calls = []

    def make(name):
        def run():
            calls.append(name)
            return torch.zeros(())

        return run

    steps = {name: make(name) for name in ("a", "b", "c")}
    records = step_timing.run_rounds(steps, lambda: None, torch.device("cpu"), warmup=2, count=3, label="test")
    assert calls == ["a", "b", "c"] * 5
    assert all(len(r.times) == 3 and r.failure is None for r in records.values())


def test_a_method_out_of_memory_is_dropped_and_the_others_go_on():
    def oom():
        raise torch.cuda.OutOfMemoryError("simulated")

    steps = {"none": lambda: torch.zeros(()), "big": oom}
    records = step_timing.run_rounds(steps, lambda: None, torch.device("cpu"), warmup=1, count=2, label="test")
    assert records["big"].failure == "out of memory (round 1)" and not records["big"].times
    assert len(records["none"].times) == 2


def test_overheads_are_differences_to_the_step_without_a_loss():
    Record = step_timing.Record
    records = {"none": Record(times=[10.0, 12.0, 11.0]), "sfrik": Record(times=[13.0, 12.5, 16.0])}
    rows = [
        {"method": m, "status": "ok", "ms_median": step_timing.common.median(r.times), "peak_extra_mib": mib}
        for (m, r), mib in zip(records.items(), (100.0, 130.0))
    ]
    rows.append({"method": "simclr", "status": "skipped: neither solo-learn nor lightly is installed"})
    step_timing.add_overheads(rows, records)
    none, sfrik, simclr = rows
    assert none["overhead_ms"] == 0 and none["memory_overhead_mib"] == 0
    assert sfrik["overhead_ms"] == 13.0 - 11.0 and sfrik["step_vs_none"] == 13.0 / 11.0
    assert sfrik["overhead_paired_ms"] == 3.0  # median of 3.0, 0.5, 5.0: the rounds paired
    assert sfrik["memory_overhead_mib"] == 30.0
    assert "overhead_ms" not in simclr


@pytest.mark.fresh_interpreter
def test_bandwidth_ops_and_the_passes_they_make():
    g = torch.rand(8, 8) * 2 - 1
    calls = bandwidth.operator_calls(g, 64)
    assert {name: passes for name, (_, passes) in calls.items()} == PASSES
    value, grad = calls["value_and_grad"][0]()  # the fused op: the forward's value and the backward's G-sized result
    torch.testing.assert_close(value, calls["forward"][0]())
    assert grad.shape == g.shape
    # the fallback's rows compute what the operator's do
    torch.testing.assert_close(calls["fallback forward"][0](), calls["forward"][0](), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(calls["fallback backward"][0](), calls["backward"][0](), rtol=1e-5, atol=1e-4)


def _sweep_row(n, tile, ms):
    return {"n": n, "q": 32, "tile": tile, "forward_backward_ms": ms}


def test_the_best_tile_is_the_lowest_sum_of_times_relative_to_each_cells_fastest():
    rows = [_sweep_row(300, 64, 2.0), _sweep_row(300, 128, 1.0), _sweep_row(900, 64, 3.0), _sweep_row(900, 128, 4.0)]
    rows.append(_sweep_row(900, 512, 3.5))  # not in the 300-row cell: not ranked
    tiled.add_sweep_scores(rows)
    # tile 64: 2/1 + 3/3; tile 128: 1/1 + 4/3
    assert [r.get("sweep_score") for r in rows] == [3.0, 1 + 4 / 3, 3.0, 1 + 4 / 3, None]
    line = tiled.best_tile_line(rows, torch.device("cpu"))
    assert line.startswith("best tile 128 ")
    current = DEFAULT_TILE_SIZE["cpu"]
    assert line.endswith("the default already" if current == 128 else f"= 128 (now {current})")


def test_the_sweep_alone_needs_tiles():
    with pytest.raises(SystemExit, match="--tiles"):
        main(["tiled", "--sweep-only", "--device", "cpu"])
