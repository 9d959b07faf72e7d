"""argparse value types shared by the commands: each names what it expected."""

import argparse
import math
from collections.abc import Mapping


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def one_device(text: str) -> str:
    """--devices of a command that trains in one process on one device (sfrik-demo): "1". Lightning
    would start a process per device for more, each training on its own batch with the lr and the
    loss of one process (the global batch doubled, the regulariser over half of it)."""
    if text.strip() != "1":
        raise argparse.ArgumentTypeError(
            f"expected 1, got {text!r}: this command pretrains in one process on one device, and with more Lightning "
            "would start a process per device, each with its own batch and the lr and loss of one process; choose the "
            "GPU with CUDA_VISIBLE_DEVICES. To train SFRIK with several processes, use solo-learn's main_pretrain.py "
            '(docs/solo-learn.md, "Several processes")'
        )
    return text.strip()


def command_line(options: Mapping[str, object], *, separator: str = "-") -> list[str]:
    """Command-line words from keyword options, in order: ``{"data_dir": "x", "k": [2, 5]}`` gives
    ``["--data-dir", "x", "--k", "2", "5"]``. True gives a bare flag; None and False leave the
    option out; a list or tuple gives one word per item. separator replaces the underscores of a
    name ("_" for scripts such as solo-learn's, whose options keep them).

    Example:
        >>> command_line({"train_size": 0, "accelerator": "cpu", "no_download": True, "lr": None})
        ['--train-size', '0', '--accelerator', 'cpu', '--no-download']
    """
    words: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        words.append("--" + name.replace("_", separator))
        if isinstance(value, (list, tuple)):
            words.extend(str(v) for v in value)
        elif value is not True:
            words.append(str(value))
    return words


def check_accelerator(
    parser: argparse.ArgumentParser, accelerator: str, choices: tuple[str, ...] = ("auto", "cpu", "gpu", "cuda")
) -> None:
    """parser.error, before any work, for an accelerator not in choices or a GPU that is not there."""
    if accelerator not in choices:
        parser.error(f"--accelerator must be one of {', '.join(choices)}, got {accelerator!r}")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            other = "cpu or auto" if "auto" in choices else "cpu"
            parser.error(f"--accelerator {accelerator}: torch sees no CUDA GPU here (use --accelerator {other})")
