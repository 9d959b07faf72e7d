"""The loss-cost suite's decisions: what it skips and why, and its cost model."""

import argparse

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


def test_slow_cells_are_skipped_with_the_predicted_time():
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
