"""sfrik-bench: `python -m sfrik_plugin.bench SUITE [options]`; `--help` per suite lists them.

A suite is a module with HELP, add_arguments(parser) and run(args) -> exit code; add it to
SUITES to expose it.
"""

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
    parser = argparse.ArgumentParser(prog="python -m sfrik_plugin.bench", description=__doc__)
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
