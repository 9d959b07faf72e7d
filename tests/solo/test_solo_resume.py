"""Resume: a SFRIK run of solo-learn's main_pretrain.py interrupted after its first epoch and
resumed from that epoch's checkpoint ends bit-for-bit where the uninterrupted run ends
(parameters, buffers, optimizer state, step), on the CPU protocol with deterministic settings.

The interruption is the uninterrupted run's own epoch-0 checkpoint (kept with
checkpoint.keep_prev): the state a run killed right after writing it leaves behind, with the
same configuration (max_epochs, hence the same learning-rate schedule). Exact equality holds
because the checkpoint carries the random-number states (ProjectedMethod.on_save_checkpoint):
without them the resumed epoch draws another shuffle and other augmentations.

Slow; needs solo-learn and its checkout ($SOLO_LEARN_DIR), skipped otherwise.
"""

import subprocess
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.images import make_image_folder
from helpers.solo import run_script, solo_learn_checkout

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles

TIMEOUT_S = 600


def pretrain(checkout: Path, images: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        "main_pretrain.py",
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={images}",
        f"checkpoint.dir={out}",
        "max_epochs=2",
        "++seed=1234",
        "++checkpoint.keep_prev=True",
        "++deterministic=True",
        f"+default_root_dir={out / 'runs'}",
        *extra,
    ]
    return run_script(checkout, *args, set_env={"OMP_NUM_THREADS": "1"}, timeout=TIMEOUT_S)


def checkpoint(out: Path, epoch: int) -> Path:
    (path,) = (out / "sfrik").glob(f"*/*-ep={epoch}.ckpt")
    return path


def assert_same_tensors(a, b, where: str):
    """Equal structure and bit-equal tensors (NaN nowhere, so torch.equal suffices)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max difference {(a.double() - b.double()).abs().max()}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_resumed_run_ends_with_the_parameters_of_the_uninterrupted_run(tmp_path):
    checkout = solo_learn_checkout()
    images = make_image_folder(tmp_path / "images" / "train", per_class=6)  # 30 images: 3 steps per epoch
    full, resumed = tmp_path / "full", tmp_path / "resumed"

    pretrain(checkout, images, full)
    interrupted_at = checkpoint(full, 0)
    pretrain(checkout, images, resumed, f"++resume_from_checkpoint='{interrupted_at}'")

    a = torch.load(checkpoint(full, 1), map_location="cpu", weights_only=False)
    b = torch.load(checkpoint(resumed, 1), map_location="cpu", weights_only=False)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (1, 6)
    start = torch.load(interrupted_at, map_location="cpu", weights_only=False)
    changed = [
        k for k, v in a["state_dict"].items() if v.is_floating_point() and not torch.equal(v, start["state_dict"][k])
    ]
    assert changed, "the second epoch changed nothing: the comparison would be vacuous"
    assert_same_tensors(a["state_dict"], b["state_dict"], "state_dict")
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    assert_same_tensors(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")
