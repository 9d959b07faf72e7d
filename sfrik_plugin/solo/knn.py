"""Offline kNN of solo-learn (its main_knn.py) for SFRIK / AUH checkpoints.

main_knn.py is an argparse script: Hydra plugins never run there, so METHODS lacks "sfrik" and
"auh" when it looks up the checkpoint's method. This command registers them, then runs the
checkout's main_knn.py with the remaining arguments:

    python -m sfrik_plugin.solo.knn [--solo-learn-dir DIR] <main_knn.py arguments>
    sfrik-knn [--solo-learn-dir DIR] <main_knn.py arguments>

The checkout is --solo-learn-dir, else $SOLO_LEARN_DIR, else the current directory.
main_knn.py moves batches to CUDA: it needs a GPU.
"""

import argparse
import runpy
import sys
from collections.abc import Sequence

from sfrik_plugin.utils.solo_learn import find_solo_learn_dir

SCRIPT = "main_knn.py"


def split_args(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(--solo-learn-dir value, the arguments left for main_knn.py); --help stays with main_knn."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--solo-learn-dir", default=None)
    known, rest = parser.parse_known_args(list(argv))
    return known.solo_learn_dir, rest


def main(argv: Sequence[str] | None = None) -> None:
    solo_learn_dir, rest = split_args(sys.argv[1:] if argv is None else argv)
    try:
        checkout = find_solo_learn_dir(solo_learn_dir)
    except FileNotFoundError as err:
        raise SystemExit(f"sfrik-knn: {err}") from None

    # as `python main_knn.py` from the checkout: its directory first on sys.path, so that the
    # registration below and main_knn.py use the same solo.methods module
    sys.path.insert(0, str(checkout))
    from sfrik_plugin.solo.registration import register_methods

    register_methods()

    script = checkout / SCRIPT
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
