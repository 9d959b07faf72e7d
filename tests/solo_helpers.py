"""Helpers shared by the tests that run solo-learn's scripts (no solo-learn needed to import)."""

from pathlib import Path

NUM_CLASSES = 5  # solo's LinearModel computes top-5 accuracy: at least 5 classes
IMAGES_PER_CLASS = 4


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
