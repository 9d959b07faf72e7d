"""python -m sfrik_plugin.bench (= sfrik-bench)."""

import sys

from sfrik_plugin.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
