"""sfrik-compare: the methods of one protocol compared inside solo-learn, with its own scripts.

For each method: pretraining (main_pretrain.py, config ``<method>_<protocol>``), then the linear
probe of its checkpoint (main_linear.py, config ``linear_<protocol>``), each in its own process
run from the solo-learn checkout. Then one table: linear top-1, pretraining time per epoch and
peak memory. Linear top-1 is solo's val_acc1, measured on the linear probe's data.val_path: the
command asks for that folder before any run, and the table says which images the number was
measured on ("the training images" when data.val_path is data.train_path; a part of the folder
under limit_val_batches).

    sfrik-compare --protocol cpu --methods sfrik vicreg --out runs/cpu \\
        --linear-override data.val_path=/data/fmnist/val -- data.train_path=/data/fmnist/train
    python -m sfrik_experiments.compare --protocol in20 --methods sfrik vicreg simclr barlow_twins auh \\
        --out runs/in20 --pretrain-override data.val_path=/data/in20/tuning \\
        --linear-override data.val_path=/data/imagenet/val -- data.train_path=/data/in20/train

Each run goes through sfrik_experiments.compare.probe (see there for what is measured and how), which
writes a JSON report beside the run's log. Everything goes under --out:

    <out>/<method>/pretrain/run.log, report.json   (and Lightning's default logger output)
    <out>/<method>/linear/run.log, report.json
    <out>/<method>/checkpoints/                    (solo's checkpoint.dir for both runs)
    <out>/compare.csv, compare.md                  (rewritten after each method)
"""

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from sfrik_plugin.utils.files import refuse_existing, writable_dir
from sfrik_plugin.utils.interrupt import exits_on_interrupt
from sfrik_plugin.utils.solo_learn import find_solo_learn_dir

from .configs import resolve
from .runs import LINEAR, PRETRAIN, RunFailed, compare, plan
from .tables import markdown_table
from .val_images import probe_images


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sfrik-compare",
        description="Pretrain and linear-probe several methods with solo-learn's scripts and the packaged "
        "configs, then tabulate linear top-1, time per epoch and peak memory.",
        epilog="Overrides after `--` go to both scripts (e.g. data.train_path=...). The scripts run from the "
        "solo-learn checkout: relative paths in overrides are relative to it.",
    )
    parser.add_argument(
        "--solo-learn-dir",
        default=None,
        help="solo-learn checkout (default: $SOLO_LEARN_DIR, else the current directory)",
    )
    parser.add_argument("--protocol", required=True, help="cpu (= cpu_smoke), in20 or in100")
    parser.add_argument(
        "--methods",
        nargs="+",
        required=True,
        help="methods with a <method>_<protocol> config, e.g. sfrik vicreg simclr barlow_twins auh",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for logs, checkpoints and the tables")
    parser.add_argument("--overwrite", action="store_true", help="replace the tables and runs already in --out")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--pretrain-override",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for main_pretrain.py only",
    )
    parser.add_argument(
        "--linear-override",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for main_linear.py only; data.val_path=<held-out folder> is needed (linear "
        "top-1 is measured there)",
    )
    parser.add_argument("overrides", nargs="*", metavar="-- KEY=VALUE", help="Hydra overrides for both scripts")
    return parser.parse_args(argv)


def checkout_dir(explicit: str | None) -> Path:
    checkout = find_solo_learn_dir(explicit)
    missing = [s for s in (PRETRAIN, LINEAR) if not (checkout / s).is_file()]
    if missing:
        raise FileNotFoundError(f"no {' or '.join(missing)} in the solo-learn checkout {checkout}")
    return checkout


@exits_on_interrupt("sfrik-compare")
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        linear_config, runs = resolve(args.protocol, args.methods)
        checkout = checkout_dir(args.solo_learn_dir)
        images = probe_images([*args.overrides, *args.linear_override], checkout)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"sfrik-compare: {err}") from None
    out = args.out.expanduser().resolve()  # the runs' working directory is the checkout
    if not args.dry_run:
        writable_dir(out, "--out", "sfrik-compare")  # before the first run, not after it
        if not args.overwrite:
            refuse_existing([out / "compare.csv", out / "compare.md"], "sfrik-compare")
    steps = plan(out, linear_config, runs)

    if args.dry_run:
        print(f"cd {shlex.quote(str(checkout))}")
        for pretrain, linear in steps:
            print(shlex.join(pretrain.command(sys.executable, [*args.overrides, *args.pretrain_override])))
            print(
                shlex.join(
                    linear.command(
                        sys.executable, [*args.overrides, *args.linear_override], f"<{pretrain.label} checkpoint>"
                    )
                )
            )
        return

    try:
        rows = compare(checkout, out, steps, args.overrides, args.pretrain_override, args.linear_override)
    except RunFailed as err:
        raise SystemExit(f"sfrik-compare: {err}") from None
    print()
    print(markdown_table(rows, images.notes()), end="")
    print(f"\nwritten: {out / 'compare.csv'}, {out / 'compare.md'}")
