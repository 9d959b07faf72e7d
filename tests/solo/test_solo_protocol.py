"""The paper's protocol inside solo-learn: every pretraining config's projector, the end of the
cosine schedule (the resolver, and solo's scheduler replayed step by step against the official
formula), the values the paper does not give, the multi-crop config, and the import hook that
registers the plugin's methods in any process.

Skipped as a whole where solo-learn is not installed (`make solo-learn` installs it); the tests
that run solo's scripts are marked slow and need its checkout ($SOLO_LEARN_DIR).
"""

import math
import subprocess
import sysconfig
import types
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.images import make_image_folder
from helpers.processes import run_code, run_python
from helpers.solo import CPU, IN20, IN100, MULTICROP, PRETRAIN, run_script, solo_learn_checkout
from hydra import compose, initialize
from omegaconf import OmegaConf
from solo.args.pretrain import parse_cfg
from solo.utils.lr_scheduler import LinearWarmupCosineAnnealingLR

from hydra_plugins.sfrik_plugin.resolvers import peak_lr
from sfrik_plugin.solo import register_methods

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
# methods whose projector is the shared one exactly (sfrik_plugin.projector.build_projector)
SHARED = {"sfrik", "auh", "simclr_shared"}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "train")


def composed(name, *overrides):
    with initialize(version_base="1.2", config_path=None):
        return compose(config_name=name, overrides=list(overrides))


def parsed(name, image_folder, *overrides):
    """As main_pretrain.py: compose, then solo's parse_cfg (which scales optimizer.lr)."""
    cfg = composed(name, *overrides, *([f"data.train_path={image_folder}"] if name in CPU else []))
    OmegaConf.set_struct(cfg, False)
    return parse_cfg(cfg)


# ---------------------------------------------------------------------------------------------
# 1. The projector of every pretraining config


def layer_spec(projector):
    spec = []
    for layer in projector:
        if isinstance(layer, torch.nn.Linear):
            spec.append(("Linear", layer.in_features, layer.out_features, layer.bias is not None))
        elif isinstance(layer, torch.nn.BatchNorm1d):
            spec.append(("BatchNorm1d", layer.num_features))
        else:
            spec.append((type(layer).__name__,))
    return spec


@pytest.mark.parametrize("name", PRETRAIN)
def test_every_pretraining_config_builds_its_method_with_the_shared_projector(name, image_folder):
    methods = register_methods()
    cfg = parsed(name, image_folder)
    with torch.device("meta"):  # the real widths (up to 8192-8192-32768) without allocating them
        model = methods[cfg.method](cfg)
    features = {"resnet18": 512, "resnet50": 2048}[cfg.backbone.name]
    hidden, out = cfg.method_kwargs.proj_hidden_dim, cfg.method_kwargs.proj_output_dim
    last_bias = cfg.method not in SHARED
    assert layer_spec(model.projector) == [
        ("Linear", features, hidden, True),
        ("BatchNorm1d", hidden),
        ("ReLU",),
        ("Linear", hidden, hidden, True),
        ("BatchNorm1d", hidden),
        ("ReLU",),
        ("Linear", hidden, out, last_bias),
    ], name
    if name in IN20 + IN100 + MULTICROP:
        assert (hidden, out) == ((8192, 32768) if name == "sfrik_in100" else (8192, 8192)), name
    # solo's own SimCLR (Linear-ReLU-Linear) is not what any shipped config trains
    assert cfg.method != "simclr", name


@pytest.mark.parametrize("loss", ["vicreg", "barlow_twins"])
def test_the_last_bias_of_solos_vicreg_and_barlow_projectors_is_inert(loss):
    # solo's VICReg and Barlow Twins keep a bias in the projector's last Linear, where the shared
    # projector has none. Both losses see z only through z1 - z2 and centred (or standardised)
    # columns, so that bias gets no gradient and moves nothing: their projectors are the shared one.
    from solo.losses.barlow import barlow_loss_func
    from solo.losses.vicreg import vicreg_loss_func

    # float64 for VICReg; Barlow Twins' loss runs a float32 batch norm
    dtype, tol = (torch.float64, 1e-10) if loss == "vicreg" else (torch.float32, 1e-5)
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(16, 8, generator=g, dtype=dtype) for _ in range(2))
    bias = torch.randn(8, generator=g, dtype=dtype, requires_grad=True)
    fn = vicreg_loss_func if loss == "vicreg" else barlow_loss_func
    value = fn(z1 + bias, z2 + bias)
    (grad,) = torch.autograd.grad(value, bias)
    assert float(grad.abs().max()) < tol * max(1.0, float(value.detach().abs()))
    torch.testing.assert_close(value.detach(), fn(z1, z2), rtol=tol, atol=tol)


def test_simclr_shared_uses_solos_loss(image_folder):
    from solo.losses.simclr import simclr_loss_func

    from sfrik_plugin.solo import SimCLRShared

    cfg = parsed("simclr_cpu", image_folder)
    model = SimCLRShared(cfg)
    logged = {}
    model.log = lambda name, value, **kw: logged.update({name: float(value)})
    g = torch.Generator().manual_seed(0)
    batch = [torch.arange(4), [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)], torch.arange(4)]
    model.train()
    torch.manual_seed(0)
    loss = model.training_step(batch, 0)
    assert math.isfinite(float(loss)) and "train_nce_loss" in logged
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(x)["z"] for x in batch[1]])
    expected = simclr_loss_func(z, indexes=torch.arange(4).repeat(2), temperature=0.15)
    assert cfg.method_kwargs.temperature == 0.15 and expected > 0


def test_simclr_shared_refuses_a_bad_temperature(image_folder):
    from sfrik_plugin.solo import SimCLRShared

    cfg = parsed("simclr_cpu", image_folder, "method_kwargs.temperature=0")
    with pytest.raises(ValueError, match="method_kwargs.temperature must be a number > 0"):
        SimCLRShared.add_and_assert_specific_cfg(cfg)


@pytest.mark.parametrize(
    "name, key, suggestion",
    [
        ("sfrik_cpu", "kernel_weigths", "kernel_weights"),
        ("sfrik_cpu", "sim_weight", "sim_loss_weight"),
        ("auh_cpu", "unif_weight", "unif_loss_weight"),
        ("simclr_cpu", "temprature", "temperature"),
        ("sfrik_cpu", "lambda_xyz", None),
    ],
)
def test_an_unknown_method_kwarg_is_refused_with_a_suggestion(image_folder, name, key, suggestion):
    # As Hydra's own hint suggests for a key the config lacks: +method_kwargs.<key>=...
    cls = register_methods()[parsed(name, image_folder).method]
    cfg = parsed(name, image_folder, f"+method_kwargs.{key}=1.0")
    hint = f" \\(did you mean '{suggestion}'\\?\\)" if suggestion else ";"
    with pytest.raises(ValueError, match=f"unknown method_kwargs '{key}'{hint}"):
        cls.add_and_assert_specific_cfg(cfg)
    cls.add_and_assert_specific_cfg(parsed(name, image_folder))  # the config as shipped passes


# ---------------------------------------------------------------------------------------------
# 2. The end of the cosine: 0.001 x the effective peak lr


def solo_scale(cfg) -> float:
    return cfg.optimizer.batch_size * len(cfg.devices) * cfg.num_nodes / 256


@pytest.mark.parametrize("name", PRETRAIN)
def test_cosine_ends_at_a_thousandth_of_the_effective_peak_lr(name, image_folder):
    cfg = composed(name, *([f"data.train_path={image_folder}"] if name in CPU else []))
    assert OmegaConf.to_container(cfg.scheduler)["min_lr"] == "${sfrik_plugin.cosine_end:0.001}", name
    expected = 0.001 * cfg.optimizer.lr * solo_scale(cfg)
    assert cfg.scheduler.min_lr == pytest.approx(expected, rel=1e-12), name
    # after solo's parse_cfg (optimizer.lr scaled in place) the value is the same
    done = parsed(name, image_folder)
    assert done.optimizer.lr == pytest.approx(cfg.optimizer.lr * solo_scale(cfg))
    assert done.scheduler.min_lr == pytest.approx(expected, rel=1e-12), name


@pytest.mark.parametrize(
    "overrides, batch",
    [
        (["optimizer.batch_size=256", "devices=[0,1,2,3,4,5,6,7]"], 2048),
        (["optimizer.batch_size=128"], 512),
        (["num_nodes=2"], 4096),
        (["optimizer.lr=2.0"], 2048),
    ],
)
def test_cosine_end_follows_batch_devices_and_lr(overrides, batch, image_folder):
    cfg = parsed("sfrik", image_folder, *overrides)
    lr = 2.0 if "optimizer.lr=2.0" in overrides else 1.2
    assert cfg.optimizer.lr == pytest.approx(lr * batch / 256)
    assert cfg.scheduler.min_lr == pytest.approx(0.001 * lr * batch / 256, rel=1e-12)


def test_cosine_end_resolver_errors():
    cfg = OmegaConf.create(
        {
            "optimizer": {"lr": 1.0, "batch_size": 256},
            "devices": 4,
            "num_nodes": 1,
            "scheduler": {"min_lr": "${sfrik_plugin.cosine_end:0.001}"},
        }
    )
    register_methods()
    with pytest.raises(Exception, match="devices=4 with accelerator=auto: solo-learn scales the learning rate by len"):
        _ = cfg.scheduler.min_lr
    cfg.devices = [0]
    cfg.scheduler.min_lr = "${sfrik_plugin.cosine_end:2}"
    with pytest.raises(Exception, match=r"ratio must be a number in \[0, 1\]"):
        _ = cfg.scheduler.min_lr
    assert peak_lr(OmegaConf.create({"optimizer": {"lr": 3.0}, "data": {"num_large_crops": 2}})) == 3.0


def official_lr(step, epochs, steps_per_epoch, peak):
    """valeoai/sfrik src/vicreg/optim.py adjust_learning_rate, re-stated (peak = base_lr x batch / 256)."""
    max_steps, warmup_steps = epochs * steps_per_epoch, 10 * steps_per_epoch
    if step < warmup_steps:
        return peak * step / warmup_steps
    step, max_steps = step - warmup_steps, max_steps - warmup_steps
    q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
    return peak * q + peak * 0.001 * (1 - q)


@pytest.mark.parametrize("name, steps_per_epoch", [("sfrik", 126), ("sfrik_in100", 625)])
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_solos_schedule_replayed_against_the_official_formula(name, steps_per_epoch, image_folder):
    # solo's own path: the method's configure_optimizers builds LARS and the scheduler from the
    # parsed config; stepping it as Lightning does (once per optimiser step) gives the lr of each step
    methods = register_methods()
    cfg = parsed(
        name,
        image_folder,
        "method_kwargs.proj_hidden_dim=8",
        "method_kwargs.proj_output_dim=8",
        "backbone.name=resnet18",
    )
    model = methods[cfg.method](cfg)
    total = cfg.max_epochs * steps_per_epoch
    model._trainer = types.SimpleNamespace(estimated_stepping_batches=total)
    optimizers, schedulers = model.configure_optimizers()
    (optimizer,), (scheduler,) = optimizers, schedulers
    assert scheduler["interval"] == "step"
    scheduler = scheduler["scheduler"]
    assert isinstance(scheduler, LinearWarmupCosineAnnealingLR)
    peak = cfg.optimizer.lr
    warmup = 10 * steps_per_epoch
    worst_warmup = worst_cosine = 0.0
    for step in range(total):
        ours, theirs = optimizer.param_groups[0]["lr"], official_lr(step, cfg.max_epochs, steps_per_epoch, peak)
        if step < warmup:
            # solo's warm-up reaches the peak one step earlier: peak k / (W - 1) instead of peak k / W
            assert -1e-12 <= ours - theirs <= peak / (warmup - 1) + 1e-12, step
            worst_warmup = max(worst_warmup, ours - theirs)
        else:
            worst_cosine = max(worst_cosine, abs(ours - theirs))
        optimizer.step()
        scheduler.step()
    assert worst_cosine <= 1e-9 * peak, worst_cosine
    assert worst_warmup <= peak / warmup
    # the last step: the official end, 0.001 x the peak lr, to within a step of the cosine
    assert official_lr(total - 1, cfg.max_epochs, steps_per_epoch, peak) == pytest.approx(0.001 * peak, rel=1e-3)
    assert model.min_lr == pytest.approx(0.001 * peak)


# ---------------------------------------------------------------------------------------------
# 3. Values that neither the paper nor the official code gives

NOT_GIVEN_MARK = "Not given by the paper or the official code"
NOT_GIVEN = [
    "sfrik_in100_q8192.yaml",
    "vicreg_in100.yaml",
    "barlow_twins_in20.yaml",
    "optimizer/lars.yaml",
    "semisup_in100_10pct.yaml",
]


@pytest.mark.parametrize("path", NOT_GIVEN)
def test_values_not_given_are_marked_in_their_config_and_listed(path):
    assert NOT_GIVEN_MARK in (CONFIGS / path).read_text(), path
    readme = (CONFIGS / "README.md").read_text()
    section = readme.split("## Values the paper and the official code do not give", 1)[1].split("\n## ", 1)[0]
    assert f"`{path}`" in section, path


def test_every_marked_config_is_listed():
    marked = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if NOT_GIVEN_MARK in p.read_text())
    assert marked == sorted(NOT_GIVEN)


# ---------------------------------------------------------------------------------------------
# 8. SwAV-style multi-crop


def test_multicrop_config_is_the_official_swav_setting():
    cfg = composed("sfrik_in20_multicrop")
    large, small = cfg.augmentations
    assert (large.crop_size, large.num_crops, small.crop_size, small.num_crops) == (224, 2, 96, 6)
    assert (large.rrc.crop_min_scale, large.rrc.crop_max_scale) == (0.14, 1.0)
    assert (small.rrc.crop_min_scale, small.rrc.crop_max_scale) == (0.05, 0.14)
    for aug in (large, small):
        jitter = aug.color_jitter
        assert (jitter.prob, jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
            0.8,
            0.8,
            0.8,
            0.8,
            0.2,
        )
        assert (aug.grayscale.prob, aug.gaussian_blur.prob, aug.solarization.prob) == (0.2, 0.5, 0.0)
        assert aug.horizontal_flip.prob == 0.5
    assert cfg.method_kwargs.reg_small is False and cfg.optimizer.lr == 1.2
    ref = composed("sfrik_in20")
    for block in ("data", "optimizer", "method_kwargs", "backbone", "scheduler"):
        assert cfg[block] == ref[block], block


def test_multicrop_config_parses_to_two_large_and_six_small_crops(image_folder):
    cfg = parsed("sfrik_in20_multicrop", image_folder)
    assert (cfg.data.num_large_crops, cfg.data.num_small_crops) == (2, 6)


@pytest.mark.slow
def test_multicrop_config_trains_two_cpu_steps_in_main_pretrain(tmp_path, image_folder):
    checkout = solo_learn_checkout()
    run_script(
        checkout,
        "main_pretrain.py",
        "--config-name",
        "sfrik_in20_multicrop",
        "protocol=cpu_smoke",
        f"data.train_path={image_folder}",
        "data.val_path=null",
        "augmentations.0.crop_size=32",
        "augmentations.1.crop_size=16",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=32",
        "optimizer.batch_size=4",
        f"checkpoint.dir={tmp_path / 'ckpt'}",
        "+limit_train_batches=2",
        f"+default_root_dir={tmp_path / 'runs'}",
    )
    (ckpt,) = (tmp_path / "ckpt" / "sfrik").glob("*/*.ckpt")
    state = torch.load(ckpt, map_location="cpu")
    assert state["global_step"] == 2


# ---------------------------------------------------------------------------------------------
# 7. The import hook


def fresh(code: str, env_update=None, cwd=None) -> subprocess.CompletedProcess:
    """code in a fresh interpreter, the hook's switch as env_update sets it (default: on)."""
    return run_code(code, cwd=cwd, unset_env=["SFRIK_PLUGIN_SOLO_HOOK"], set_env=env_update)


@pytest.mark.fresh_interpreter
def test_hook_registers_the_methods_in_a_fresh_interpreter(tmp_path):
    proc = fresh(
        """
        from solo.methods import METHODS
        assert 'sfrik' in METHODS and 'auh' in METHODS and 'simclr_shared' in METHODS, sorted(METHODS)
        print(METHODS['sfrik'].__module__)
    """,
        cwd=tmp_path,
    )
    assert proc.stdout.strip().splitlines()[-1] == "sfrik_plugin.solo.sfrik"


@pytest.mark.fresh_interpreter
def test_hook_is_switched_off_by_the_environment(tmp_path):
    fresh(
        """
        import sys
        assert not any(getattr(f, 'sfrik_plugin_hook', False) for f in sys.meta_path)
        from solo.methods import METHODS
        assert 'sfrik' not in METHODS
    """,
        {"SFRIK_PLUGIN_SOLO_HOOK": "0"},
        cwd=tmp_path,
    )


@pytest.mark.fresh_interpreter
def test_hook_costs_nothing_at_start_up(tmp_path):
    code = """
        import json, sys
        print(json.dumps(sorted(sys.modules)))
    """
    on = fresh(code, cwd=tmp_path).stdout
    off = fresh(code, {"SFRIK_PLUGIN_SOLO_HOOK": "0"}, cwd=tmp_path).stdout
    assert on == off  # not one module more at start-up
    for heavy in ('"torch"', '"solo"', '"sfrik_plugin"'):
        assert heavy not in on, heavy
    fresh(
        """
        import sys
        (finder,) = [f for f in sys.meta_path if getattr(f, 'sfrik_plugin_hook', False)]
        assert sys.meta_path[0] is finder
        assert finder.find_spec('json') is None and finder.find_spec('solo') is None
    """,
        cwd=tmp_path,
    )


@pytest.mark.fresh_interpreter
def test_hook_keeps_the_loader_and_never_breaks_solo(tmp_path):
    fresh(
        """
        import importlib.machinery, sys, warnings
        import sfrik_plugin.solo.registration as reg
        def broken(methods):
            raise RuntimeError('simulated')
        reg.register_methods_from_hook = broken
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import solo.methods
        assert isinstance(solo.methods.__spec__.loader, importlib.machinery.SourceFileLoader)
        assert 'sfrik' not in solo.methods.METHODS
        assert any('could not register' in str(w.message) for w in caught), [str(w.message) for w in caught]
    """,
        cwd=tmp_path,
    )


@pytest.mark.fresh_interpreter
@pytest.mark.parametrize("first", ["projected", "sfrik", "auh", "simclr"])
def test_hook_when_a_plugin_module_is_imported_first(tmp_path, first):
    # importing one of the plugin's solo modules imports solo.methods on the way, so the hook runs
    # while that module is half-imported: it leaves out what needs it, quietly, and the module's
    # last line registers it (before the fix, `import sfrik_plugin.solo.projected` first warned
    # and registered nothing; `.sfrik` first left SFRIK out until register_methods())
    fresh(
        f"""
        import warnings
        warnings.simplefilter('error', RuntimeWarning)
        import sfrik_plugin.solo.{first}
        from solo.methods import METHODS
        assert {{'sfrik', 'auh', 'simclr_shared'}} <= set(METHODS), sorted(METHODS)
        from sfrik_plugin.solo import AUH, SFRIK, SimCLRShared
        assert (METHODS['sfrik'], METHODS['auh'], METHODS['simclr_shared']) == (SFRIK, AUH, SimCLRShared)
    """,
        cwd=tmp_path,
    )


@pytest.mark.fresh_interpreter
def test_with_the_hook_off_importing_a_plugin_module_registers_nothing(tmp_path):
    fresh(
        """
        import sfrik_plugin.solo.projected, sfrik_plugin.solo.sfrik
        from solo.methods import METHODS
        assert 'sfrik' not in METHODS and 'auh' not in METHODS
    """,
        {"SFRIK_PLUGIN_SOLO_HOOK": "0"},
        cwd=tmp_path,
    )


def installed_pth() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / "sfrik_plugin_solo_hook.pth"


def hook_line() -> str:
    """The .pth line setup.py writes (hook_pth_line): the hook's source, executed in its own globals."""
    source = (REPO / "sfrik_plugin" / "solo_hook.py").read_text()
    return f"import sys; exec({source!r}, {{'__name__': '_sfrik_plugin_solo_hook'}})\n"


def test_installed_pth_is_the_current_hook():
    # this environment's install (make build: editable) put the .pth into site-packages
    pth = installed_pth()
    assert pth.is_file(), f"{pth} missing: reinstall the package (make build)"
    assert pth.read_text() == hook_line(), "the installed hook is stale: reinstall the package (make build)"
    assert pth.read_text().count("\n") == 1 and pth.read_text().startswith("import sys; exec(")


@pytest.mark.slow
def test_regular_install_build_writes_the_pth(tmp_path):
    # what a wheel (pip install .) is made of: build_py's output, the wheel's root = site-packages
    run_python("setup.py", "-q", "build_py", "--build-lib", tmp_path / "lib", cwd=REPO, set_env={"SFRIK_CPU_ONLY": "1"})
    assert (tmp_path / "lib" / "sfrik_plugin_solo_hook.pth").read_text() == hook_line()
    assert (tmp_path / "lib" / "sfrik_plugin" / "solo_hook.py").is_file()
