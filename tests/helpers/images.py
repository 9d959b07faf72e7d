"""Tiny labelled image folders: make_folder for the demo and study tests (classes differ in mean
brightness, so a useful encoder separates them), make_image_folder for the tests that run
solo-learn's scripts or sfrik-compare (random 32x32 images, at least 5 classes)."""

from pathlib import Path

NUM_CLASSES = 5  # solo's LinearModel computes top-5 accuracy: at least 5 classes
IMAGES_PER_CLASS = 4


def make_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 12) -> Path:
    """root/c<k>/<i>.png, `per_class` random RGB images of `size` pixels for each of `classes`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * c, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


def folder_dataset(root: Path, size: int = 12) -> dict:
    """The dataset options of sfrik-demo and sfrik-study for a folder made by make_folder."""
    return {"dataset": "folder", "data_dir": root, "image_size": size}


def make_image_folder(
    root: Path,
    num_classes: int = NUM_CLASSES,
    per_class: int = IMAGES_PER_CLASS,
    seed: int = 0,
    unique_names: bool = False,
) -> Path:
    """An ImageFolder of random 32x32 RGB PNGs: root/<class>/<i>.png (root/<class>/<class>_<i>.png
    with unique_names, as ImageNet's file names, which SimCLR's split files list)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            name = f"class{c}_{i}.png" if unique_names else f"{i}.png"
            Image.fromarray(pixels).save(root / f"class{c}" / name)
    return root


def fashion_mnist_folders(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """Real Fashion-MNIST images as class folders root/train and root/val (10 classes, 28x28
    grey PNGs), written as the README tells users to (python -m sfrik_experiments.engine.image_folder):
    from Debian's dataset-fashion-mnist files here, from torchvision's download elsewhere."""
    from sfrik_experiments.engine.image_folder import main

    args = ["--out", str(root), "--train-per-class", str(train_per_class)]
    args += ["--tuning-per-class", "0", "--val-per-class", str(val_per_class)]
    assert main(args) == 0
    return root
