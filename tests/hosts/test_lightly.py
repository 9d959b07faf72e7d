"""SFRIK in lightly (sfrik_plugin.hosts.lightly, .lightly_benchmark, examples/lightly): the losses
against a float64 scipy reference and against the solo-learn method's on the same batch, LeJEPA's
loss with SphereMMD as a drop-in for SIGReg, a few Lightning steps with lightly's transforms on
real Fashion-MNIST (the examples as documented, the benchmark module as lightly's harness calls
it), and the harness itself where a lightly checkout is given (LIGHTLY_REPO_DIR)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.images import fashion_mnist_folders
from helpers.processes import failure, run_python
from helpers.references import scipy_legendre

from sfrik_plugin import SFRIKLoss as LibrarySFRIKLoss
from sfrik_plugin import SphereMMD
from sfrik_plugin.hosts import lightly_benchmark
from sfrik_plugin.hosts.lightly import AUHLoss, SFRIKLoss, SphereMMDLeJEPALoss

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "lightly"


def reference_mmd(z: np.ndarray, b: tuple[float, ...]) -> float:
    """(1/n^2) sum_ij sum_l b_l P_l(q; u_i . u_j) in float64, from scipy's Gegenbauer polynomials."""
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    gram = np.clip(u @ u.T, -1.0, 1.0)
    q = z.shape[1]
    return float(sum(bl * scipy_legendre(l, q, gram) for l, bl in enumerate(b, start=1)).mean())


def reference_sfrik(za: np.ndarray, zb: np.ndarray, sim: float, mmd: float, b: tuple[float, ...]) -> float:
    ua = za / np.linalg.norm(za, axis=1, keepdims=True)
    ub = zb / np.linalg.norm(zb, axis=1, keepdims=True)
    return sim * float(((ua - ub) ** 2).mean()) + mmd * (reference_mmd(za, b) + reference_mmd(zb, b)) / 2


@pytest.fixture(scope="module")
def fashion_mnist(tmp_path_factory) -> Path:
    return fashion_mnist_folders(tmp_path_factory.mktemp("fmnist"))


@pytest.mark.parametrize("q", [3, 16, 128])
def test_sfrik_loss_is_the_papers_formula(q):
    g = torch.Generator().manual_seed(q)
    za, zb = torch.randn(24, q, generator=g, dtype=torch.float64), torch.randn(24, q, generator=g, dtype=torch.float64)
    b = (1.0, 40.0, 40.0)
    loss = SFRIKLoss(sim_loss_weight=50.0, mmd_loss_weight=2.0, kernel_weights=b)(z_a=za, z_b=zb)
    assert float(loss) == pytest.approx(reference_sfrik(za.numpy(), zb.numpy(), 50.0, 2.0, b), rel=1e-10)


def test_lightly_losses_follow_lightlys_conventions():
    # lightly's losses take (z_a, z_b) and gather nothing unless asked; the library's own default is True
    for cls in (SFRIKLoss, AUHLoss):
        signature = inspect.signature(cls.forward)
        assert list(signature.parameters)[1:] == ["z_a", "z_b"]
        assert cls().gather_distributed is False
        assert cls(gather_distributed=True).gather_distributed is True
    za, zb = torch.randn(16, 32), torch.randn(16, 32)
    assert torch.equal(SFRIKLoss()(za, zb), LibrarySFRIKLoss()(za, zb))
    with pytest.raises(ValueError, match="mmd_loss_weight"):
        SFRIKLoss(mmd_loss_weight=-1.0)


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_lightly_loss_equals_the_solo_learn_methods_on_the_same_batch(tmp_path):
    from helpers.solo import cpu_cfg, fake_batch, require_solo_learn, run_training_step

    require_solo_learn()
    from helpers.images import make_image_folder

    from sfrik_plugin.solo import register_methods

    cfg = cpu_cfg("sfrik_cpu", make_image_folder(tmp_path / "images"))
    model = register_methods()[cfg.method](cfg)
    batch = fake_batch()
    _, logged = run_training_step(model, batch)
    with torch.no_grad():
        z1, z2 = (model(x)["z"] for x in batch[1])  # train mode, as in the step
    kwargs = cfg.method_kwargs
    lightly_loss = SFRIKLoss(kwargs.sim_loss_weight, kwargs.mmd_loss_weight, list(kwargs.kernel_weights))
    assert float(lightly_loss(z1, z2)) == pytest.approx(logged["train_sfrik_loss"], rel=1e-5)


def test_sphere_mmd_is_the_mmd_of_each_batch_averaged():
    g = torch.Generator().manual_seed(0)
    views = torch.randn(3, 20, 12, generator=g, dtype=torch.float64) * torch.rand(
        3, 20, 1, generator=g, dtype=torch.float64
    )
    b = (1.0, 40.0, 40.0)
    expected = np.mean([reference_mmd(v.numpy(), b) for v in views])
    assert float(SphereMMD(b)(views)) == pytest.approx(expected, rel=1e-10)
    # one (N, D) batch, as stable-pretraining passes all views pooled
    assert float(SphereMMD(b)(views[0])) == pytest.approx(reference_mmd(views[0].numpy(), b), rel=1e-10)
    proj = views.float().requires_grad_()
    SphereMMD()(proj).backward()
    assert proj.grad is not None and torch.isfinite(proj.grad).all()
    with pytest.raises(ValueError, match="proj"):
        SphereMMD()(torch.randn(8))
    with pytest.raises(ValueError, match="proj"):
        SphereMMD()(torch.randn(2, 8, 1))
    with pytest.raises(ValueError, match="kernel_weights"):
        SphereMMD([1.0, -2.0])


def test_sphere_mmd_replaces_sigreg_in_lightlys_lejepa_loss():
    from lightly.loss import LeJEPALoss
    from lightly.loss.lejepa_loss import lejepa_invariance_loss

    g = torch.Generator().manual_seed(1)
    local_proj, global_proj = torch.randn(4, 16, 32, generator=g), torch.randn(2, 16, 32, generator=g)
    ours = SphereMMDLeJEPALoss(lambda_param=0.3)(local_proj=local_proj, global_proj=global_proj)
    # both terms on the projections L2-normalised
    local_u, global_u = (torch.nn.functional.normalize(p, dim=-1) for p in (local_proj, global_proj))
    all_u = torch.cat([global_u, local_u])
    expected = 0.3 * SphereMMD()(all_u) + 0.7 * lejepa_invariance_loss(all_proj=all_u, global_proj=global_u)
    assert torch.allclose(ours, expected, rtol=1e-6)
    swapped = LeJEPALoss(lambda_param=0.3)  # the drop-in: SphereMMD as lightly's own loss's sigreg
    swapped.sigreg = SphereMMD()
    assert torch.allclose(swapped(local_proj=local_u, global_proj=global_u), expected, rtol=1e-6)
    # deterministic, unlike SIGReg's random slices
    assert torch.equal(ours, SphereMMDLeJEPALoss(lambda_param=0.3)(local_proj=local_proj, global_proj=global_proj))
    with pytest.raises(ValueError, match="local_proj must have shape"):
        SphereMMDLeJEPALoss()(local_proj=torch.randn(16, 32), global_proj=global_proj)


def test_the_lejepa_loss_cannot_be_lowered_by_shrinking_the_projections():
    # SphereMMD sees only directions; on raw projections the invariance would go to 0 with the scale
    g = torch.Generator().manual_seed(2)
    local_proj, global_proj = torch.randn(2, 16, 32, generator=g), torch.randn(2, 16, 32, generator=g)
    loss = SphereMMDLeJEPALoss()
    full = loss(local_proj=local_proj, global_proj=global_proj)
    small = loss(local_proj=1e-3 * local_proj, global_proj=1e-3 * global_proj)
    torch.testing.assert_close(small, full)
    # the default weight is SFRIK's paper weighting, as lambda / (1 - lambda)
    from sfrik_plugin.sphere_mmd import LEJEPA_WEIGHT

    assert loss.lambda_param / (1 - loss.lambda_param) == pytest.approx(LEJEPA_WEIGHT) == pytest.approx(0.001)


def run_example(script: str, folder: Path, cwd: Path, *args: str):
    proc = run_python(EXAMPLES / script, "--data", folder, "--max-steps", "2", "--num-workers", "0", *args, cwd=cwd)
    assert proc.returncode == 0, failure(proc)
    assert "`Trainer.fit` stopped: `max_steps=2` reached" in proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_the_sfrik_example_trains_on_fashion_mnist(fashion_mnist, tmp_path):
    run_example("sfrik.py", fashion_mnist / "train", tmp_path, "--batch-size", "8", "--proj-dim", "64")


@pytest.mark.slow
def test_the_lejepa_example_trains_on_fashion_mnist(fashion_mnist, tmp_path):
    run_example(
        "lejepa_sphere_mmd.py",
        fashion_mnist / "train",
        tmp_path,
        "--model", "vit_tiny_patch16_224", "--global-size", "32", "--local-size", "16",
        "--local-views", "2", "--batch-size", "8",
    )  # fmt: skip


def test_the_benchmark_module_has_the_harness_shape():
    # lightly's main.py builds model(batch_size_per_device=..., num_classes=...) and takes `transform`
    required = [
        p.name
        for p in inspect.signature(lightly_benchmark.SFRIK.__init__).parameters.values()
        if p.default is inspect.Parameter.empty and p.name != "self"
    ]
    assert required == ["batch_size_per_device", "num_classes"]
    assert callable(lightly_benchmark.transform)
    model = lightly_benchmark.SFRIK(batch_size_per_device=4, num_classes=10, proj_hidden_dim=32, proj_output_dim=16)
    assert model.criterion.gather_distributed is True  # the paper's global batch
    with pytest.raises(ValueError, match="batch_size_per_device"):
        lightly_benchmark.SFRIK(batch_size_per_device=1, num_classes=10)


@pytest.mark.slow
def test_the_benchmark_module_trains_as_the_harness_runs_it(fashion_mnist, tmp_path):
    """What lightly's benchmarks/imagenet/resnet50/main.py pretrain() does, at a tiny size: the
    method's transform on a LightlyDataset, an online classifier validated on held-out images."""
    import pytorch_lightning as pl
    from lightly.data import LightlyDataset
    from lightly.transforms.vicreg_transform import VICRegTransform
    from lightly.utils.benchmarking import MetricCallback
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    model = lightly_benchmark.SFRIK(batch_size_per_device=8, num_classes=10, proj_hidden_dim=64, proj_output_dim=32)
    train = LightlyDataset(str(fashion_mnist / "train"), transform=VICRegTransform(input_size=32))
    val = LightlyDataset(str(fashion_mnist / "val"), transform=T.Compose([T.Resize(32), T.ToTensor()]))
    metrics = MetricCallback()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        accelerator="cpu",
        devices=1,
        callbacks=[metrics],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DataLoader(train, batch_size=8, shuffle=True, drop_last=True), DataLoader(val, batch_size=8))
    assert trainer.global_step == 2
    assert torch.isfinite(torch.tensor(metrics.train_metrics["train_loss"])).all()
    assert "val_online_cls_top1" in metrics.val_metrics


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LIGHTLY_REPO_DIR"), reason="LIGHTLY_REPO_DIR (a lightly checkout) not set")
def test_lightlys_own_harness_runs_the_method(fashion_mnist, tmp_path):
    """lightly's benchmarks/imagenet/resnet50/main.py itself, with SFRIK added to its METHODS table
    as the README says (smaller widths, so that it runs on a CPU)."""
    pytest.importorskip("tensorboard", reason="lightly's harness logs to TensorBoard: pip install tensorboard")
    pytest.importorskip("psutil", reason="lightly's harness monitors the device: pip install psutil")
    harness = Path(os.environ["LIGHTLY_REPO_DIR"]) / "benchmarks" / "imagenet" / "resnet50"
    code = f"""
import sys
sys.path.insert(0, {str(harness)!r})
import main
from lightly.transforms.vicreg_transform import VICRegTransform
from sfrik_plugin.hosts import lightly_benchmark as sfrik

class SmallSFRIK(sfrik.SFRIK):
    def __init__(self, batch_size_per_device, num_classes):
        super().__init__(batch_size_per_device, num_classes, proj_hidden_dim=64, proj_output_dim=32)

main.METHODS["sfrik"] = {{"model": SmallSFRIK, "transform": VICRegTransform(input_size=32)}}
main.main(
    train_dir=main.Path({str(fashion_mnist / "train")!r}), val_dir=main.Path({str(fashion_mnist / "val")!r}),
    log_dir=main.Path({str(tmp_path / "logs")!r}), batch_size_per_device=8, epochs=1, num_workers=1,
    accelerator="cpu", devices=1, precision="32", compile_model=False, methods=["sfrik"], num_classes=10,
    knn_k=5, knn_t=0.1, skip_knn_eval=False, skip_linear_eval=True, skip_finetune_eval=True, ckpt_path=None,
    float32_matmul_precision="high", strategy="auto",
)
"""
    proc = run_python("-c", code, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, failure(proc)
    out = proc.stdout + proc.stderr
    assert "Results for sfrik" in out and "max val_online_cls_top1" in out
