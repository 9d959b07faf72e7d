"""The solo-learn methods SFRIK and AUH inside solo-learn: built from their configs (shapes,
defaults, sweeps' overrides), a training step's finite loss and logged terms (multi-crop included),
the MMD switches reaching the loss, and the config errors they raise.

Skipped as a whole where solo-learn is not installed (`make solo-learn` installs it).
"""

import math

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.images import NUM_CLASSES
from helpers.solo import cpu_cfg, fake_batch, run_training_step

from sfrik_plugin.losses import AUHLoss, SFRIKLoss
from sfrik_plugin.regulariser import MMDOptions
from sfrik_plugin.solo import AUH, SFRIK, register_methods


@pytest.mark.parametrize("name, cls", [("sfrik_cpu", SFRIK), ("auh_cpu", AUH)])
def test_method_builds_from_config_and_forward_shapes(image_folder, name, cls):
    cfg = cpu_cfg(name, image_folder)
    model = register_methods()[cfg.method](cfg)
    assert type(model) is cls
    proj = model.projector
    # Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias (the official projector)
    kinds = [type(m).__name__ for m in proj]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert proj[-1].bias is None and proj[0].bias is not None
    assert proj[-1].out_features == cfg.method_kwargs.proj_output_dim == 256

    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert out["feats"].shape == (3, model.features_dim) == (3, 512)
    assert out["z"].shape == (3, 256)
    assert out["logits"].shape == (3, NUM_CLASSES)

    names = [group["name"] for group in model.learnable_params]
    assert names == ["backbone", "classifier", "projector"]
    projector_params = {id(p) for p in model.learnable_params[2]["params"]}
    assert projector_params == {id(p) for p in proj.parameters()}


@pytest.mark.parametrize(
    "name, loss_name, loss_class, loss_kwargs",
    [
        (
            "sfrik_cpu",
            "train_sfrik_loss",
            SFRIKLoss,
            dict(sim_loss_weight=4000.0, mmd_loss_weight=1.0, kernel_weights=[1.0, 40.0, 40.0]),
        ),
        ("auh_cpu", "train_auh_loss", AUHLoss, dict(sim_loss_weight=3000.0, unif_loss_weight=1.0, t=2.5)),
    ],
)
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_training_step_finite_loss_and_logged_terms(image_folder, name, loss_name, loss_class, loss_kwargs):
    cfg = cpu_cfg(name, image_folder)
    model = register_methods()[cfg.method](cfg)
    batch = fake_batch()
    loss, logged = run_training_step(model, batch)

    assert loss.dim() == 0 and torch.isfinite(loss)
    assert {loss_name, "train_invariance", "train_regulariser"} <= set(logged)
    assert {"train_class_loss", "train_acc1"} <= set(logged)  # BaseMethod's own metrics
    assert all(math.isfinite(v) for v in logged.values())

    # the logged terms are the loss module's, on the projector outputs of the two views
    with torch.no_grad():
        z1, z2 = (model(x)["z"] for x in batch[1])
    expected = loss_class(**loss_kwargs).terms(z1, z2)
    assert logged[loss_name] == pytest.approx(float(expected.loss), rel=1e-4)
    assert logged["train_invariance"] == pytest.approx(float(expected.invariance), rel=1e-4)
    assert logged["train_regulariser"] == pytest.approx(float(expected.regulariser), rel=1e-4, abs=1e-6)
    # total = method loss + online classifier loss
    assert float(loss.detach()) == pytest.approx(logged[loss_name] + logged["train_class_loss"], rel=1e-4)

    loss.backward()
    for module in (model.projector, model.backbone):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("reg_small", [False, True])
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_sfrik_multicrop_training_step(image_folder, monkeypatch, reg_small):
    cfg = cpu_cfg("sfrik_cpu", image_folder, f"method_kwargs.reg_small={reg_small}")
    cfg.data.num_small_crops = 2  # as parse_cfg sets it for 2 large + 2 small crops
    model = SFRIK(cfg)
    assert model.multicrop

    calls = []
    real = model.criterion.multicrop_terms

    def spy(views, num_large_crops, **kwargs):
        calls.append((len(views), [tuple(v.shape) for v in views], num_large_crops, kwargs))
        return real(views, num_large_crops, **kwargs)

    monkeypatch.setattr(model.criterion, "multicrop_terms", spy)
    loss, logged = run_training_step(model, fake_batch(crops=(32, 32, 16, 16)))
    assert torch.isfinite(loss) and math.isfinite(logged["train_regulariser"])
    ((num_views, shapes, num_large, kwargs),) = calls
    assert num_views == 4 and set(shapes) == {(4, 256)} and num_large == 2
    assert kwargs["reg_small"] is reg_small and model.criterion.kernel_weights == (1.0, 40.0, 40.0)
    assert model.criterion.mmd == MMDOptions(
        gather_distributed=True, mmd_impl="auto", mmd_tile_size=None, shard_mmd=True, gram_precision="float32"
    )


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_mmd_switches_reach_the_loss(image_folder, monkeypatch):
    cfg = cpu_cfg(
        "sfrik_cpu",
        image_folder,
        "method_kwargs.mmd_impl=tiled",
        "method_kwargs.mmd_tile_size=3",
        "method_kwargs.shard_mmd=false",
        "+method_kwargs.gram_precision=bf16",
    )
    model = SFRIK(cfg)
    assert model.criterion.mmd == MMDOptions(
        gather_distributed=True, mmd_impl="tiled", mmd_tile_size=3, shard_mmd=False, gram_precision="bf16"
    )
    calls = []
    real = model.criterion.terms

    def spy(z1, z2):
        calls.append(z1.shape)
        return real(z1, z2)

    monkeypatch.setattr(model.criterion, "terms", spy)  # the loss built in __init__ serves every step
    for _ in range(2):
        loss, _ = run_training_step(model, fake_batch())
        assert torch.isfinite(loss)
    assert len(calls) == 2


def test_defaults_filled_in(image_folder):
    cfg = cpu_cfg(
        "sfrik_cpu",
        image_folder,
        "~method_kwargs.sim_loss_weight",
        "~method_kwargs.mmd_loss_weight",
        "~method_kwargs.kernel_weights",
        "~method_kwargs.reg_small",
        "~method_kwargs.mmd_impl",
        "~method_kwargs.shard_mmd",
    )  # mmd_tile_size: null already
    cfg = SFRIK.add_and_assert_specific_cfg(cfg)
    assert cfg.method_kwargs.sim_loss_weight == 4000.0 and cfg.method_kwargs.mmd_loss_weight == 1.0
    assert list(cfg.method_kwargs.kernel_weights) == [1.0, 40.0, 40.0] and cfg.method_kwargs.reg_small is False
    assert (cfg.method_kwargs.mmd_impl, cfg.method_kwargs.mmd_tile_size, cfg.method_kwargs.shard_mmd) == (
        "auto",
        None,
        True,
    )
    assert cfg.method_kwargs.gram_precision == "float32"

    cfg = cpu_cfg(
        "auh_cpu", image_folder, "~method_kwargs.sim_loss_weight", "~method_kwargs.unif_loss_weight", "~method_kwargs.t"
    )
    cfg = AUH.add_and_assert_specific_cfg(cfg)
    assert (cfg.method_kwargs.sim_loss_weight, cfg.method_kwargs.unif_loss_weight, cfg.method_kwargs.t) == (
        3000.0,
        1.0,
        2.5,
    )


def test_sweep_overrides_accepted(image_folder):
    cfg = cpu_cfg(
        "sfrik_cpu", image_folder, "method_kwargs.proj_output_dim=1024", "method_kwargs.kernel_weights=[1,40]"
    )
    model = SFRIK(cfg)
    assert model.criterion.kernel_weights == (1.0, 40.0) and model.projector[-1].out_features == 1024


@pytest.mark.parametrize(
    "name, override, error, match",
    [
        (
            "sfrik_cpu",
            "method_kwargs.kernel_weights=[1,-40,40]",
            ValueError,
            r"SFRIK method_kwargs: kernel_weights must be >= 0",
        ),
        ("sfrik_cpu", "method_kwargs.kernel_weights=[]", ValueError, r"kernel_weights must be non-empty"),
        ("sfrik_cpu", "method_kwargs.kernel_weights=[1,nan]", ValueError, r"kernel_weights must be finite"),
        ("sfrik_cpu", "method_kwargs.kernel_weights=abc", TypeError, r"kernel_weights must be a sequence"),
        ("sfrik_cpu", "method_kwargs.sim_loss_weight=-1", ValueError, r"sim_loss_weight must be a finite number >= 0"),
        ("sfrik_cpu", "method_kwargs.mmd_loss_weight=abc", TypeError, r"mmd_loss_weight must be a real number"),
        ("sfrik_cpu", "method_kwargs.reg_small=maybe", ValueError, r"reg_small must be true or false"),
        ("sfrik_cpu", "method_kwargs.mmd_impl=flash", ValueError, r"SFRIK method_kwargs: mmd_impl must be one of"),
        (
            "sfrik_cpu",
            "method_kwargs.mmd_tile_size=0",
            ValueError,
            r"SFRIK method_kwargs: mmd_tile_size must be an integer >= 1",
        ),
        ("sfrik_cpu", "method_kwargs.shard_mmd=maybe", TypeError, r"SFRIK method_kwargs: shard_mmd must be a bool"),
        (
            "sfrik_cpu",
            "+method_kwargs.gram_precision=int8",
            ValueError,
            r"SFRIK method_kwargs: gram_precision must be one of",
        ),
        ("sfrik_cpu", "method_kwargs.proj_output_dim=1", ValueError, r"proj_output_dim must be an integer >= 2"),
        ("sfrik_cpu", "~method_kwargs.proj_hidden_dim", ValueError, r"method_kwargs.proj_hidden_dim must be set"),
        ("auh_cpu", "method_kwargs.t=0", ValueError, r"AUH method_kwargs: t must be a finite number > 0"),
        ("auh_cpu", "method_kwargs.unif_loss_weight=-2", ValueError, r"unif_loss_weight must be a finite number >= 0"),
        ("auh_cpu", "method_kwargs.proj_output_dim=2.5", ValueError, r"proj_output_dim must be an integer"),
    ],
)
def test_add_and_assert_specific_cfg_errors(image_folder, name, override, error, match):
    cfg = cpu_cfg(name, image_folder, override)
    cls = SFRIK if cfg.method == "sfrik" else AUH
    with pytest.raises(error, match=match):
        cls.add_and_assert_specific_cfg(cfg)


def test_auh_refuses_small_crops(image_folder):
    cfg = cpu_cfg("auh_cpu", image_folder)
    cfg.data.num_small_crops = 6
    with pytest.raises(ValueError, match="AUH: two views only"):
        AUH.add_and_assert_specific_cfg(cfg)
