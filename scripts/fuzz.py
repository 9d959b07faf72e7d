"""The long fuzz run: tests/fuzz (operators and losses) with many examples per property and
fresh randomness (a seed, printed, replays the run), against the compiled extension; prints
hypothesis' statistics and the totals.

    python scripts/fuzz.py [--examples N] [--seed S] [extra pytest arguments, e.g. -k losses]
    make fuzz [FUZZ_EXAMPLES=N]

A failing example is printed with its @reproduce_failure blob; a hang (one example running
longer than --hang-s seconds) kills the run with every thread's traceback.
"""

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per property (default 5000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one)")
    parser.add_argument("--hang-s", type=float, default=120.0, help="seconds after which one example is a hang")
    args, pytest_args = parser.parse_known_args(argv)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    env = dict(
        os.environ,
        SFRIK_FUZZ_EXAMPLES=str(args.examples),
        SFRIK_FUZZ_HANG_S=str(args.hang_s),
        SFRIK_REQUIRE_EXTENSION="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/fuzz",
        f"--hypothesis-seed={seed}",
        "--hypothesis-show-statistics",
        *pytest_args,
    ]
    print(f"fuzz: {args.examples} examples per property, seed {seed} (replay: --seed {seed})", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    print(proc.stdout)
    passing = [int(n) for n in re.findall(r"- (\d+) passing, (?:\d+) failing", proc.stdout)]
    failing = [int(n) for n in re.findall(r"- \d+ passing, (\d+) failing", proc.stdout)]
    print(
        f"fuzz: {sum(passing)} passing and {sum(failing)} failing examples over {len(passing)} properties "
        f"in {elapsed:.0f} s (seed {seed}, exit status {proc.returncode})"
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
