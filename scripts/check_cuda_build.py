"""Checks that the CUDA sources compile and link (FORCE_CUDA=1, one architecture), without a GPU:
builds into a scratch folder, then loads that build in a fresh interpreter and checks that it
reports CUDA, registers CUDA kernels for every operator (the tiled driver through its
device-generic registration), and still computes on the CPU."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import torch, sfrik_plugin
    info = sfrik_plugin.extension_info()
    assert info["loaded"] and info["cuda"], info
    for op in (
        "legendre_series",
        "legendre_series_reduce",
        "legendre_series_backward",
        "legendre_series_value_and_grad",
        "row_stats",
    ):
        assert torch._C._dispatch_has_kernel_for_dispatch_key("sfrik::" + op, "CUDA"), op
    # The tiled driver is device-generic (CompositeExplicitAutograd): CUDA resolves to it.
    assert torch._C._dispatch_has_computed_kernel_for_dispatch_key("sfrik::gram_series_sum", "CUDA")
    t = torch.tensor([0.5], dtype=torch.float64)
    assert torch.allclose(sfrik_plugin.legendre(t, 2, 3), torch.tensor([-0.125], dtype=torch.float64))
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)   # Gram entries 1, 0.6, 0.6, 1
    total = torch.ops.sfrik.gram_series_sum(x, None, [0.0, 1.0], 3, 1, False, False)[0]
    assert torch.allclose(total, torch.tensor(3.2, dtype=torch.float64)), total
    print("CUDA build OK:", info)
""")


def main() -> int:
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0")
    with tempfile.TemporaryDirectory(prefix="sfrik-cuda-") as scratch:
        lib, tmp = Path(scratch, "lib"), Path(scratch, "tmp")
        env = dict(os.environ, FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=arch, MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
        env.pop("SFRIK_CPU_ONLY", None)
        print(f"building the CUDA extension for TORCH_CUDA_ARCH_LIST={arch} in {scratch}", flush=True)
        subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(lib), "--build-temp", str(tmp)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        for source in (ROOT / "sfrik_plugin").glob("*.py"):  # the package beside the fresh binary
            shutil.copy(source, lib / "sfrik_plugin" / source.name)
        probe_env = dict(os.environ, SFRIK_REQUIRE_EXTENSION="1", PYTHONPATH=str(lib))
        subprocess.run([sys.executable, "-c", PROBE], cwd=scratch, env=probe_env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
