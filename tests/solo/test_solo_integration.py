"""solo-learn integration end to end (slow): the whole chain pretrain -> linear probe -> kNN
loading run with solo-learn's own scripts from its checkout ($SOLO_LEARN_DIR), and a two-process
DDP pretraining whose ranks shard the MMD and equal the all-gather run. The methods themselves are
tested in test_solo_methods.py, their registration, the Hydra plugin and the kNN command in
test_solo_registration.py.

Skipped as a whole where solo-learn is not installed (`make solo-learn` installs it).
"""

import json

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.images import make_image_folder
from helpers.processes import run_code
from helpers.solo import cpu_cfg, run_script, solo_learn_checkout

from sfrik_plugin.solo import SFRIK


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
