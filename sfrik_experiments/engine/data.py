"""Image datasets as uint8 tensors held in memory (n, c, h, w): Fashion-MNIST (Debian's
dataset-fashion-mnist files when present, else torchvision's download), CIFAR-10 and STL-10
through torchvision (downloaded unless download=False; a copy already there is used), or any
image folder. Small datasets in memory keep 2 CPU cores on the network."""

from __future__ import annotations

import argparse
import functools
import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

DATASETS = ("fashion-mnist", "cifar10", "stl10", "folder")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEFAULT_DATA_DIR = Path(os.environ.get("SFRIK_DATA_DIR", Path.home() / ".cache" / "sfrik-plugin" / "data"))


@dataclass
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8 (n, c, h, w): self-supervised pretraining and probe training
    train_labels: torch.Tensor  # int64 (n,)
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.train_labels, self.test_labels]).max()) + 1

    def validation_split(self, fraction: float = 1 / 6, seed: int = 0) -> ImageData:
        """The training split cut in two: a fixed random `fraction` becomes the evaluation set and
        the rest the training set, so that hyper-parameters can be chosen without the test split."""
        n = len(self.train_labels)
        held = max(1, round(n * fraction))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        train, val = order[held:].sort().values, order[:held].sort().values
        return ImageData(
            f"{self.name} (validation split)",
            self.train_images[train],
            self.train_labels[train],
            self.train_images[val],
            self.train_labels[val],
        )

    @functools.cached_property
    def channel_stats(self):
        """Per-channel mean and std of the training images in [0, 1], for normalisation."""
        x = self.train_images[:10000].float().div_(255)
        return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    """--dataset, --data-dir, --image-size and --no-download (default None: the caller's own)."""
    from sfrik_experiments.utils.arguments import positive_int

    shown = default or "the preset's"
    parser.add_argument("--dataset", choices=DATASETS, default=default, help=f"default: {shown}")
    parser.add_argument(
        "--data-dir",
        help=f"dataset root (default {DEFAULT_DATA_DIR}); for --dataset folder: class subfolders, or train/ and test/",
    )
    parser.add_argument("--image-size", type=positive_int, default=32, help="image size for --dataset folder")
    parser.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="never let torchvision download a dataset that is not there",
    )


def load(name: str, data_dir: str | None = None, *, download: bool = True, image_size: int = 32) -> ImageData:
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    root = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    if name == "fashion-mnist":
        return _fashion_mnist(root, download)
    if name == "cifar10":
        return _cifar10(root, download)
    if name == "stl10":
        return _stl10(root, download)
    if data_dir is None:
        raise ValueError("--dataset folder needs --data-dir: a folder of class subfolders (or train/ and test/ ones)")
    return _folder(root, image_size)


def _missing(name: str, root: Path, error: Exception) -> RuntimeError:
    return RuntimeError(f"{name} is not under {root} and could not be downloaded ({error}); point --data-dir at a copy")


def _torchvision(name: str, root: Path, make):
    """make() builds a torchvision dataset; a missing copy and a failed download become one clear error."""
    try:
        return make()
    except (RuntimeError, OSError) as error:  # torchvision: "Dataset not found"; urllib: no network
        raise _missing(name, root, error) from None


def _fashion_mnist(root: Path, download: bool) -> ImageData:
    from torchvision.datasets import FashionMNIST

    raw = root / "FashionMNIST" / "raw"
    if DEBIAN_FASHION_MNIST.is_dir() and not all((raw / f).exists() for f in FASHION_MNIST_FILES):
        # Debian ships the gzipped idx files; torchvision reads them unpacked in <root>/FashionMNIST/raw.
        raw.mkdir(parents=True, exist_ok=True)
        for f in FASHION_MNIST_FILES:
            with gzip.open(DEBIAN_FASHION_MNIST / f"{f}.gz", "rb") as src, open(raw / f, "wb") as dst:
                shutil.copyfileobj(src, dst)
    train, test = _torchvision(
        "Fashion-MNIST (on Debian: apt-get install dataset-fashion-mnist)",
        root,
        lambda: [FashionMNIST(str(root), train=t, download=download) for t in (True, False)],
    )
    return ImageData("fashion-mnist", train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets)


def _cifar10(root: Path, download: bool) -> ImageData:
    from torchvision.datasets import CIFAR10

    train, test = _torchvision(
        "CIFAR-10", root, lambda: [CIFAR10(str(root), train=t, download=download) for t in (True, False)]
    )

    def images(d):
        return torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous()

    return ImageData("cifar10", images(train), torch.tensor(train.targets), images(test), torch.tensor(test.targets))


def _stl10(root: Path, download: bool) -> ImageData:
    from torchvision.datasets import STL10

    train, test = _torchvision(
        "STL-10", root, lambda: [STL10(str(root), split=s, download=download) for s in ("train", "test")]
    )
    return ImageData(
        "stl10",
        torch.from_numpy(train.data),
        torch.from_numpy(train.labels).long(),
        torch.from_numpy(test.data),
        torch.from_numpy(test.labels).long(),
    )


def _folder(root: Path, image_size: int) -> ImageData:
    """root/<class>/* split 80/20 with a fixed seed, or root/train/<class>/* and root/test/<class>/*."""
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise ValueError(f"--data-dir {root} is not a folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = ImageFolder(str(root / "train")), ImageFolder(str(root / "test"))
        if train.classes != test.classes:
            raise ValueError(f"{root}/train and {root}/test must hold the same class folders")
        return ImageData(root.name, *_read(train, image_size), *_read(test, image_size))
    images, labels = _read(ImageFolder(str(root)), image_size)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    split = max(1, len(labels) // 5)
    test, train = order[:split], order[split:]
    return ImageData(root.name, images[train], labels[train], images[test], labels[test])


def _read(folder, image_size: int):
    from torchvision.transforms.v2 import functional as F

    images: list[torch.Tensor] = []
    for path, _ in folder.samples:
        image = F.pil_to_tensor(folder.loader(path).convert("RGB"))
        images.append(F.resize(F.center_crop(image, min(image.shape[1:])), [image_size, image_size], antialias=True))
    return torch.stack(images), torch.tensor(folder.targets)
