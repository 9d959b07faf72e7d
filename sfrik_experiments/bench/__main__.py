"""python -m sfrik_experiments.bench (= sfrik-bench)."""

import sys

from sfrik_experiments.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
