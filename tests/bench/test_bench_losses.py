"""The loss-cost suite's decisions: what it skips and why, and its cost model."""

import argparse
import csv

import pytest
import torch

from sfrik_plugin.bench import losses


def _args(**kw):
    return argparse.Namespace(**{"memory_fraction": 0.6, "max_seconds": 20.0, **kw})


def test_vicreg_at_q_32768_does_not_fit_24_gib(monkeypatch):
    monkeypatch.setattr(losses, "available_bytes", lambda device: 24 * 2**30)
    reason = losses.skip_reason("vicreg", 2048, 32768, _args(), torch.device("cpu"), torch.float32, rate=1e15)
    assert reason is not None and reason.startswith("does not fit: needs ~")
    # SFRIK's n x n matrices fit easily at the same n and q.
    assert losses.skip_reason("sfrik", 2048, 32768, _args(), torch.device("cpu"), torch.float32, rate=1e15) is None


def test_slow_cells_are_skipped_with_the_predicted_time(monkeypatch):
    monkeypatch.setattr(losses, "available_bytes", lambda device: 2**40)  # (it fits: only the time is judged)
    reason = losses.skip_reason("vicreg", 2048, 16384, _args(), torch.device("cpu"), torch.float32, rate=1e11)
    assert reason is not None and reason.startswith("too slow here: ~") and "--max-seconds 20" in reason


def test_cost_model_ratio_is_n_over_q():
    for n, q in ((256, 1024), (2048, 32768)):
        sfrik, vicreg = losses.predicted_flops("sfrik", n, q), losses.predicted_flops("vicreg", n, q)
        assert abs(sfrik / vicreg - n / q) < 1e-12


def test_floor_step_is_the_two_gram_products():
    z = torch.randn(2, 5, 3, dtype=torch.float64)
    expected = (z[0] @ z[0].T).sum() + (z[1] @ z[1].T).sum()
    torch.testing.assert_close(losses.floor_step(z), expected)
    torch.testing.assert_close(losses.plain_floor_step(z), expected)
    # the floor keeps its full GEMMs (issue 32): the plain product's gradient, from an autograd.Function
    leaf = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(losses.floor_step(leaf), leaf)
    (plain,) = torch.autograd.grad(losses.plain_floor_step(leaf), leaf)
    torch.testing.assert_close(grad, plain)
    assert torch.autograd.gradcheck(lambda v: losses._FullGram.apply(v), (z[0].clone().requires_grad_(),))


def test_the_csv_holds_every_finished_cell_when_a_later_one_is_stopped(tmp_path, monkeypatch):
    # The GPU check stops a suite at its time limit: the cells finished by then must be on disk.
    calls = []

    def one_cell(n, q, *rest):
        calls.append(q)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what the GPU check's SIGINT raises
        return [{"n": n, "q": q, "method": "sfrik", "source": "sfrik_plugin", "status": "skipped: a test cell"}]

    monkeypatch.setattr(losses, "run_cell", one_cell)
    monkeypatch.setattr(losses, "matmul_flops_per_second", lambda *a: 1e9)
    path = tmp_path / "losses.csv"
    parser = argparse.ArgumentParser()
    losses.add_arguments(parser)
    args = parser.parse_args(["--device", "cpu", "--batches", "64", "--dims", "128", "256", "--csv", str(path)])
    with pytest.raises(KeyboardInterrupt):
        losses.run(args)
    rows = list(csv.DictReader(path.open()))
    assert [(r["q"], r["method"]) for r in rows] == [("128", "sfrik")]


def test_slow_methods_get_their_own_fewer_runs(monkeypatch):
    # A method whose warm-up run took longer than --slow-seconds (MMCR's 0.8 s calls on a GPU) runs
    # --slow-repeats times after the others' round robin; the others keep --repeats.
    warm = {"sfrik": 0.01, "_floor": 0.01, "mmcr": 0.8}
    monkeypatch.setattr(losses.common, "first_call_seconds", lambda step, leaf: warm[step.name])
    calls: list[str] = []

    def step(name):
        def run(z):
            calls.append(name)
            return (z * 1.0).sum()

        run.name = name
        return run

    leaf = torch.zeros(2, 3, 4, requires_grad=True)
    steps = {name: step(name) for name in warm}
    times = losses.time_cell(steps, leaf, 5, _args(slow_repeats=1, slow_seconds=0.25))
    assert {name: len(t) for name, t in times.items()} == {"sfrik": 5, "_floor": 5, "mmcr": 1}
    assert calls[-1] == "mmcr" and calls.count("mmcr") == 1  # after the others
    calls.clear()
    times = losses.time_cell(steps, leaf, 5, _args(slow_repeats=None, slow_seconds=0.25))
    assert {name: len(t) for name, t in times.items()} == {"sfrik": 5, "_floor": 5, "mmcr": 5}
