"""More than one process: every spelling of ``devices`` that Lightning accepts either trains at
the learning rate and schedule of its global batch, or is refused before solo-learn counts
devices, with a message that names devices and says what to write
(hydra_plugins/sfrik_plugin/_devices.py, sfrik_plugin/solo/processes.py).

The oracles: Lightning's own Trainer for the processes a spelling starts (on a machine that
pretends to have 8 GPUs where the spelling is a GPU one), and the official lr rule
(base lr x global batch / 256, the cosine ending at 0.001 x that). The slow tests run solo's
main_pretrain.py from its checkout ($SOLO_LEARN_DIR): two CPU processes (DDP, gloo) against one
process at the same global batch, and the spellings it refuses.
"""

import json
import math
import shlex
import types
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

from helpers.images import make_image_folder
from helpers.processes import failure
from helpers.solo import run_script, solo_cfg, solo_learn_checkout
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from hydra_plugins.sfrik_plugin._devices import DevicesError, processes_per_node
from sfrik_plugin.solo import register_methods
from sfrik_plugin.solo.processes import lightning_processes_per_node

BASE_LR = {"sfrik": 1.2, "vicreg": 0.7}  # sfrik_in20.yaml, vicreg_in20.yaml: optimizer.lr per 256 images
SMALL = ("method_kwargs.proj_hidden_dim=8", "method_kwargs.proj_output_dim=8")
FAKE_GPUS = 8
# The CPU line of docs/solo-learn.md's "Several processes": two processes of the CPU protocol
DOCS_CPU_LINE = "accelerator=cpu strategy=ddp \"devices='2'\""

# The spellings tried: Hydra's override values (a quoted value is a string) and what they give.
SPELLINGS = {
    "1": 1,
    "2": 2,
    "'1'": "1",
    "'2'": "2",
    "'3'": "3",
    "' 2'": " 2",
    "'auto'": "auto",
    "-1": -1,
    "'-1'": "-1",
    "'0,1'": "0,1",
    "'0,'": "0,",
    "'1,3'": "1,3",
    "[0]": [0],
    "[0,1]": [0, 1],
    "[1,3]": [1, 3],
    "0": 0,
    "'0'": "0",
    "-2": -2,
    "[]": [],
    "'0,0'": "0,0",
    "[0,0]": [0, 0],
    "'a'": "a",
    "true": True,
    "null": None,
    "2.0": 2.0,
}


@pytest.fixture
def eight_gpus(monkeypatch):
    """Lightning sees 8 CUDA GPUs (its device count only; nothing runs on them)."""
    import lightning.fabric.accelerators.cuda as fabric_cuda
    import lightning.pytorch.accelerators.cuda as pytorch_cuda

    for module in (fabric_cuda, pytorch_cuda):
        monkeypatch.setattr(module, "num_cuda_devices", lambda: FAKE_GPUS)


def lightning_count(devices, accelerator):
    """The oracle: the processes per node of Lightning's own Trainer, or None where it refuses."""
    import logging

    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    try:
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=devices,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, TypeError, ValueError):
        return None
    return trainer.num_devices


def refusal(err: BaseException) -> str:
    """The message of a DevicesError, raised directly or inside an OmegaConf resolver."""
    seen = err
    while seen is not None and not isinstance(seen, DevicesError):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None or "DevicesError" in str(err), f"not a refusal of devices: {err!r}"
    return str(err)


def assert_says_what_to_write(message: str, devices: object) -> None:
    shown = "[" + ",".join(map(str, devices)) + "]" if isinstance(devices, list) else None
    assert "devices=" in message and "write" in message and "docs/solo-learn.md" in message, message
    if shown is not None:
        assert f"devices={shown}" in message, message


def build(folder: Path, name: str, override: str, *more: str):
    """main_pretrain.py's order: compose, solo's parse_cfg, then the method from the parsed config."""
    cfg = solo_cfg(name, f"devices={override}", f"data.train_path={folder}", *SMALL, "backbone.name=resnet18", *more)
    return cfg, register_methods()[cfg.method](cfg)


# ---------------------------------------------------------------------------------------------
# 1. How many processes a spelling starts: Lightning's own count


@pytest.mark.parametrize("accelerator", ["cpu", "gpu", "auto"])
@pytest.mark.parametrize("override", list(SPELLINGS))
def test_the_processes_counted_are_lightnings(override, accelerator, eight_gpus):
    devices = SPELLINGS[override]
    expected = lightning_count(devices, accelerator)
    if expected is None or devices is True:  # Lightning refuses it (devices=true: deliberately refused too)
        with pytest.raises(DevicesError) as err:
            lightning_processes_per_node(devices, accelerator)
        assert_says_what_to_write(str(err.value), devices)
        return
    assert lightning_processes_per_node(devices, accelerator) == expected
    # without torch (the configs' resolvers): the same count, or "depends on the machine"
    assert processes_per_node(devices, accelerator) in (expected, None)
    if processes_per_node(devices, accelerator) is None:
        assert expected == FAKE_GPUS  # every visible GPU


# ---------------------------------------------------------------------------------------------
# 2. Every spelling Lightning accepts trains at its global batch's lr, or is refused at start


@pytest.mark.parametrize(
    "name, accelerator, batch",
    [("sfrik_cpu", "cpu", 8), ("sfrik", "gpu", 512), ("sfrik", "auto", 512)],
)
@pytest.mark.parametrize("override", list(SPELLINGS))
def test_every_accepted_spelling_trains_at_its_global_batch_or_is_refused_at_start(
    override, name, accelerator, batch, eight_gpus, image_folder
):
    devices = SPELLINGS[override]
    processes = lightning_count(devices, accelerator)
    try:
        cfg, model = build(image_folder, name, override, f"accelerator={accelerator}")
    except (DevicesError, InterpolationResolutionError) as err:  # refused: inside solo's parse_cfg, or in the method
        assert_says_what_to_write(refusal(err), devices)
        # what is refused: what Lightning refuses, and the integers solo-learn cannot take len() of
        assert processes is None or isinstance(devices, int), (override, processes)
        return
    assert processes is not None, f"devices={override} was not refused, but Lightning refuses it"
    peak = BASE_LR["sfrik"] * batch * processes / 256  # the official rule on the global batch
    assert cfg.optimizer.lr == pytest.approx(peak, rel=1e-12)
    assert model.lr == pytest.approx(peak, rel=1e-12)
    assert model.min_lr == pytest.approx(0.001 * peak, rel=1e-12)  # the cosine end follows
    assert cfg.optimizer.lr_processes_per_node == model.processes_per_node == processes


def test_the_issues_spellings_on_the_cpu(image_folder):
    # devices=2: solo-learn's TypeError before; now refused with what to write
    with pytest.raises(Exception, match="devices=2 with accelerator=cpu: solo-learn scales the learning rate") as err:
        build(image_folder, "sfrik_cpu", "2")
    assert "\"devices='2'\"" in str(err.value)
    # devices=[0,1]: Lightning's TypeError once the data were loaded; now refused inside parse_cfg
    with pytest.raises(Exception, match=r"devices=\[0,1\] with accelerator=cpu: Lightning's CPU accelerator") as err:
        build(image_folder, "sfrik_cpu", "[0,1]")
    assert "strategy=ddp sync_batchnorm=False \"devices='2'\"" in str(err.value)
    # devices='2': two processes at the lr of one (0.0375) before; now the lr of the global batch 16
    cfg, model = build(image_folder, "sfrik_cpu", "'2'", "strategy=ddp")
    assert (model.lr, model.min_lr) == (pytest.approx(0.075), pytest.approx(0.075e-3))
    one, single = build(image_folder, "sfrik_cpu", "'1'", "optimizer.batch_size=16")
    assert (model.lr, model.min_lr) == (pytest.approx(single.lr, rel=1e-15), pytest.approx(single.min_lr, rel=1e-15))


def test_the_classifier_lr_is_rescaled_where_solo_scaled_it(image_folder):
    # solo scales the online classifier's lr by the same product when there is a validation set
    _, model = build(image_folder, "sfrik_cpu", "'2'", f"data.val_path={image_folder}")
    assert model.classifier_lr == pytest.approx(0.1 * 16 / 256)
    _, model = build(image_folder, "sfrik_cpu", "'2'")  # no validation set: solo leaves it as it is
    assert model.classifier_lr == pytest.approx(0.1)


def test_the_lr_is_scaled_once(image_folder):
    # args.json holds the scaled config: rebuilding the method from it (main_knn.py,
    # load_from_checkpoint) or building twice from one config scales nothing again
    cfg, model = build(image_folder, "sfrik_cpu", "'2'")
    again = register_methods()["sfrik"](cfg)
    saved = OmegaConf.create(json.loads(json.dumps(OmegaConf.to_container(cfg))))
    reloaded = register_methods()["sfrik"](saved)
    assert model.lr == again.lr == reloaded.lr == pytest.approx(0.075)
    assert saved.optimizer.lr_processes_per_node == 2


def test_num_nodes_multiplies_the_global_batch(image_folder):
    _, model = build(image_folder, "sfrik_cpu", "'2'", "num_nodes=3")
    assert model.lr == pytest.approx(1.2 * 8 * 2 * 3 / 256)


def test_synchronised_batch_norm_with_several_cpu_processes_is_refused_at_start(image_folder):
    # torch's SyncBatchNorm runs on GPUs only: it would fail at the first training step
    with pytest.raises(DevicesError, match="sync_batchnorm=True with 2 CPU processes.*write sync_batchnorm=False"):
        build(image_folder, "sfrik_cpu", "'2'", "sync_batchnorm=True")
    build(image_folder, "sfrik_cpu", "'1'", "sync_batchnorm=True")  # one process: nothing to synchronise


@pytest.mark.parametrize(
    "name, override, accelerator",
    [("vicreg_cpu", "'2'", "cpu"), ("vicreg_cpu", "'auto'", "cpu"), ("vicreg_in20", "'0,1'", "gpu")],
)
def test_solo_learns_own_methods_are_refused_where_their_lr_would_be_wrong(name, override, accelerator, image_folder):
    # solo's VICReg keeps solo's lr (len(devices)): the plugin's cosine end refuses to build it
    with pytest.raises(Exception, match="'vicreg' is one of solo-learn's own methods") as err:
        build(image_folder, name, override)
    assert_says_what_to_write(refusal(err.value), SPELLINGS[override])
    if accelerator == "gpu":
        assert "write devices=[0,1]" in str(err.value)


@pytest.mark.parametrize("name, override, batch", [("vicreg_cpu", "'1'", 8), ("vicreg_in20", "[0,1]", 512)])
def test_solo_learns_own_methods_train_where_len_devices_is_the_process_count(name, override, batch, image_folder):
    _, model = build(image_folder, name, override)
    assert model.lr == pytest.approx(BASE_LR["vicreg"] * batch * (2 if "," in override else 1) / 256)


def test_the_trainer_must_run_the_processes_the_lr_was_scaled_for(image_folder):
    _, model = build(image_folder, "sfrik_cpu", "'2'")
    model._trainer = types.SimpleNamespace(num_devices=1, num_nodes=1)
    with pytest.raises(DevicesError, match=r"scaled for 2 process\(es\) per node on 1 node\(s\).*runs 1 on 1"):
        model.setup("fit")
    model._trainer = types.SimpleNamespace(num_devices=2, num_nodes=1)
    model.setup("fit")


# ---------------------------------------------------------------------------------------------
# 3. solo's main_pretrain.py from the checkout


def pretrain_cmd(image_folder: Path, root: Path, *overrides: str) -> list[str]:
    return [
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={image_folder}",
        f"checkpoint.dir={root / 'ckpt'}",
        f"+default_root_dir={root / 'runs'}",
        *overrides,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("override", ["devices=2", "devices=[0,1]"])
def test_main_pretrain_refuses_the_bad_spellings_at_start(tmp_path, image_folder, override):
    proc = run_script(
        solo_learn_checkout(),
        "main_pretrain.py",
        *pretrain_cmd(image_folder, tmp_path, "strategy=ddp", override),
        check=False,
    )
    assert proc.returncode != 0, failure(proc)
    assert f"{override} with accelerator=cpu" in proc.stderr and "\"devices='2'\"" in proc.stderr, failure(proc)
    # before the Trainer (Lightning's device banner), hence before any data loading or training
    assert "GPU available" not in proc.stdout + proc.stderr, failure(proc)
    assert not (tmp_path / "ckpt").exists()


# A launcher that records, in every process, the schedule Lightning runs, then runs solo's script;
# sys.argv[0] stays the launcher, so Lightning's DDP launcher starts the other rank through it too.
RECORDING_LAUNCHER = """
import json, os
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback

class Record(Callback):
    def __init__(self):
        self.lrs, self.batches = [], []
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])  # the lr of this step
        self.batches.append(len(batch[0]))
    def on_train_end(self, trainer, module):
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        record = {
            "world_size": trainer.world_size, "num_devices": trainer.num_devices,
            "steps": trainer.estimated_stepping_batches, "lrs": self.lrs, "batches": self.batches,
            "peak": module.lr, "eta_min": scheduler.eta_min, "base_lrs": scheduler.base_lrs,
        }
        path = os.path.join(os.environ["SFRIK_RECORD_DIR"], f"rank{trainer.global_rank}.json")
        with open(path, "w") as f:
            json.dump(record, f)

fit = Trainer.fit
def recorded_fit(trainer, *args, **kwargs):
    trainer.callbacks.insert(0, Record())
    return fit(trainer, *args, **kwargs)
Trainer.fit = recorded_fit
script = os.path.abspath("main_pretrain.py")
with open(script) as f:
    exec(compile(f.read(), script, "exec"), {"__name__": "__main__", "__file__": script})
"""


@pytest.mark.slow
def test_two_cpu_processes_follow_the_schedule_of_one_at_the_same_global_batch(tmp_path):
    # One process with batch 16, and two DDP processes (gloo) with batch 8 each, as the docs say
    # to run it: the same global batch, so the same steps and, step by step, the same lr, from
    # the official rule (peak 1.2 x 16 / 256 = 0.075, the cosine ending at 0.001 x that). Before,
    # the two processes trained at the lr of one (0.0375) without a word.
    images = make_image_folder(tmp_path / "images", per_class=16)  # 80 images: 5 steps of 16
    launcher = tmp_path / "launch.py"
    launcher.write_text(RECORDING_LAUNCHER)
    common = ("scheduler.warmup_epochs=0", "checkpoint.enabled=False")  # the cosine from the peak, in 5 steps
    runs = {
        "one": ("optimizer.batch_size=16",),
        "two": ("optimizer.batch_size=8", *shlex.split(DOCS_CPU_LINE)),
    }
    records = {}
    for run, overrides in runs.items():
        out = tmp_path / run
        out.mkdir()
        proc = run_script(
            solo_learn_checkout(),
            launcher,
            *pretrain_cmd(images, out, *common, *overrides),
            set_env={"SFRIK_RECORD_DIR": str(out)},
        )
        records[run] = {p.stem: json.loads(p.read_text()) for p in out.glob("rank*.json")}
        # the rescaled lr is said once (by the first process), where solo's scaling was wrong
        said = proc.stdout.count("and solo-learn scaled the lr by len(devices) = 1: optimizer.lr is now 0.075,")
        assert said == (1 if run == "two" else 0), proc.stdout[-2000:]
    assert set(records["one"]) == {"rank0"} and set(records["two"]) == {"rank0", "rank1"}, records
    one = records["one"]["rank0"]
    peak = 1.2 * 16 / 256
    assert (one["world_size"], one["steps"], one["batches"]) == (1, 5, [16] * 5)
    assert one["peak"] == pytest.approx(peak) and one["eta_min"] == pytest.approx(0.001 * peak)
    # the official schedule without warm-up (valeoai/sfrik adjust_learning_rate): the cosine from
    # the peak towards 0.001 x the peak over the run's steps
    official = [peak * (q := 0.5 * (1 + math.cos(math.pi * k / 5))) + 0.001 * peak * (1 - q) for k in range(5)]
    assert one["lrs"] == pytest.approx(official, rel=1e-12)
    for rank, two in records["two"].items():
        assert (two["world_size"], two["num_devices"], two["batches"]) == (2, 2, [8] * 5), rank
        assert two["steps"] == one["steps"], rank
        assert two["peak"] == pytest.approx(one["peak"], rel=1e-12), rank
        assert two["eta_min"] == pytest.approx(one["eta_min"], rel=1e-12), rank
        assert two["base_lrs"] == pytest.approx(one["base_lrs"], rel=1e-12), rank
        assert two["lrs"] == pytest.approx(one["lrs"], rel=1e-12), rank


def test_the_docs_give_the_line_the_two_process_test_runs():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "solo-learn.md").read_text()
    assert "### Several processes" in docs
    assert DOCS_CPU_LINE in docs
