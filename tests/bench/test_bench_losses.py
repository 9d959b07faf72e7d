"""The loss-cost suite's decisions: what it skips and why, and its cost model."""

import argparse
import csv

import pytest
import torch

from sfrik_experiments.bench import capacity, loss_methods, losses


def _args(**kw):
    return argparse.Namespace(**{"memory_fraction": 0.6, "max_seconds": 20.0, **kw})


def test_vicreg_at_q_32768_does_not_fit_24_gib(monkeypatch):
    monkeypatch.setattr(capacity, "available_bytes", lambda device: 24 * 2**30)
    reason = capacity.skip_reason("vicreg", 2048, 32768, _args(), torch.device("cpu"), torch.float32, rate=1e15)
    assert reason is not None and reason.startswith("does not fit: needs ~")
    # SFRIK's n x n matrices fit easily at the same n and q.
    assert capacity.skip_reason("sfrik", 2048, 32768, _args(), torch.device("cpu"), torch.float32, rate=1e15) is None


def test_slow_cells_are_skipped_with_the_predicted_time(monkeypatch):
    monkeypatch.setattr(capacity, "available_bytes", lambda device: 2**40)  # (it fits: only the time is judged)
    reason = capacity.skip_reason("vicreg", 2048, 16384, _args(), torch.device("cpu"), torch.float32, rate=1e11)
    assert reason is not None and reason.startswith("too slow here: ~") and "--max-seconds 20" in reason


def test_cost_model_ratio_is_n_over_q():
    for n, q in ((256, 1024), (2048, 32768)):
        sfrik, vicreg = capacity.predicted_flops("sfrik", n, q), capacity.predicted_flops("vicreg", n, q)
        assert abs(sfrik / vicreg - n / q) < 1e-12


def test_floor_step_is_the_two_gram_products():
    z = torch.randn(2, 5, 3, dtype=torch.float64)
    expected = (z[0] @ z[0].T).sum() + (z[1] @ z[1].T).sum()
    torch.testing.assert_close(loss_methods.floor_step(z), expected)
    torch.testing.assert_close(loss_methods.plain_floor_step(z), expected)
    # the floor keeps its full GEMMs (issue 32): the plain product's gradient, from an autograd.Function
    leaf = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss_methods.floor_step(leaf), leaf)
    (plain,) = torch.autograd.grad(loss_methods.plain_floor_step(leaf), leaf)
    torch.testing.assert_close(grad, plain)
    assert torch.autograd.gradcheck(lambda v: loss_methods._FullGram.apply(v), (z[0].clone().requires_grad_(),))


@pytest.mark.fresh_interpreter
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
    args = parser.parse_args(
        ["--device", "cpu", "--batches", "64", "--dims", "128", "256", "--lejepa-views", "--csv", str(path)]
    )
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


def test_lejepa_rows_time_both_regularisers_on_the_same_views():
    from sfrik_experiments.bench import lejepa
    from sfrik_plugin.hosts.lightly import SphereMMDLeJEPALoss

    built = lejepa.build_losses()
    assert set(built) == set(lejepa.SUITE_METHODS)
    leaf = lejepa.views_leaf(4, 16, 8, torch.float32, torch.device("cpu"))
    expected = SphereMMDLeJEPALoss()(local_proj=leaf[2:], global_proj=leaf[:2])
    torch.testing.assert_close(built["lejepa_sphere_mmd"][1](leaf), expected)
    args = argparse.Namespace(dtype="float32", repeats=2)
    rows = lejepa.run_cell(16, 8, 4, built, args, torch.device("cpu"), torch.float32, lambda m: None)
    assert [(r["method"], r["views"], r["status"]) for r in rows] == [
        ("lejepa_sigreg", 4, "ok"),
        ("lejepa_sphere_mmd", 4, "ok"),
    ]
    assert rows[0]["time_vs_sigreg"] == 1.0
    assert rows[1]["time_vs_sigreg"] == rows[1]["ms_median"] / rows[0]["ms_median"]
    skipped = lejepa.run_cell(16, 8, 4, built, args, torch.device("cpu"), torch.float32, lambda m: "too slow here")
    assert all(r["status"] == "too slow here" and "ms_median" not in r for r in skipped)


def test_lejepa_losses_are_built_on_the_views_device():
    # lightly's SIGReg keeps its knots in a CPU buffer: the GPU check (H100, 2026-12-06) stopped on
    # "found at least two devices, cuda:0 and cpu". The meta device stands in for CUDA here.
    from sfrik_experiments.bench import lejepa

    views = torch.randn(4, 16, 8, device="meta", requires_grad=True)
    for name, (_, loss) in lejepa.build_losses(torch.device("meta")).items():
        assert loss(views).device.type == "meta", name


def test_lejepa_cost_model_sphere_mmd_is_quadratic_in_n_sigreg_linear():
    from sfrik_experiments.bench import lejepa

    for method, power in (("lejepa_sphere_mmd", 2), ("lejepa_sigreg", 1)):
        ratio = lejepa.predicted_flops(method, 8, 2048, 1024) / lejepa.predicted_flops(method, 8, 1024, 1024)
        assert ratio == pytest.approx(2**power)


@pytest.mark.fresh_interpreter
def test_lejepa_views_below_two_are_refused(tmp_path):
    from helpers.processes import run_python

    proc = run_python("-m", "sfrik_experiments.bench", "losses", "--quick", "--lejepa-views", "1", check=False)
    assert proc.returncode != 0 and "--lejepa-views takes numbers of views >= 2" in proc.stderr


def test_the_plot_draws_each_method_in_its_own_colour(monkeypatch, tmp_path):
    # the registry holds more methods than matplotlib's 10 cycle colours: AUH once came out in
    # SFRIK's blue (colour C10 is C0)
    pytest.importorskip("matplotlib")
    drawn = {}
    monkeypatch.setattr(losses.output, "save_figure", lambda fig, path: drawn.setdefault("fig", fig))
    rows = [
        dict(method=m, n=2048, q=q, status="ok", ms_median=float(i + 1), peak_extra_mib=float(i + 1))
        for i, m in enumerate(losses.METHODS)
        for q in (1024, 8192)
    ]
    losses.plot(rows, str(tmp_path / "p.png"), "t")
    lines = drawn["fig"].axes[0].get_lines()
    assert len(lines) == len(losses.METHODS) > 10
    from matplotlib.colors import to_rgba

    assert len({to_rgba(line.get_color()) for line in lines}) == len(lines)
