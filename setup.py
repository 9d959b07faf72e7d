"""Build of sfrik_plugin and its compiled operators (sfrik_plugin._C).

Switches (environment variables):
  SFRIK_CPU_ONLY=1   build the CPU kernels only, even where CUDA is available
  FORCE_CUDA=1       build the CUDA kernels even where no GPU is visible (needs nvcc; set
                     TORCH_CUDA_ARCH_LIST, e.g. "9.0", since there is no GPU to detect)
  CUDA_HOME          the CUDA toolkit to use (default: found from nvcc)
  MAX_JOBS           parallel compile jobs for ninja
Without either switch, CUDA kernels are built when torch sees a GPU and a toolkit is found.
"""
import glob
import json
import os
import shutil

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _default_cuda_home():
    """torch guesses CUDA_HOME from `which nvcc`; a wrapper script in /usr/local/bin makes that
    guess /usr/local. Resolve the toolkit that the wrapper or link really runs."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        real = os.path.realpath(nvcc)
        candidates.append(os.path.dirname(os.path.dirname(real)))
        try:  # a shell wrapper: `exec /path/to/cuda/bin/nvcc "$@"`
            with open(real, "r", errors="ignore") as f:
                for token in f.read(4096).split():
                    if token.endswith("/bin/nvcc") and os.path.isfile(token):
                        candidates.insert(0, os.path.dirname(os.path.dirname(token)))
        except OSError:
            pass
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isdir(os.path.join(home, "include")):
            os.environ["CUDA_HOME"] = home
            return


_default_cuda_home()

import torch  # noqa: E402  (after CUDA_HOME is settled: cpp_extension reads it at import)
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _cuda_header_dirs():
    """ATen's CUDA headers include cublas/cusparse headers; a bare toolkit may lack them while
    torch's nvidia-* wheels ship them (site-packages/nvidia/cu*/include)."""
    try:
        import nvidia
    except ImportError:
        return []
    dirs = []
    for root in getattr(nvidia, "__path__", []):
        for inc in sorted(glob.glob(os.path.join(root, "*", "include"))):
            if os.path.isfile(os.path.join(inc, "cublas_v2.h")):
                dirs.append(inc)
    return dirs


def _use_cuda():
    cpu_only, force_cuda = _flag("SFRIK_CPU_ONLY"), _flag("FORCE_CUDA")
    if cpu_only and force_cuda:
        raise SystemExit("setup.py: SFRIK_CPU_ONLY=1 and FORCE_CUDA=1 contradict each other: set one.")
    if cpu_only:
        return False
    if force_cuda:
        if CUDA_HOME is None:
            raise SystemExit("setup.py: FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME.")
        if torch.version.cuda is None:
            raise SystemExit(f"setup.py: FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build.")
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def get_extensions():
    use_cuda = _use_cuda()
    debug = _flag("SFRIK_DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    define = [("SFRIK_TORCH_VERSION", json.dumps(torch.__version__))]
    # -Wno-psabi: GCC notes that 32-byte vectors are passed differently without AVX; the CPU
    # kernel's vector helpers are internal and always inlined, so no ABI is crossed.
    cxx = opt + ["-fopenmp", "-fdiagnostics-color=always", "-Wno-psabi"]
    sources = sorted(glob.glob("cpp/*.cpp")) + sorted(glob.glob("cpp/cpu/*.cpp"))
    kwargs = dict(extra_link_args=["-fopenmp"])
    if use_cuda:
        define.append(("SFRIK_WITH_CUDA", None))
        sources += sorted(glob.glob("cpp/cuda/*.cu"))
        kwargs["include_dirs"] = _cuda_header_dirs()
        ext = CUDAExtension
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": opt + ["-lineinfo"]}
    else:
        ext = CppExtension
        kwargs["extra_compile_args"] = {"cxx": cxx}
    print(f"sfrik_plugin: building the extension {'with CUDA (' + str(CUDA_HOME) + ')' if use_cuda else 'for CPU only'}")
    return [ext("sfrik_plugin._C", sources, define_macros=define, **kwargs)]


class BuildWithInfo(BuildExtension):
    """Writes _build_info.json beside the compiled module, so that the package can compare the
    torch it was built against with the torch it runs with before it loads the binary."""

    def run(self):
        super().run()
        for ext in self.extensions:
            target_dir = os.path.dirname(self.get_ext_fullpath(ext.name))
            os.makedirs(target_dir, exist_ok=True)
            info = {"torch_version": torch.__version__, "cuda": any(s.endswith(".cu") for s in ext.sources)}
            with open(os.path.join(target_dir, "_build_info.json"), "w") as f:
                json.dump(info, f)


setup(
    # configs/ (top level, next to the sources) is installed as sfrik_plugin.configs, found by the
    # Hydra plugin hydra_plugins.sfrik_plugin. hydra_plugins is a namespace package (no __init__.py):
    # listed by hand, itself included, so that an editable install maps its folder and Hydra's
    # plugin discovery (pkgutil.walk_packages over hydra_plugins.__path__) sees the plugin.
    packages=find_packages(include=["sfrik_plugin", "sfrik_plugin.*"])
    + ["sfrik_plugin.configs", "hydra_plugins", "hydra_plugins.sfrik_plugin"],
    package_dir={"sfrik_plugin.configs": "configs"},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildWithInfo.with_options(use_ninja=True)},
    include_package_data=True,
)
