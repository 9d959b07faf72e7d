"""SFRIK and AUH as stable-pretraining methods (sfrik_plugin.hosts.stable_pretraining), in the host's
own environment (`make hosts`, .venv-hosts): training steps with its Module and Lightning's Trainer
on Fashion-MNIST, the loss against a float64 oracle, LeJEPA with SphereMMD in SIGReg's place, and
both examples run as documented. Skipped where stable-pretraining is absent (a failure with
SFRIK_REQUIRE_HOSTS=1); the HostError path is test_stable_pretraining_requirements.py's."""

import csv
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.hosts import fashion_mnist_folders, import_host_adapter
from helpers.processes import run_python
from helpers.references import scipy_series
from torch import nn

adapter = import_host_adapter("sfrik_plugin.hosts.stable_pretraining")

import lightning as pl
import stable_pretraining as spt
from stable_pretraining.data import transforms
from stable_pretraining.methods.lejepa import LeJEPA

from sfrik_plugin import SphereMMD, defaults
from sfrik_plugin.projector import build_projector

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "stable_pretraining"
DOCS, DOCUMENTED = ROOT / "docs" / "hosts.md", ".venv-hosts/bin/python examples/stable_pretraining/"
OPTIM = {"optimizer": {"type": "AdamW", "lr": 1e-3}, "scheduler": {"type": "ConstantLR"}, "interval": "step"}


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
    """20 training and 10 validation images of Fashion-MNIST, by the documented command."""
    return fashion_mnist_folders(tmp_path_factory.mktemp("fmnist"), train_per_class=2, val_per_class=1)


def tiny_backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def data_module(folder: Path) -> spt.data.DataModule:
    import torchvision

    normalize = transforms.ToImage(**spt.data.static.FashionMNIST)
    view = transforms.Compose(transforms.RGB(), transforms.RandomResizedCrop((16, 16)), normalize)
    val_view = transforms.Compose(transforms.RGB(), transforms.Resize((16, 16)), normalize)

    def loader(split, transform, train):
        dataset = spt.data.FromTorchDataset(
            torchvision.datasets.ImageFolder(str(folder / split)), names=["image", "label"], transform=transform
        )
        return torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=train, drop_last=train)

    return spt.data.DataModule(
        train=loader("train", transforms.MultiViewTransform([view, view]), True), val=loader("val", val_view, False)
    )


def fit_two_steps(module: spt.Module, folder: Path) -> dict:
    """Two training steps (the epoch: 20 images, batches of 8) and one validation batch; returns
    the logged metrics, after checking that the weights moved."""
    before = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    trainer.fit(module, datamodule=data_module(folder))
    assert trainer.global_step == 2
    after = module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "weight" in k)
    return {k: v.item() for k, v in trainer.callback_metrics.items()}


def check_logged(metrics: dict) -> None:
    for key in ("fit/loss", "fit/invariance", "fit/regulariser"):
        assert np.isfinite(metrics[key]), (key, metrics)


@pytest.mark.parametrize("method", ["sfrik", "auh"])
def test_the_forward_function_trains_with_the_trainer(method, fmnist):
    losses = {"sfrik": adapter.SFRIKLoss(), "auh": adapter.AUHLoss()}
    module = spt.Module(
        forward=getattr(adapter, method),
        backbone=tiny_backbone(),
        projector=build_projector(8, 32, 16),
        optim=OPTIM,
        **{f"{method}_loss": losses[method]},
    )
    check_logged(fit_two_steps(module, fmnist))


@pytest.mark.parametrize("method", ["SFRIK", "AUH"])
def test_the_method_class_trains_with_the_trainer(method, fmnist):
    model = getattr(adapter, method)(tiny_backbone(), projector_dims=(32, 32, 16))
    assert model.embed_dim == 8
    module = spt.Module(model=model, forward=adapter.method_forward, optim=OPTIM)
    check_logged(fit_two_steps(module, fmnist))


# ---------------------------------------------------------------------------------------------
# The loss against float64 formulas written here


def oracle(z1: torch.Tensor, z2: torch.Tensor, method: str) -> float:
    """SFRIK: 4000 mse(u1, u2) + mean over both views of (1/n^2) sum_ij psi(u_i.u_j), psi = sum_l b_l
    P_l(q; .) (scipy); AUH: 3000 mse(u1, u2) + mean of log mean_{i != j} exp(-2t(1 - u_i.u_j))."""
    u1, u2 = (z.detach().double().numpy() for z in (z1, z2))
    u1, u2 = (u / np.linalg.norm(u, axis=1, keepdims=True) for u in (u1, u2))
    n, q = u1.shape
    if method == "sfrik":
        reg = [scipy_series([0.0, *defaults.KERNEL_WEIGHTS], q, np.clip(u @ u.T, -1, 1)).mean() for u in (u1, u2)]
        return defaults.SFRIK_SIM_LOSS_WEIGHT * np.mean((u1 - u2) ** 2) + np.mean(reg)
    off = ~np.eye(n, dtype=bool)
    reg = [np.log(np.exp(-2 * defaults.AUH_T * (1 - u @ u.T))[off].mean()) for u in (u1, u2)]
    return defaults.AUH_SIM_LOSS_WEIGHT * np.mean((u1 - u2) ** 2) + np.mean(reg)


@pytest.mark.parametrize("method", ["sfrik", "auh"])
def test_both_forms_give_the_loss_of_the_formula(method):
    torch.manual_seed(0)
    model = {"sfrik": adapter.SFRIK, "auh": adapter.AUH}[method](tiny_backbone(), projector_dims=(32, 32, 16))
    module = spt.Module(
        forward=getattr(adapter, method),
        backbone=model.backbone,
        projector=model.projector,
        **{f"{method}_loss": getattr(model, f"{method}_loss")},
    )
    x1, x2, labels = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16), torch.arange(6)
    batch = {"views": [{"image": x1, "label": labels}, {"image": x2, "label": labels}]}
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer here to log to
        out = module(batch, stage="fit")
    output = model(x1, x2)
    z1, z2 = output.projection.chunk(2)
    expected = torch.tensor(oracle(z1, z2, method), dtype=torch.float32)
    torch.testing.assert_close(out["loss"], expected, rtol=2e-5, atol=1e-5)
    torch.testing.assert_close(output.loss, expected, rtol=2e-5, atol=1e-5)
    assert out["embedding"].shape == output.embedding.shape == (12, 8)
    assert out["label"].tolist() == labels.tolist() * 2

    module.eval()  # one view: the embedding only, as stable-pretraining's forward functions
    single = module({"image": x1, "label": labels}, stage="validate")
    assert set(single) == {"embedding", "label"} and single["embedding"].shape == (6, 8)


def test_bad_batches_and_settings_are_refused_with_their_names():
    module = spt.Module(forward=adapter.sfrik, backbone=tiny_backbone(), projector=build_projector(8, 16, 8))
    view = {"image": torch.randn(4, 3, 16, 16)}
    with pytest.raises(AttributeError, match=r"sfrik_loss must be a SFRIKLoss \(got NoneType\): spt.Module\("):
        module({"views": [view, view]}, stage="fit")
    with pytest.raises(AttributeError, match="model must be a SFRIK or AUH"):
        spt.Module(forward=adapter.method_forward)({"views": [view, view]}, stage="fit")
    module.sfrik_loss = adapter.SFRIKLoss()
    with pytest.raises(ValueError, match="exactly 2 views .* got 3"):
        module({"views": [view, view, view]}, stage="fit")
    with pytest.raises(ValueError, match=r"projector_dims must be \(hidden, hidden, output\)"):
        adapter.SFRIK(tiny_backbone(), projector_dims=(16, 32, 8))
    with pytest.raises(TypeError, match="encoder_name must be a timm model name or an nn.Module"):
        adapter.SFRIK(3)
    with pytest.raises(ValueError, match="pretrained=True loads timm weights"):
        adapter.SFRIK(tiny_backbone(), pretrained=True)
    with pytest.raises(ValueError, match="the backbone must return features"):
        adapter.SFRIK(nn.Conv2d(3, 4, 3), projector_dims=(8, 8, 8))
    with pytest.raises(ValueError, match="mmd_loss_weight"):  # the loss's own check, before the backbone
        adapter.SFRIK("no-such-timm-model", mmd_loss_weight=-1.0)


# ---------------------------------------------------------------------------------------------
# LeJEPA with SphereMMD in SIGReg's place


def test_lejepa_computes_its_loss_with_sphere_mmd_unchanged():
    all_projected = torch.randn(4, 10, 16)  # (views, batch, K)
    sigreg = SphereMMD()
    loss, inv, reg = LeJEPA._compute_loss(all_projected, 2, sigreg, 0.5)
    torch.testing.assert_close(reg, sigreg(all_projected.reshape(-1, 16)))
    torch.testing.assert_close(loss, inv + 0.5 * reg)
    # Why the helper ends the projector on the sphere: SphereMMD sees directions only, so on raw
    # projections shrinking them lowers the invariance at no cost.
    loss_small, inv_small, reg_small = LeJEPA._compute_loss(all_projected / 10, 2, sigreg, 0.5)
    torch.testing.assert_close(reg_small, reg)
    torch.testing.assert_close(inv_small, inv / 100)


def test_lejepa_with_sphere_mmd_trains_a_step():
    torch.manual_seed(0)
    model = adapter.lejepa_with_sphere_mmd("vit_tiny_patch16_224", drop_path_rate=0.0)
    assert isinstance(model.sigreg, SphereMMD) and model.sigreg.mmd.gather_distributed
    assert model.lamb == adapter.LEJEPA_SPHERE_LAMB
    global_views = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    local_views = [torch.randn(8, 3, 16, 16) for _ in range(2)]
    with torch.no_grad():  # the projections as LeJEPA.forward makes them (no dropout, batch statistics)
        features = torch.cat([model.backbone(torch.cat(global_views)), model.backbone(torch.cat(local_views))])
        projected = model.projector(features)
    torch.testing.assert_close(projected.norm(dim=1), torch.ones(len(projected)))  # on the sphere
    units = projected.double().numpy()
    expected_mmd = scipy_series([0.0, *defaults.KERNEL_WEIGHTS], units.shape[1], np.clip(units @ units.T, -1, 1)).mean()

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    output = model(global_views=global_views, local_views=local_views)
    expected_mmd = torch.tensor(expected_mmd, dtype=torch.float64)
    torch.testing.assert_close(output.sigreg_loss.double(), expected_mmd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(output.loss, output.inv_loss + model.lamb * output.sigreg_loss)
    output.loss.backward()
    optimizer.step()
    assert torch.isfinite(output.loss)
    assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) > len(before) // 2
    with pytest.raises(TypeError, match="remove \\['n_slices'\\]"):
        adapter.lejepa_with_sphere_mmd("vit_tiny_patch16_224", n_slices=256)


# ---------------------------------------------------------------------------------------------
# The examples, as documented (docs/hosts.md), at tiny sizes


def run_example(script: str, fmnist: Path, out: Path, *extra: str) -> dict[str, float]:
    """The example run with its command line in docs/hosts.md, then (argparse: the last value wins)
    this data, tiny sizes and `extra`; returns the last logged value of each metric
    (stable-pretraining's CSV in its run folder)."""
    (line,) = [line for line in DOCS.read_text().splitlines() if line.startswith(f"{DOCUMENTED}{script} ")]
    documented = shlex.split(line)[2:]
    run_python(
        EXAMPLES / script, *documented, "--data", fmnist, "--out", out, "--max-steps", "2", "--batch-size", "8",
        "--num-workers", "0", *extra, cwd=out.parent, set_env={"WANDB_MODE": "disabled"},
    )  # fmt: skip
    (metrics,) = out.glob("runs/*/*/*/metrics.csv")
    with metrics.open() as f:
        return {key: float(value) for row in csv.DictReader(f) for key, value in row.items() if value}


@pytest.mark.slow
def test_the_sfrik_example_runs(fmnist, tmp_path):
    metrics = run_example("sfrik_resnet18.py", fmnist, tmp_path / "out", "--image-size", "16", "--proj-dim", "32")
    for key in ("fit/loss_epoch", "fit/invariance_epoch", "fit/regulariser_epoch", "eval/knn_probe_top1"):
        assert np.isfinite(metrics[key]), (key, metrics)
    assert 0 <= metrics["eval/linear_probe_top1_epoch"] <= 1


@pytest.mark.slow
def test_the_lejepa_example_runs(fmnist, tmp_path):
    metrics = run_example("lejepa_sphere_mmd.py", fmnist, tmp_path / "out")
    for key in ("fit/loss_epoch", "fit/inv_epoch", "fit/sigreg_epoch", "eval/knn_probe_top1"):
        assert np.isfinite(metrics[key]), (key, metrics)
