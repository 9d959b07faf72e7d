"""The GPU check: one prepared command that builds, tests and measures the plugin on a CUDA GPU.

    python3 scripts/gpu_check.py --out OUT [--wheels DIR] [--solo-learn-dir DIR]   # (make gpu-check)
    python3 scripts/gpu_check.py --dry-run --out OUT    # every stage on the CPU at tiny sizes

The check is the package scripts/gpucheck/ (its docstring, and --help, describe every stage); this
file runs it with the interpreter that runs it, importing nothing but the standard library.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpucheck.cli import main  # (after the path that finds it)

if __name__ == "__main__":
    sys.exit(main())
