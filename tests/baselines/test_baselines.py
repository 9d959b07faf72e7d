"""The baseline registry: every entry builds from the library it names, SIGReg and MMCR agree with
independent formulas (lightly's own LeJEPALoss; MMCR's singular values in closed form), the
library rules (a baseline only lightly has comes from lightly, and a missing library is named
before any work), and that adding an entry is all it takes for the demo, the study and the
benchmarks to offer it."""

import re

import pytest
import torch

from sfrik_plugin import baselines

lightly = pytest.importorskip("lightly", reason="the baselines come from lightly or solo-learn")


def views(n=32, q=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, q, generator=g, dtype=torch.float64)
    return z1, z1 + 0.3 * torch.randn(n, q, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", baselines.BASELINES)
def test_every_registered_baseline_builds_a_differentiable_loss(name):
    source, loss = baselines.baseline_loss(name, "lightly")
    assert source == "lightly"
    z1, z2 = (z.float().requires_grad_() for z in views())
    value = loss(z1, z2)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and z1.grad is not None and torch.isfinite(z1.grad).all()
    entry = baselines.BASELINES_REGISTRY[name]
    assert entry.tuned in entry.defaults and entry.ladder[0] > 0 and entry.ladder[1] > 1


def test_sigreg_is_lightlys_lejepa_loss_with_the_two_views_as_global_views():
    from lightly.loss import LeJEPALoss

    z1, z2 = views()
    _, ours = baselines.baseline_loss("sigreg", "lightly", lambda_param=0.2)
    stacked = torch.stack([z1, z2])
    torch.manual_seed(3)
    expected = LeJEPALoss(lambda_param=0.2)(local_proj=stacked, global_proj=stacked)  # duplicates change nothing
    torch.manual_seed(3)  # SIGReg draws its directions from the global generator
    assert ours(z1, z2).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"lambda_param must be in \[0, 1\]"):
        baselines.baseline_loss("sigreg", "lightly", lambda_param=2.0)


def test_mmcr_is_minus_the_centroid_nuclear_norm_plus_lambda_times_the_views_nuclear_norms():
    z1, z2 = views()
    lam = 0.3
    _, ours = baselines.baseline_loss("mmcr", "lightly", lmda=lam)
    u1, u2 = (z / z.norm(dim=1, keepdim=True) for z in (z1, z2))
    centroid = torch.linalg.svdvals((u1 + u2) / 2).sum()
    cos = (u1 * u2).sum(1)
    local = ((1 + cos).sqrt() + (1 - cos).sqrt()).sum()  # singular values of [u1; u2] for unit rows
    expected = -centroid + lam * local / len(z1)
    assert ours(z1, z2).item() == pytest.approx(expected.item(), rel=1e-9)


def test_mmcr_with_the_thin_svd_is_lightlys_mmcr_loss_value_and_gradient():
    from lightly.loss import MMCRLoss

    z1, z2 = (z.requires_grad_() for z in views(n=12, q=40))
    _, ours = baselines.baseline_loss("mmcr", "lightly", lmda=0.1)
    value = ours(z1, z2)
    g1, g2 = torch.autograd.grad(value, (z1, z2))
    u1, u2 = (torch.nn.functional.normalize(z, dim=1) for z in (z1, z2))
    expected = MMCRLoss(lmda=0.1)(u1.unsqueeze(1), u2.unsqueeze(1))  # lightly's own full SVDs
    e1, e2 = torch.autograd.grad(expected, (z1, z2))
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close((g1, g2), (e1, e2), rtol=1e-9, atol=1e-12)
    import lightly.loss.mmcr_loss as module

    assert module.svd is torch.linalg.svd  # restored after the call


def test_a_baseline_only_lightly_has_comes_from_lightly_and_a_missing_library_is_named(monkeypatch):
    assert baselines.source_library("sigreg", "solo-learn") == "lightly"
    assert baselines.source_library("vicreg", "solo-learn") == "solo-learn"
    with pytest.raises(ValueError, match="takes the hyper-parameters"):
        baselines.baseline_loss("mmcr", "lightly", temperature=0.1)
    solo_imports = baselines._imports("solo-learn")
    monkeypatch.setitem(baselines._MODULES, "lightly", "no_such_module_for_this_test")
    with pytest.raises(RuntimeError, match="the baselines come from 'lightly', which does not import"):
        baselines.require_library("lightly", ["mmcr"])
    if solo_imports:  # asked for solo-learn, MMCR still needs lightly, and the error says why
        with pytest.raises(RuntimeError, match=r"'lightly' \(mmcr come only from lightly\), which does not import"):
            baselines.require_library("solo-learn", ["sfrik", "vicreg", "mmcr"])
        baselines.require_library("solo-learn", ["sfrik", "vicreg"])  # nothing of lightly's asked for


def test_a_registered_baseline_reaches_the_demo_study_and_benchmarks(monkeypatch):
    from sfrik_experiments.bench import losses, step
    from sfrik_experiments.engine import objectives
    from sfrik_experiments.study import presets

    for name in baselines.BASELINES:
        assert name in objectives.METHODS and name in step.METHODS and name in losses.METHODS
        assert presets.PRESETS["smoke"].grids[name].parameter == baselines.BASELINES_REGISTRY[name].tuned
    assert set(baselines.baseline_losses("lightly")) == set(baselines.BASELINES)


@pytest.mark.parametrize(
    "error, says",
    [
        (
            ModuleNotFoundError("No module named 'lightly'", name="lightly"),
            "comes from lightly, which is not installed",
        ),
        (
            ImportError("cannot import name 'SIGReg' from 'lightly.loss'", name="lightly.loss"),
            "needs a name that lightly 1.6.0 does not provide (cannot import name 'SIGReg'",
        ),
    ],
)
def test_an_import_failure_names_what_is_really_missing(monkeypatch, error, says):

    def broken(params):
        raise error

    entry = baselines.BASELINES_REGISTRY["sigreg"]
    monkeypatch.setitem(entry.builders, "lightly", broken)
    monkeypatch.setattr(baselines.metadata, "version", lambda dist: "1.6.0")
    with pytest.raises(RuntimeError, match=re.escape(says)):
        baselines.baseline_loss("sigreg", "lightly")
