"""A dataset of engine.data written as the image folders that solo-learn's CPU commands read
(torchvision's ImageFolder layout, <out>/<split>/<class>/<image>.png):

    python -m sfrik_experiments.engine.image_folder --out ~/data/fmnist      # Fashion-MNIST

- ``<out>/train``: the first --train-per-class images of each class of the dataset's training split
  (pretraining's and the linear probe's data.train_path);
- ``<out>/tuning``: the next --tuning-per-class images of each class of the training split, held
  out from train (sfrik-linear's data.val_path, where the epoch is chosen);
- ``<out>/val``: the first --val-per-class images of each class of the test split (linear_cpu's
  data.val_path, sfrik-linear's --final-val-path).

Fashion-MNIST comes from Debian's dataset-fashion-mnist files when they are installed, else from
torchvision's download (engine.data). Images keep their size and channels (28x28 grey for
Fashion-MNIST); class folders are "<label>_<name>", so they sort in the dataset's label order.
File names are "<source split>_<index in it>.png": unique across the class folders, as the
split files of sfrik-semisup (SimCLR's format) need. Each folder is written under a temporary
name and renamed when complete; an existing folder is never replaced.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from . import data as datasets

CLASS_NAMES = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "stl10": ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"),
}  # fmt: skip
SPLITS = ("train", "tuning", "val")


def class_folders(dataset: str, num_classes: int) -> list[str]:
    """Folder name of each label: "<label>_<name>" (zero-padded, so that they sort by label)."""
    names = CLASS_NAMES.get(dataset, ())
    width = len(str(num_classes - 1))
    folders = []
    for label in range(num_classes):
        name = re.sub(r"[^a-z0-9]+", "_", names[label].lower()).strip("_") if label < len(names) else "class"
        folders.append(f"{label:0{width}d}_{name}")
    return folders


def select(labels: torch.Tensor, start: int, count: int, num_classes: int, what: str) -> list[torch.Tensor]:
    """For each class, the indices of its images number start .. start + count - 1 (dataset order);
    `what` names the flags and the split in the error for a class that is too small."""
    picked = []
    for label in range(num_classes):
        of_class = torch.nonzero(labels == label).flatten()
        if len(of_class) < start + count:
            raise ValueError(f"{what}: class {label} has {len(of_class)} images there, {start + count} are needed")
        picked.append(of_class[start : start + count])
    return picked


def write_split(
    images: torch.Tensor, picked: Sequence[torch.Tensor], folders: Sequence[str], source: str, dest: Path
) -> int:
    """Writes images[picked[label]] into dest/<folders[label]>/<source>_<index>.png, under a
    temporary name renamed to dest at the end. Returns the number of images written."""
    from PIL import Image

    partial = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a run that was cut short
    for folder, indices in zip(folders, picked):
        (partial / folder).mkdir(parents=True)
        for index in indices.tolist():
            image = images[index]  # uint8 (c, h, w)
            pixels = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
            Image.fromarray(pixels.contiguous().numpy()).save(partial / folder / f"{source}_{index}.png")
    partial.rename(dest)
    return sum(len(i) for i in picked)


def make_image_folders(
    data: datasets.ImageData, out: Path, train_per_class: int, tuning_per_class: int, val_per_class: int
) -> dict[str, int]:
    """Writes out/train, out/tuning (when tuning_per_class > 0) and out/val; returns the image count
    of each. Refuses, before writing anything, a folder that exists or a class that is too small."""
    splits = [s for s in SPLITS if s != "tuning" or tuning_per_class]
    existing = [str(out / split) for split in splits if (out / split).exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist(s): remove them or choose another --out")
    classes = data.num_classes
    folders = class_folders(data.name, classes)
    plan = {
        "train": (
            data.train_images,
            select(data.train_labels, 0, train_per_class, classes, "--train-per-class (training split)"),
        ),
        "val": (data.test_images, select(data.test_labels, 0, val_per_class, classes, "--val-per-class (test split)")),
    }
    if tuning_per_class:
        what = f"--train-per-class {train_per_class} + --tuning-per-class {tuning_per_class} (training split)"
        plan["tuning"] = (
            data.train_images,
            select(data.train_labels, train_per_class, tuning_per_class, classes, what),
        )
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in splits:
        images, picked = plan[split]
        counts[split] = write_split(images, picked, folders, "test" if split == "val" else "train", out / split)
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from sfrik_experiments.utils.arguments import non_negative_int, positive_int

    parser = argparse.ArgumentParser(
        prog="python -m sfrik_experiments.engine.image_folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="folder that gets train/, tuning/ and val/")
    parser.add_argument("--dataset", choices=tuple(CLASS_NAMES), default="fashion-mnist")
    parser.add_argument("--data-dir", help=f"dataset root (default {datasets.DEFAULT_DATA_DIR}, or $SFRIK_DATA_DIR)")
    parser.add_argument(
        "--no-download", dest="download", action="store_false", help="never let torchvision download the dataset"
    )
    parser.add_argument("--train-per-class", type=positive_int, default=100, help="images per class in train/")
    parser.add_argument(
        "--tuning-per-class", type=non_negative_int, default=20, help="images per class in tuning/ (0: no tuning/)"
    )
    parser.add_argument("--val-per-class", type=positive_int, default=20, help="images per class in val/")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.expanduser()
    try:
        data = datasets.load(args.dataset, args.data_dir, download=args.download)
        counts = make_image_folders(data, out, args.train_per_class, args.tuning_per_class, args.val_per_class)
    except (ValueError, RuntimeError, OSError) as error:
        raise SystemExit(f"python -m sfrik_experiments.engine.image_folder: {error}") from None
    for split, count in counts.items():
        print(f"{out / split}: {count} images in {data.num_classes} class folders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
