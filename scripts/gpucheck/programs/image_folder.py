"""Writes ROOT/class<c>/<i>.png: CLASSES x PER_CLASS images of SIZE px whose colour and stripes
depend on the class (learnable). Usage: python image_folder.py ROOT CLASSES PER_CLASS SIZE"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

root = Path(sys.argv[1])
classes, per_class, size = (int(v) for v in sys.argv[2:5])
rng = np.random.default_rng(0)
for c in range(classes):
    folder = root / f"class{c}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        image = rng.integers(0, 64, size=(size, size, 3), dtype=np.uint8)
        image[:, :, c % 3] += np.uint8(120)
        image[(c * 3) % size :: max(2, c + 2), :, :] = 230
        Image.fromarray(image).save(folder / f"{i}.png")
