"""sfrik-knn: solo-learn's kNN (main_knn.py) or UMAP (main_umap.py) on a checkpoint of the plugin's
methods, on a GPU or, with --cpu, on the CPU.

    sfrik-knn [--solo-learn-dir DIR] [--umap] [--cpu] <main_knn.py / main_umap.py arguments>

On a GPU the import hook already lets the unmodified scripts load SFRIK, AUH and SimCLR-shared
checkpoints (`python main_knn.py ...` from the checkout works). This command is the supported way
on a CPU: the scripts move every batch to CUDA, and --cpu keeps them on the CPU
(sfrik_plugin.solo.cpu_only). Where torch sees no CUDA GPU, it runs on the CPU without --cpu too,
and says so (the scripts themselves would end in "Found no NVIDIA driver"). It also registers the
methods itself, so it works where the hook is off (SFRIK_PLUGIN_SOLO_HOOK=0). The checkout is
--solo-learn-dir, else $SOLO_LEARN_DIR, else the current directory. With --umap, a package that
main_umap.py imports and solo-learn does not install (UMAP_PACKAGES) is named, with the pip command
that installs every missing one.
"""

import argparse
import contextlib
import importlib.util
import runpy
import sys
from collections.abc import Sequence

from sfrik_plugin.utils.solo_learn import find_solo_learn_dir

SCRIPT = "main_knn.py"
UMAP_SCRIPT = "main_umap.py"
# What main_umap.py imports (solo.utils.auto_umap) beyond solo-learn's own requirements:
# module -> the package pip installs it from
UMAP_PACKAGES = {"pandas": "pandas", "seaborn": "seaborn", "umap": "umap-learn", "matplotlib": "matplotlib"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked module (sys.modules[name] = None)
        return False


def missing_umap_packages() -> list[str]:
    """The pip names of UMAP_PACKAGES that are not importable here (without importing them)."""
    return [package for module, package in UMAP_PACKAGES.items() if not _installed(module)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sfrik-knn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        epilog="Every other argument goes to the script (its --help lists them when the checkout is found).",
    )
    p.add_argument("--solo-learn-dir", default=None, help="the solo-learn checkout (default: $SOLO_LEARN_DIR, else .)")
    p.add_argument("--umap", action="store_true", help=f"run {UMAP_SCRIPT} instead of {SCRIPT}")
    p.add_argument(
        "--cpu",
        action="store_true",
        help="keep the script's CUDA moves on the CPU (no GPU needed; the default where torch sees no CUDA GPU)",
    )
    p.add_argument("-h", "--help", action="store_true", help="this help, then the script's")
    return p


def split_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(this command's options, the arguments left for the script)."""
    return parser().parse_known_args(list(argv))


def main(argv: Sequence[str] | None = None) -> None:
    opts, rest = split_args(sys.argv[1:] if argv is None else argv)
    script_name = UMAP_SCRIPT if opts.umap else SCRIPT
    if opts.help:
        parser().print_help()
        rest = ["--help"]
    try:
        checkout = find_solo_learn_dir(opts.solo_learn_dir, script_name)
    except FileNotFoundError as err:
        if opts.help:
            print(f"\n(the script's own options: {err})")
            raise SystemExit(0) from None
        raise SystemExit(f"sfrik-knn: {err}") from None
    if opts.help:
        print(f"\n{script_name}'s options:\n", flush=True)

    # as `python main_knn.py` from the checkout: its directory first on sys.path, so that the
    # registration below and the script use the same solo.methods module
    sys.path.insert(0, str(checkout))
    from sfrik_plugin.solo.registration import register_methods

    register_methods()

    script = checkout / script_name
    sys.argv = [str(script), *rest]
    use_cpu = opts.cpu
    if not use_cpu and not opts.help:
        import torch

        if not torch.cuda.is_available():
            print(
                f"sfrik-knn: torch sees no CUDA GPU here: running {script_name} on the CPU (as with --cpu)",
                file=sys.stderr,
                flush=True,
            )
            use_cpu = True
    if use_cpu:
        from sfrik_plugin.solo.cpu_only import cpu_only

        context: contextlib.AbstractContextManager = cpu_only()
    else:
        context = contextlib.nullcontext()
    try:
        with context:
            runpy.run_path(str(script), run_name="__main__")
    except ModuleNotFoundError as err:
        if not opts.umap or err.name not in UMAP_PACKAGES:
            raise
        missing = missing_umap_packages() or [UMAP_PACKAGES[err.name]]
        raise SystemExit(
            f"sfrik-knn --umap: {UMAP_SCRIPT} needs {', '.join(missing)}, not installed here ({err}): "
            f"pip install {' '.join(missing)}"
        ) from None


if __name__ == "__main__":
    main()
