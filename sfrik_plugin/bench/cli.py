"""sfrik-bench: what SFRIK costs, measured side by side with the alternatives on this machine.

  sfrik-bench losses                      # each method's loss, forward + backward: time and memory against q
  sfrik-bench step --backbone resnet18    # a whole training step per method, and what the loss adds
  sfrik-bench legendre                    # the Legendre operator against eager PyTorch and torch.compile
  sfrik-bench tiled                       # the MMD without the n x n matrix, against the dense one
  sfrik-bench SUITE --help                # a suite's options (sizes, dtype, device, --csv, --plot)

Each suite prints a table; --csv and --plot save it. Results recorded on this project's machines,
with the commands: BENCHMARKS.md.
"""

# A suite is a module with HELP, add_arguments(parser) and run(args) -> exit code; SUITES exposes it
# (CONTRIBUTING.md, "A benchmark suite").

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import bandwidth, legendre, losses, precision, sharded, step, tiled

SUITES = {
    "legendre": legendre,
    "bandwidth": bandwidth,
    "losses": losses,
    "step": step,
    "tiled": tiled,
    "sharded": sharded,
    "precision": precision,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfrik-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, module in SUITES.items():
        sub = subparsers.add_parser(
            name, help=module.HELP, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
