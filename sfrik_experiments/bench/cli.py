"""sfrik-bench: what SFRIK costs, measured side by side with the alternatives on this machine.

  sfrik-bench losses                      # each method's loss, forward + backward: time and memory against q
  sfrik-bench step --backbone resnet18    # a whole training step per method, and what the loss adds
  sfrik-bench legendre                    # the Legendre operator against eager PyTorch and torch.compile
  sfrik-bench tiled                       # the MMD without the n x n matrix, against the dense one
  sfrik-bench gram                        # the Gram product from its upper triangle, by row-block count
  sfrik-bench SUITE --help                # a suite's options (sizes, dtype, device, --csv, --plot)

Each suite prints a table; --csv and --plot save it. Results recorded on this project's machines,
with the commands: BENCHMARKS.md.
"""

# A suite is a module with HELP, add_arguments(parser) and run(args) -> exit code, and optionally
# description() -> its help text (else its docstring); SUITES exposes it (CONTRIBUTING.md, "A
# benchmark suite").

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sfrik_plugin.utils.files import refuse_existing, writable_file

from . import bandwidth, gram, legendre, losses, precision, sharded, step, tiled

SUITES = {
    "legendre": legendre,
    "bandwidth": bandwidth,
    "losses": losses,
    "step": step,
    "tiled": tiled,
    "sharded": sharded,
    "precision": precision,
    "gram": gram,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfrik-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, module in SUITES.items():
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=_description(module),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.add_argument("--overwrite", action="store_true", help="replace an existing --csv or --plot file")
        sub.set_defaults(run=module.run)
    return parser


def _description(module) -> str | None:
    describe = getattr(module, "description", None)
    return describe() if describe is not None else module.__doc__


def check_outputs(args: argparse.Namespace) -> None:
    """--csv and --plot writable, and not results already there (unless --overwrite), before the
    suite runs rather than after it."""
    paths = {f"--{flag}": getattr(args, flag, None) for flag in ("csv", "plot")}
    for flag, path in paths.items():
        if path:
            writable_file(path, flag, "sfrik-bench")
    if not args.overwrite:
        refuse_existing([p for p in paths.values() if p], "sfrik-bench", where="--csv / --plot")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_outputs(args)
    return args.run(args)
