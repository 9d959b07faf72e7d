"""solo-learn integration: the SFRIK and AUH methods, their registration in solo.methods.METHODS,
the Hydra plugin, the kNN command, and (slow) the whole chain pretrain -> linear probe -> kNN loading
run with solo-learn's own scripts from its checkout ($SOLO_LEARN_DIR).

Skipped as a whole where solo-learn is not installed (`make solo-learn` installs it).
"""

import json
import math
import sys
import textwrap
import types
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.images import NUM_CLASSES, make_image_folder
from helpers.processes import run_code, run_python
from helpers.solo import (
    cpu_cfg,
    fake_batch,
    run_script,
    run_training_step,
    solo_learn_checkout,
)

from sfrik_plugin.losses import AUHLoss, SFRIKLoss
from sfrik_plugin.regulariser import MMDOptions
from sfrik_plugin.solo import AUH, SFRIK, register_methods
from sfrik_plugin.solo.knn import find_solo_learn_dir, split_args


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "train")


# ---------------------------------------------------------------------------------------------
# Methods


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


# ---------------------------------------------------------------------------------------------
# Registration and the Hydra plugin


def test_registration_adds_methods_idempotently():
    from solo.methods import METHODS

    assert register_methods() is METHODS
    size = len(METHODS)
    register_methods()
    assert len(METHODS) == size
    assert METHODS["sfrik"] is SFRIK and METHODS["auh"] is AUH
    assert METHODS["vicreg"].__module__ == "solo.methods.vicreg"  # built-ins untouched


def test_registration_never_replaces_another_method():
    other = type("Other", (), {})
    table = {"sfrik": other}
    with pytest.warns(RuntimeWarning, match="already"):
        register_methods(table)
    assert table["sfrik"] is other and table["auh"] is AUH


@pytest.mark.fresh_interpreter
def test_hydra_plugin_import_and_discovery_are_cheap(tmp_path):
    # from a folder outside the repository: the installed package, not the source tree
    proc = run_code(
        """
        import sys
        import hydra_plugins.sfrik_plugin.sfrik_searchpath as p
        assert "torch" not in sys.modules and "solo" not in sys.modules, "plugin import is not cheap"
        from hydra.core.plugins import Plugins
        from hydra.plugins.search_path_plugin import SearchPathPlugin
        found = Plugins.instance().discover(SearchPathPlugin)
        assert p.SFRIKSearchPathPlugin in found, found
        assert "torch" not in sys.modules and "solo" not in sys.modules, "plugin discovery is not cheap"
        from hydra import compose, initialize
        with initialize(version_base="1.2", config_path=None):
            cfg = compose(config_name="sfrik")  # read from pkg://sfrik_plugin_configs
        assert cfg.method == "sfrik"
        assert "torch" not in sys.modules and "solo" not in sys.modules, "composing a config is not cheap"
        print("ok")
    """,
        cwd=tmp_path,
    )
    assert proc.stdout.strip() == "ok"


@pytest.mark.fresh_interpreter
def test_sfrik_plugin_solo_import_does_not_need_solo(tmp_path):
    run_code(
        """
        import sys
        import sfrik_plugin.solo
        from sfrik_plugin.solo import register_methods
        assert "solo" not in sys.modules and "solo.methods" not in sys.modules
    """,
        cwd=tmp_path,
    )


def test_plugin_registration_is_lazy_and_never_fatal(monkeypatch):
    from hydra_plugins.sfrik_plugin import sfrik_searchpath as plugin

    # solo.methods not imported (an unrelated Hydra app): nothing is imported or registered
    monkeypatch.delitem(sys.modules, "solo.methods", raising=False)
    called = []
    monkeypatch.setattr("sfrik_plugin.solo.registration.register_methods", lambda: called.append(1))
    plugin.register_solo_methods()
    assert called == []

    def broken():
        raise ImportError("simulated broken solo install")

    monkeypatch.setitem(sys.modules, "solo.methods", types.ModuleType("solo.methods"))
    monkeypatch.setattr("sfrik_plugin.solo.registration.register_methods", broken)
    with pytest.warns(RuntimeWarning, match="could not register"):
        plugin.register_solo_methods()


@pytest.mark.fresh_interpreter
def test_plugin_appends_packaged_configs_and_registers(tmp_path):
    # a fresh process: composing "sfrik" without any config path goes through the plugin (the
    # import hook, which would register at `import solo.methods` already, switched off)
    proc = run_code(
        """
        from hydra import compose, initialize
        from solo.methods import METHODS
        assert "sfrik" not in METHODS
        with initialize(version_base="1.2", config_path=None):
            cfg = compose(config_name="sfrik")
        assert cfg.method == "sfrik"
        assert "sfrik" in METHODS and "auh" in METHODS
        print(METHODS["sfrik"].__module__)
    """,
        cwd=tmp_path,
        set_env={"SFRIK_PLUGIN_SOLO_HOOK": "0"},
    )
    assert proc.stdout.strip() == "sfrik_plugin.solo.sfrik"


# ---------------------------------------------------------------------------------------------
# kNN command


def test_knn_finds_checkout(tmp_path, monkeypatch):
    (tmp_path / "main_knn.py").write_text("")
    monkeypatch.delenv("SOLO_LEARN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert find_solo_learn_dir() == tmp_path.resolve()
    monkeypatch.chdir("/")
    monkeypatch.setenv("SOLO_LEARN_DIR", str(tmp_path))
    assert find_solo_learn_dir() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="no main_knn.py in"):
        find_solo_learn_dir(str(tmp_path / "nowhere"))  # explicit wins, even when wrong
    opts, rest = split_args(["--solo-learn-dir", "x", "--k", "10", "20", "--cpu", "--umap"])
    assert (opts.solo_learn_dir, opts.cpu, opts.umap, rest) == ("x", True, True, ["--k", "10", "20"])


@pytest.mark.fresh_interpreter
def test_knn_command_registers_then_runs_main_knn(tmp_path):
    # a stand-in main_knn.py (the real one needs CUDA) that reports what it would look up
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "main_knn.py").write_text(
        textwrap.dedent("""
        import json, sys
        from solo.methods import METHODS
        if __name__ == "__main__":
            print(json.dumps({"argv": sys.argv[1:], "sfrik": METHODS["sfrik"].__name__,
                              "auh": METHODS["auh"].__name__}))
    """)
    )
    knn = ["-m", "sfrik_plugin.solo.knn"]
    proc = run_python(
        *knn, "--solo-learn-dir", checkout, "--pretrained_checkpoint_dir", "d", "--k", 10, 20, cwd=tmp_path
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"argv": ["--pretrained_checkpoint_dir", "d", "--k", "10", "20"], "sfrik": "SFRIK", "auh": "AUH"}

    proc = run_python(*knn, "--k", "10", cwd=tmp_path, unset_env=["SOLO_LEARN_DIR"], check=False)
    assert proc.returncode != 0 and "sfrik-knn: no main_knn.py in" in proc.stderr
    # --help works without a checkout: this command's options, and where the script's would come from
    helped = run_python(*knn, "--help", cwd=tmp_path, unset_env=["SOLO_LEARN_DIR"])
    assert "--cpu" in helped.stdout and "--umap" in helped.stdout and "no main_knn.py in" in helped.stdout
    # with the stand-in: --cpu and --umap reach the script (main_umap.py here), which sees CUDA
    # moves kept on the CPU
    (checkout / "main_umap.py").write_text(
        textwrap.dedent("""
        import json, torch
        from solo.methods import METHODS
        x = torch.ones(2).cuda()
        m = torch.nn.Linear(2, 2).to("cuda")
        print(json.dumps({"device": str(x.device), "module": str(m.weight.device), "sfrik": METHODS["sfrik"].__name__}))
    """)
    )
    proc = run_python(*knn, "--solo-learn-dir", checkout, "--umap", "--cpu", cwd=tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"device": "cpu", "module": "cpu", "sfrik": "SFRIK"}


# ---------------------------------------------------------------------------------------------
# End to end with solo-learn's scripts


@pytest.mark.slow
def test_pretrain_linear_and_knn_loading_end_to_end(tmp_path, image_folder):
    checkout = solo_learn_checkout()
    ckpt_dir, runs = tmp_path / "ckpt", tmp_path / "runs"

    # 1. pretraining: solo's main_pretrain.py finds the packaged config without --config-path
    run_script(
        checkout,
        "main_pretrain.py",
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={image_folder}",
        f"checkpoint.dir={ckpt_dir}",
        "+limit_train_batches=2",
        f"+default_root_dir={runs}",
    )
    (run_dir,) = (ckpt_dir / "sfrik").iterdir()
    (ckpt,) = run_dir.glob("*.ckpt")
    args = json.loads((run_dir / "args.json").read_text())
    assert args["method"] == "sfrik" and args["method_kwargs"]["kernel_weights"] == [1.0, 40.0, 40.0]

    # what main_linear.py needs: torch.load's default (weights_only) reads it, and its "backbone."
    # keys are exactly solo's ResNet-18 (main_linear loads them with strict=False: check here)
    from solo.methods.base import BaseMethod

    state = torch.load(ckpt, map_location="cpu")["state_dict"]
    backbone_state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    backbone = BaseMethod._BACKBONES["resnet18"]("sfrik")
    backbone.fc = torch.nn.Identity()
    backbone.load_state_dict(backbone_state, strict=True)

    # 2. linear probe on the checkpoint (the "=" in solo's checkpoint names needs Hydra quoting),
    # validated on a held-out folder (linear_cpu makes data.val_path mandatory)
    held_out = make_image_folder(tmp_path / "val", seed=1)
    proc = run_script(
        checkout,
        "main_linear.py",
        "--config-name",
        "linear_cpu",
        f"data.train_path={image_folder}",
        f"data.val_path={held_out}",
        f"pretrained_feature_extractor='{ckpt}'",
        "+limit_train_batches=2",
        "+limit_val_batches=2",
        f"+default_root_dir={runs}",
    )
    assert "Traceback" not in proc.stderr

    # 3. what main_knn.py relies on, in a fresh process from the checkout: the registration
    # makes METHODS["sfrik"] and load_from_checkpoint rebuilds the model from args.json
    proc = run_code(
        f"""
        import json, torch
        from omegaconf import OmegaConf
        from sfrik_plugin.solo import register_methods
        register_methods()
        from solo.methods import METHODS
        with open({str(run_dir / "args.json")!r}) as f:
            method_args = json.load(f)
        cfg = OmegaConf.create(method_args)
        model = METHODS[method_args["method"]].load_from_checkpoint({str(ckpt)!r}, strict=False, cfg=cfg)
        state = torch.load({str(ckpt)!r}, map_location="cpu")["state_dict"]
        loaded = model.state_dict()
        assert state.keys() == loaded.keys()
        assert all(torch.equal(v, loaded[k]) for k, v in state.items())
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 32, 32))
        print(type(model).__name__, tuple(out["feats"].shape), tuple(out["z"].shape))
    """,
        cwd=checkout,
    )
    assert proc.stdout.strip().splitlines()[-1] == "SFRIK (2, 512) (2, 256)"


# A launcher that counts the sharded regulariser's calls per rank, then runs solo's script;
# sys.argv[0] stays the launcher, so Lightning's DDP launcher starts the other rank through it too.
COUNTING_LAUNCHER = """
import atexit, json, os
import sfrik_plugin.regulariser as regulariser
calls = {"sharded": 0}
real = regulariser.sharded_mmd
def counted(*args, **kwargs):
    calls["sharded"] += 1
    return real(*args, **kwargs)
regulariser.sharded_mmd = counted
def report():
    rank = os.environ.get("LOCAL_RANK", "0")
    with open(os.path.join(os.environ["SFRIK_CALLS_DIR"], f"rank{rank}.json"), "w") as f:
        json.dump(calls, f)
atexit.register(report)
# exec, not runpy.run_path: run_path points sys.argv[0] at the script while it runs
script = os.path.abspath("main_pretrain.py")
with open(script) as f:
    exec(compile(f.read(), script, "exec"), {"__name__": "__main__", "__file__": script})
"""


@pytest.mark.slow
def test_ddp_pretraining_shards_the_mmd_and_equals_the_all_gather(tmp_path, image_folder):
    # Two CPU processes (DDP, gloo), one optimiser step at the constant base lr, from the same
    # seed: by default every rank goes through the sharded regulariser, and the weights after the
    # step equal those of the same run with shard_mmd=false (all-gather with autograd, every pair
    # on every rank), while the step itself moved them.
    checkout = solo_learn_checkout()
    launcher = tmp_path / "launch.py"
    launcher.write_text(COUNTING_LAUNCHER)
    states = {}
    for shard in ("true", "false"):
        calls_dir, ckpt_dir = tmp_path / f"calls_{shard}", tmp_path / f"ckpt_{shard}"
        calls_dir.mkdir()
        run_script(
            checkout,
            launcher,
            "--config-name",
            "sfrik_cpu",
            f"data.train_path={image_folder}",
            f"checkpoint.dir={ckpt_dir}",
            "+limit_train_batches=1",
            f"+default_root_dir={tmp_path / 'runs'}",
            'devices="2"',
            "strategy=ddp",
            f"method_kwargs.shard_mmd={shard}",
            "scheduler.name=none",
            set_env={"SFRIK_CALLS_DIR": str(calls_dir)},
        )
        calls = {p.name: json.loads(p.read_text())["sharded"] for p in calls_dir.iterdir()}
        assert set(calls) == {"rank0.json", "rank1.json"}, calls
        if shard == "true":
            assert all(n > 0 for n in calls.values()), calls
        else:
            assert all(n == 0 for n in calls.values()), calls
        (ckpt,) = (ckpt_dir / "sfrik").glob("*/*.ckpt")
        states[shard] = torch.load(ckpt, map_location="cpu")["state_dict"]
    assert states["true"].keys() == states["false"].keys()
    import lightning

    lightning.seed_everything(cpu_cfg("sfrik_cpu", image_folder).seed)  # main_pretrain's order: seed, build
    initial = SFRIK(cpu_cfg("sfrik_cpu", image_folder)).state_dict()
    key = "projector.0.weight"
    step = (states["true"][key] - initial[key]).abs().max()
    assert step > 100 * (states["true"][key] - states["false"][key]).abs().max(), step
    for key, value in states["true"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, states["false"][key], rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(value, states["false"][key]), key
