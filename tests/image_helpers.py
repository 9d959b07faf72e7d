"""Tiny labelled image folders for the demo and study tests (classes differ in mean brightness,
so a useful encoder separates them)."""

from pathlib import Path


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
