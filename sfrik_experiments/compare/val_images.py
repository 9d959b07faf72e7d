"""Which images sfrik-compare's linear top-1 is measured on: the linear probe's data.val_path (and
data.train_path, limit_val_batches) read from the Hydra overrides as Hydra reads them, and what the
table says of it (ProbeImages): a held-out folder, the training images, or the first batches only."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value the last of these Hydra overrides gives ``key`` (``key=``, ``+key=`` or ``++key=``;
    quotes removed), or None where none sets it; ``~key`` deletes it."""
    value = None
    for override in overrides:
        name, sep, text = override.partition("=")
        if name.lstrip("~") == key and name.startswith("~"):
            value = None
        elif sep and name.lstrip("+") == key:
            text = text.strip()
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
                # Hydra's quoted string: only backslashes before a quote or the end are escapes (runs.hydra_path)
                quote = re.escape(text[0])
                text = re.sub(
                    rf"(\\+)({quote}|$)", lambda m: m.group(1)[: len(m.group(1)) // 2] + m.group(2), text[1:-1]
                )
            value = text
    return value


@dataclass(frozen=True)
class ProbeImages:
    """What the linear probe's val_acc1 (the table's linear top-1) is measured on: data.val_path,
    all of it unless limit_val_batches cuts it; paths as the scripts see them (from the checkout)."""

    train_path: str | None
    val_path: str
    val_batches: str | None  # limit_val_batches, when set
    checkout: Path

    def _resolved(self, path: str) -> Path:
        return (self.checkout / Path(path).expanduser()).resolve()

    @property
    def on_training_images(self) -> bool:
        return self.train_path is not None and self._resolved(self.train_path) == self._resolved(self.val_path)

    @property
    def text(self) -> str:
        """The table's "top-1 measured on" cell."""
        where = "the training images" if self.on_training_images else self.val_path
        return where if self.val_batches is None else f"{where} (limit_val_batches={self.val_batches})"

    def notes(self) -> list[str]:
        """Sentences printed under the table when the number is not a held-out accuracy of a folder."""
        notes = []
        if self.on_training_images:
            notes.append(
                "Linear top-1 was measured on the training images (data.val_path is data.train_path): "
                "it is a training accuracy, not a held-out one. Give a held-out folder with "
                "--linear-override data.val_path=<folder>."
            )
        if self.val_batches is not None:
            notes.append(
                f"limit_val_batches={self.val_batches}: linear top-1 was measured on the first batches of "
                "data.val_path only, and solo reads the folder in class order, so on its first classes "
                "only. Leave limit_val_batches off for a number."
            )
        return notes


def probe_images(linear_overrides: Sequence[str], checkout: Path) -> ProbeImages:
    """The linear probe's images from its overrides; a missing data.val_path is an error before any
    run (every linear config makes it mandatory: otherwise the probe would fail after pretraining)."""
    val = override_value(linear_overrides, "data.val_path")
    if not val or val == "null":
        raise ValueError(
            "the linear probe needs data.val_path, the held-out image folder its linear top-1 is measured "
            "on (same class folders as data.train_path): add --linear-override data.val_path=<folder>, or "
            "data.val_path=<folder> after `--`. `python -m sfrik_experiments.engine.image_folder --out <root>` "
            "makes <root>/train and <root>/val from Fashion-MNIST"
        )
    limit = override_value(linear_overrides, "limit_val_batches")
    return ProbeImages(override_value(linear_overrides, "data.train_path"), val, limit, checkout)
