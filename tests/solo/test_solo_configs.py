"""The packaged Hydra configs (configs/ installed as sfrik_plugin_configs): they compose through the
Hydra plugin's search path, every method of a protocol shares its data, augmentations, optimiser
and schedule, and the paper's hyper-parameters are where they should be.

Skipped where solo-learn (which brings hydra-core) is not installed.
"""

import importlib.resources
import re
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.solo import CPU, IN20, IN100, LINEAR, PRETRAIN, SEMISUP
from hydra import compose, initialize
from omegaconf import OmegaConf
from solo.args.pretrain import parse_cfg
from solo.losses.vicreg import vicreg_loss_func

# what a method config may change on top of its protocol
METHOD_KEYS = ("name", "method", "method_kwargs.", "optimizer.lr")


def compose_cfg(name, *overrides, hydra_cfg=False):
    with initialize(version_base="1.2", config_path=None):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=hydra_cfg)


def flat(cfg) -> dict:
    """Dotted keys -> leaf values (lists kept whole), the hydra node left out."""
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}, "")
    return out


def differing_keys(a, b) -> set:
    fa, fb = flat(a), flat(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k, object()) != fb.get(k, object())}


def test_configs_are_packaged():
    root = importlib.resources.files("sfrik_plugin_configs")
    for name in PRETRAIN + LINEAR + SEMISUP:
        assert (root / f"{name}.yaml").is_file(), name
    for group_file in (
        "protocol/in20.yaml",
        "protocol/in100.yaml",
        "protocol/cpu_smoke.yaml",
        "data/in20.yaml",
        "augmentations/vicreg.yaml",
        "augmentations/swav_multicrop.yaml",
        "optimizer/lars.yaml",
        "scheduler/warmup_cosine.yaml",
        "wandb/disabled.yaml",
    ):
        assert (root / group_file).is_file(), group_file
    assert (root / "README.md").is_file()


@pytest.mark.parametrize("name", PRETRAIN + LINEAR + SEMISUP)
def test_every_config_composes_without_config_path(name):
    cfg = compose_cfg(name, hydra_cfg=True)
    if name not in SEMISUP:  # sfrik-semisup has no wandb logger
        assert cfg.wandb.enabled is False
    # no Hydra output folder, no logging setup: runs only write solo's checkpoints
    assert cfg.hydra.output_subdir is None and cfg.hydra.run.dir == "."
    assert cfg.hydra.runtime.choices["hydra/job_logging"] == "disabled"


@pytest.mark.parametrize("group, reference", [(IN20, "sfrik"), (IN100, "sfrik_in100"), (CPU, "sfrik_cpu")])
def test_methods_share_the_protocol(group, reference):
    ref = compose_cfg(reference)
    for name in group:
        cfg = compose_cfg(name)
        for block in ("data", "augmentations", "scheduler", "backbone", "wandb", "checkpoint", "auto_resume"):
            # unresolved: scheduler.min_lr is the same interpolation (its value follows each lr)
            assert OmegaConf.to_container(cfg[block]) == OmegaConf.to_container(ref[block]), (name, block)
        optimizer = {k: v for k, v in cfg.optimizer.items() if k != "lr"}
        assert optimizer == {k: v for k, v in ref.optimizer.items() if k != "lr"}, name
        diff = differing_keys(cfg, ref)
        assert all(k.startswith(METHOD_KEYS) for k in diff), (name, sorted(diff))


def test_sfrik_is_sfrik_in20():
    assert differing_keys(compose_cfg("sfrik"), compose_cfg("sfrik_in20")) == set()


def total_batch(cfg) -> int:
    return cfg.optimizer.batch_size * len(cfg.devices) * cfg.num_nodes


def assert_paper_protocol(cfg, backbone: str, epochs: int):
    assert cfg.backbone.name == backbone and cfg.backbone.kwargs.zero_init_residual is True
    assert total_batch(cfg) == 2048
    assert cfg.max_epochs == epochs
    assert cfg.optimizer.name == "lars" and cfg.optimizer.weight_decay == 1e-6
    assert cfg.optimizer.kwargs.eta == 0.001 and cfg.optimizer.kwargs.exclude_bias_n_norm is True
    assert cfg.scheduler.name == "warmup_cosine" and cfg.scheduler.warmup_epochs == 10
    assert cfg.scheduler.warmup_start_lr == 0.0
    assert cfg.data.dataset == "imagenet" and cfg.data.format == "image_folder"
    # VICReg's augmentations: two asymmetric 224 crops
    first, second = cfg.augmentations
    for aug in (first, second):
        assert aug.crop_size == 224 and aug.num_crops == 1
        assert (aug.rrc.crop_min_scale, aug.rrc.crop_max_scale) == (0.08, 1.0)
        jitter = aug.color_jitter
        assert (jitter.prob, jitter.brightness, jitter.contrast) == (0.8, 0.4, 0.4)
        assert (jitter.saturation, jitter.hue) == (0.2, 0.1)
        assert aug.grayscale.prob == 0.2 and aug.horizontal_flip.prob == 0.5
    assert (first.gaussian_blur.prob, second.gaussian_blur.prob) == (1.0, 0.1)
    assert (first.solarization.prob, second.solarization.prob) == (0.0, 0.2)
    assert cfg.accelerator == "gpu" and cfg.strategy == "ddp" and cfg.sync_batchnorm is True


def data_choice(name: str) -> str:
    """The data group a config composes (Hydra's record of its choices)."""
    return compose_cfg(name, hydra_cfg=True).hydra.runtime.choices["data"]


def with_data(name, *overrides):
    """A paper config with its mandatory data paths given."""
    return compose_cfg(name, "data.train_path=/data/train", "data.val_path=/data/val", *overrides)


def test_sfrik_in20_hyper_parameters():
    cfg = with_data("sfrik")
    assert_paper_protocol(cfg, "resnet18", 100)
    assert cfg.method == "sfrik"
    kw = cfg.method_kwargs
    assert (kw.proj_hidden_dim, kw.proj_output_dim) == (8192, 8192)
    assert list(kw.kernel_weights) == [1.0, 40.0, 40.0]
    assert (kw.sim_loss_weight, kw.mmd_loss_weight) == (4000.0, 1.0)
    assert cfg.optimizer.lr == 1.2
    assert (cfg.optimizer.batch_size, len(cfg.devices)) == (512, 4)
    assert data_choice("sfrik") == "in20"  # validated on the tuning subset, never ImageNet val
    # solo-learn's scaling: base lr x total batch / 256
    parsed = parse_cfg(_unstructured(cfg))
    assert parsed.optimizer.lr == pytest.approx(1.2 * 2048 / 256)


def _unstructured(cfg):
    OmegaConf.set_struct(cfg, False)
    return cfg


def test_sfrik_in100_hyper_parameters():
    cfg = compose_cfg("sfrik_in100")
    assert_paper_protocol(cfg, "resnet50", 200)
    kw = cfg.method_kwargs
    assert (kw.proj_hidden_dim, kw.proj_output_dim) == (8192, 32768)
    assert list(kw.kernel_weights) == [1.0, 40.0, 40.0]
    assert (kw.sim_loss_weight, kw.mmd_loss_weight) == (40000.0, 1.0)
    assert cfg.optimizer.lr == 0.4
    assert (cfg.optimizer.batch_size, len(cfg.devices)) == (256, 8)
    q8192 = compose_cfg("sfrik_in100_q8192")
    assert q8192.method_kwargs.proj_output_dim == 8192
    assert differing_keys(q8192, cfg) == {"name", "method_kwargs.proj_output_dim"}


@pytest.mark.parametrize(
    "name, method, lr, kwargs",
    [
        ("vicreg_in20", "vicreg", 0.7, dict(sim_loss_weight=10.0, var_loss_weight=5.0, cov_loss_weight=1.0)),
        ("simclr_in20", "simclr_shared", 0.8, dict(temperature=0.15)),
        ("auh_in20", "auh", 1.0, dict(sim_loss_weight=3000.0, unif_loss_weight=1.0, t=2.5)),
        ("barlow_twins_in20", "barlow_twins", 0.8, dict(lamb=0.0051, scale_loss=0.024)),
        ("vicreg_in100", "vicreg", 0.2, dict(sim_loss_weight=25.0, var_loss_weight=12.5, cov_loss_weight=1.0)),
    ],
)
def test_baseline_hyper_parameters(name, method, lr, kwargs):
    cfg = compose_cfg(name)
    assert cfg.method == method and cfg.optimizer.lr == lr
    assert (cfg.method_kwargs.proj_hidden_dim, cfg.method_kwargs.proj_output_dim) == (8192, 8192)
    for key, value in kwargs.items():
        assert cfg.method_kwargs[key] == value, key


def test_barlow_twins_values_are_solo_defaults():
    from solo.methods.barlow_twins import BarlowTwins

    cfg = compose_cfg("barlow_twins_in20", "~method_kwargs.lamb", "~method_kwargs.scale_loss")
    cfg = BarlowTwins.add_and_assert_specific_cfg(_unstructured(cfg))
    assert (cfg.method_kwargs.lamb, cfg.method_kwargs.scale_loss) == (0.0051, 0.024)


def official_vicreg_loss(x, y, sim, std, cov):
    """facebookresearch/vicreg's loss (one process), re-stated: std terms averaged over branches."""
    n, d = x.shape
    repr_loss = torch.nn.functional.mse_loss(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    std_x, std_y = torch.sqrt(x.var(0) + 1e-4), torch.sqrt(y.var(0) + 1e-4)
    std_loss = torch.relu(1 - std_x).mean() / 2 + torch.relu(1 - std_y).mean() / 2
    off = ~torch.eye(d, dtype=torch.bool)
    cov_x, cov_y = (x.T @ x) / (n - 1), (y.T @ y) / (n - 1)
    cov_loss = cov_x[off].pow(2).sum() / d + cov_y[off].pow(2).sum() / d
    return sim * repr_loss + std * std_loss + cov * cov_loss


@pytest.mark.parametrize("name, official", [("vicreg_in20", (10.0, 10.0, 1.0)), ("vicreg_in100", (25.0, 25.0, 1.0))])
def test_vicreg_weights_reproduce_the_official_loss(name, official):
    kw = compose_cfg(name).method_kwargs
    g = torch.Generator().manual_seed(0)
    x, y = (0.3 * torch.randn(64, 32, generator=g, dtype=torch.float64) for _ in range(2))
    ours = vicreg_loss_func(
        x, y, sim_loss_weight=kw.sim_loss_weight, var_loss_weight=kw.var_loss_weight, cov_loss_weight=kw.cov_loss_weight
    )
    assert float(ours) == pytest.approx(float(official_vicreg_loss(x, y, *official)), rel=1e-12)


def test_paper_configs_make_the_data_paths_mandatory():
    # no placeholder that looks like a real path: the user names each folder, or Hydra says which is missing
    for name in ("sfrik", "sfrik_in100", "vicreg_in20", "linear_in20", "linear_in20_tuning", "linear_in100"):
        cfg = compose_cfg(name)
        assert OmegaConf.is_missing(cfg.data, "train_path") and OmegaConf.is_missing(cfg.data, "val_path"), name
    with pytest.raises(Exception, match="Missing mandatory value: data.train_path"):
        _ = compose_cfg("sfrik").data.train_path


def test_linear_probe_configs():
    for name in LINEAR:
        cfg = compose_cfg(name)
        assert cfg.optimizer.name == "sgd" and cfg.optimizer.kwargs.momentum == 0.9
        assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (0.4, 1e-6)
        assert cfg.scheduler.name == "warmup_cosine" and cfg.scheduler.warmup_epochs == 0
        assert OmegaConf.is_missing(cfg, "pretrained_feature_extractor")
        if name != "linear_cpu":
            assert cfg.optimizer.batch_size * len(cfg.devices) == 256 and cfg.max_epochs == 100
            assert cfg.precision == 32
    in20, tuning, in100 = (compose_cfg(n) for n in ("linear_in20", "linear_in20_tuning", "linear_in100"))
    # trained on the pretraining images (the same data group); the final number on ImageNet's
    # validation set (in20_final); tuning on the separate subset the pretraining's online
    # classifier reports on (in20, as sfrik's)
    assert data_choice("linear_in20_tuning") == data_choice("sfrik") == "in20"
    assert data_choice("linear_in20") == "in20_final" and data_choice("linear_in100") == data_choice("sfrik_in100")
    assert in100.backbone.name == "resnet50"
    assert in20.backbone.name == "resnet18"
    assert differing_keys(tuning, in20) == {"name"}  # and the data group: only which folder val_path names


def test_linear_cpu_measures_its_accuracy_on_a_held_out_folder():
    # main_linear.py's val_acc1 is measured on data.val_path. linear_cpu used the training folder
    # there, so its accuracy was a training accuracy under the name val_acc1: now the user names a
    # held-out folder, or Hydra says it is missing
    cfg = compose_cfg("linear_cpu", "data.train_path=/data/train")
    assert OmegaConf.is_missing(cfg.data, "val_path")
    with pytest.raises(Exception, match="Missing mandatory value: data.val_path"):
        _ = cfg.data.val_path
    given = compose_cfg("linear_cpu", "data.train_path=/data/train", "data.val_path=/data/val")
    assert (given.data.train_path, given.data.val_path) == ("/data/train", "/data/val")
    # pretraining on the CPU protocol still needs no validation folder (solo validates nothing)
    for cfg in (compose_cfg("sfrik_cpu", "data.train_path=/d"), compose_cfg("sfrik", "protocol=cpu_smoke")):
        assert cfg.data.val_path is None


def test_cpu_smoke_protocol():
    cfg = compose_cfg("sfrik_cpu", "data.train_path=/data")
    assert cfg.devices == "1" and isinstance(cfg.devices, str)
    assert (cfg.accelerator, cfg.strategy, cfg.precision) == ("cpu", "auto", 32)
    assert cfg.data.dataset == "custom" and cfg.data.num_workers == 0
    assert {aug.crop_size for aug in cfg.augmentations} == {32}
    assert cfg.max_epochs == 1 and cfg.checkpoint.enabled is True and cfg.auto_resume.enabled is False
    assert OmegaConf.is_missing(compose_cfg("sfrik_cpu").data, "train_path")
    # the protocol group can also be switched on any method config
    switched = compose_cfg("sfrik", "protocol=cpu_smoke", "data.train_path=/data")
    assert differing_keys(switched, cfg) <= {"name", "method_kwargs.proj_hidden_dim", "method_kwargs.proj_output_dim"}


ROOT = Path(__file__).resolve().parents[2]


def gpu_table(path: Path) -> dict[str, tuple[str, int, int]]:
    """config -> (device kind, devices, batch per device) from a doc's "GPUs each config needs"
    table: rows of backticked config names, then "4 x 512" or "CPU, 1 x 8"."""
    table = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or "`" not in cells[0]:
            continue
        match = re.fullmatch(r"(CPU, )?(\d+) x (\d+)", cells[1])
        if match is None:
            continue
        for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            table[name] = ("cpu" if match.group(1) else "gpu", int(match.group(2)), int(match.group(3)))
    return table


@pytest.mark.parametrize("doc", ["README.md", "docs/solo-learn.md"])
def test_the_docs_gpu_table_is_what_each_config_asks_for(doc):
    table = gpu_table(ROOT / doc)
    assert set(PRETRAIN + LINEAR) <= set(table), sorted(set(PRETRAIN + LINEAR) - set(table))
    for name, (kind, devices, batch) in table.items():
        cfg = compose_cfg(name)
        count = len(cfg.devices) if OmegaConf.is_list(cfg.devices) else int(cfg.devices)
        assert (cfg.accelerator, count, cfg.optimizer.batch_size) == (kind, devices, batch), name


def test_the_one_gpu_line_of_the_docs_composes_and_scales_the_lr():
    line = "devices=[0] optimizer.batch_size=512"
    for doc in ("README.md", "docs/solo-learn.md"):
        assert f"--config-name sfrik {line}" in (ROOT / doc).read_text(), doc
    cfg = with_data("sfrik", *line.split())
    assert list(cfg.devices) == [0] and cfg.optimizer.batch_size == 512
    parsed = parse_cfg(_unstructured(cfg))
    assert parsed.optimizer.lr == pytest.approx(1.2 * 512 / 256)  # solo's scaling: base lr x global batch / 256
