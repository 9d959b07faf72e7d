"""The lines of docs/solo-learn.md that make the image folders of the CPU commands from
Fashion-MNIST, run as written on a tiny Fashion-MNIST (idx files, as Debian and torchvision have
them): every image lands in its class folder with its pixels, train and tuning are disjoint, and
the folders read back through torchvision's ImageFolder (solo's data.format image_folder) with the
same classes. Also what the command refuses."""

import os
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.processes import run_python

pytest.importorskip("torchvision", reason="the dataset loaders need torchvision")

from sfrik_experiments.engine import image_folder

DOC = Path(__file__).resolve().parents[2] / "docs" / "solo-learn.md"
CLASSES = [
    "0_t_shirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat",
    "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot",
]  # fmt: skip


def doc_commands() -> list[str]:
    """The code lines of the section "Image folders for the CPU commands"."""
    text = DOC.read_text()
    section = text[text.index("### Image folders for the CPU commands") :]
    section = section[: section.index("\n### ")]
    return [line.strip() for line in section.splitlines() if line.startswith("    ")]


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format of (Fashion-)MNIST: magic 0x08 (uint8) and the number of dims, then the dims
    as big-endian int32, then the bytes."""
    path.write_bytes(struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape) + array.tobytes())


def tiny_fashion_mnist(root: Path, train_per_class: int = 125, test_per_class: int = 25) -> dict:
    """<root>/FashionMNIST/raw/*-ubyte with random 28x28 images, classes interleaved (as in the real
    files, which are not sorted by class); returns the arrays."""
    rng = np.random.default_rng(0)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = rng.permutation(np.arange(10 * per_class) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


def check_folder(folder: Path, images: np.ndarray, labels: np.ndarray, source: str, first: int, count: int):
    """folder/<class>/<source>_<i>.png holds exactly images first .. first + count - 1 of each class."""
    from PIL import Image

    assert sorted(p.name for p in folder.iterdir()) == CLASSES
    for label, name in enumerate(CLASSES):
        expected = np.flatnonzero(labels == label)[first : first + count]
        files = sorted((folder / name).iterdir(), key=lambda p: int(p.stem.split("_")[1]))
        assert [p.name for p in files] == [f"{source}_{i}.png" for i in expected]
        for path, index in zip(files, expected):
            assert np.array_equal(np.asarray(Image.open(path)), images[index]), path
    return {int(p.stem.split("_")[1]) for p in folder.glob("*/*.png")}


@pytest.mark.fresh_interpreter
def test_the_documented_lines_make_the_image_folders(tmp_path):
    commands = doc_commands()
    assert commands[0].startswith("sudo apt-get install dataset-fashion-mnist")  # Debian's files (not run here)
    (command,) = [c for c in commands if c.startswith("python ")]
    assert command.startswith("python -m sfrik_experiments.engine.image_folder ")
    arrays = tiny_fashion_mnist(tmp_path / "data")
    home = tmp_path / "home"
    home.mkdir()
    # as written, in a shell, with this interpreter as `python` and the tiny copy as the data root
    env = {"HOME": str(home), "SFRIK_DATA_DIR": str(tmp_path / "data")}
    script = f'python() {{ {shlex.quote(sys.executable)} "$@"; }}\n{command}\n'
    proc = subprocess.run(
        ["bash", "-c", script], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = home / "data" / "fmnist"
    assert sorted(p.name for p in out.iterdir()) == ["train", "tuning", "val"]  # nothing partial left
    train = check_folder(out / "train", *arrays["train"], "train", 0, 100)
    tuning = check_folder(out / "tuning", *arrays["train"], "train", 100, 20)
    check_folder(out / "val", *arrays["t10k"], "test", 0, 20)
    assert not train & tuning
    for split, count in (("train", 1000), ("tuning", 200), ("val", 200)):
        assert f"{out / split}: {count} images in 10 class folders" in proc.stdout

    # what solo's image_folder format reads: the same classes everywhere, each label its folder
    from torchvision.datasets import ImageFolder

    folders = {split: ImageFolder(str(out / split)) for split in ("train", "tuning", "val")}
    assert all(f.classes == CLASSES for f in folders.values())
    assert folders["val"].targets == [label for label in range(10) for _ in range(20)]


@pytest.mark.fresh_interpreter
def test_the_command_refuses_what_it_cannot_do_before_writing(tmp_path):
    tiny_fashion_mnist(tmp_path / "data", train_per_class=12, test_per_class=3)
    base = ["-m", "sfrik_experiments.engine.image_folder", "--data-dir", tmp_path / "data", "--no-download"]
    out = tmp_path / "out"

    small = run_python(*base, "--out", out, "--train-per-class", "10", "--val-per-class", "3", check=False)
    assert small.returncode != 0 and not out.exists()  # 10 + the default 20 tuning images > 12
    assert (
        "--train-per-class 10 + --tuning-per-class 20 (training split): class 0 has 12 images there, 30 are needed"
    ) in small.stderr
    small = run_python(*base, "--out", out, "--train-per-class", "10", "--tuning-per-class", "0", check=False)
    assert small.returncode != 0 and not out.exists()
    assert "--val-per-class (test split): class 0 has 3 images there, 20 are needed" in small.stderr

    run_python(*base, "--out", out, "--train-per-class", "10", "--tuning-per-class", "0", "--val-per-class", "3")
    assert sorted(p.name for p in out.iterdir()) == ["train", "val"]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    again = run_python(
        *base, "--out", out, "--train-per-class", "5", "--tuning-per-class", "0", "--val-per-class", "3", check=False
    )
    assert again.returncode != 0 and f"{out / 'train'}, {out / 'val'} already exist(s)" in again.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing replaced

    # a dataset that is not there (CIFAR-10: Debian's Fashion-MNIST files would be found)
    missing = [*base, "--out", tmp_path / "o2", "--dataset", "cifar10", "--data-dir", tmp_path / "nothing"]
    proc = run_python(*missing, check=False)
    assert proc.returncode != 0 and "CIFAR-10 is not under" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_class_folders_sort_in_label_order():
    assert image_folder.class_folders("fashion-mnist", 10) == CLASSES
    assert image_folder.class_folders("cifar10", 10)[:2] == ["0_airplane", "1_automobile"]
    folders = image_folder.class_folders("other", 12)
    assert folders[:2] == ["00_class", "01_class"] and folders == sorted(folders)
