"""Build of sfrik_plugin and its compiled operators (sfrik_plugin._C).

Switches (environment variables):
  SFRIK_CPU_ONLY=1   build the CPU kernels only, even where CUDA is available
  SFRIK_SANITIZE=1   CPU kernels with AddressSanitizer + UndefinedBehaviorSanitizer (UBSan fatal),
                     for scripts/sanitize.sh; load with LD_PRELOAD of gcc's libasan
  FORCE_CUDA=1       build the CUDA kernels even where no GPU is visible (needs nvcc; set
                     TORCH_CUDA_ARCH_LIST, e.g. "9.0", since there is no GPU to detect)
  CUDA_HOME          the CUDA toolkit to use (default: found from nvcc)
  MAX_JOBS           parallel compile jobs for ninja
  SFRIK_REUSE_EXTENSION=1  compile nothing: use the in-place sfrik_plugin/_C*.so that an editable
                     install into another environment with the same torch built from these sources
                     (`make hosts` reuses `make build`'s), after checking exactly that
Without either switch, CUDA kernels are built when torch sees a GPU and a toolkit is found.
"""

import glob
import json
import os
import shlex
import shutil
import sysconfig

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

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
            with open(real, errors="ignore") as f:
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

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def _cuda_header_dirs():
    """ATen's CUDA headers include cublas/cusparse headers; a bare toolkit may lack them while
    torch's nvidia-* wheels ship them (site-packages/nvidia/cu*/include). Searched after every
    other include folder (see _include_wheel_headers_last)."""
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


def _include_wheel_headers_last(include_dirs, wheel_dirs):
    """include_dirs with wheel_dirs moved to the end: the toolkit's own headers (CUDA_HOME/include,
    which torch's CUDAExtension adds after the extension's own folders) win, and the wheels' only
    fill in what the toolkit lacks. Put first, the wheels' copies of cuda_runtime.h and friends,
    possibly of another CUDA version than nvcc's, would shadow the toolkit's."""
    wheel = list(dict.fromkeys(wheel_dirs))
    return [d for d in include_dirs if d not in wheel] + wheel


def _has_nvcc(home):
    return home is not None and os.path.isfile(os.path.join(home, "bin", "nvcc"))


def _use_cuda():
    cpu_only, force_cuda = _flag("SFRIK_CPU_ONLY"), _flag("FORCE_CUDA")
    if cpu_only and force_cuda:
        raise SystemExit("setup.py: SFRIK_CPU_ONLY=1 and FORCE_CUDA=1 contradict each other: set one.")
    if _flag("SFRIK_SANITIZE"):
        if force_cuda:
            raise SystemExit("setup.py: SFRIK_SANITIZE=1 builds the CPU kernels only: unset FORCE_CUDA.")
        return False
    if cpu_only:
        return False
    if force_cuda:
        # CUDA_HOME may be set (or guessed by torch) without a toolkit there: say so now rather
        # than let the build fail later on a missing nvcc.
        if not _has_nvcc(CUDA_HOME):
            raise SystemExit(
                f"setup.py: FORCE_CUDA=1 but no CUDA toolkit was found (CUDA_HOME={CUDA_HOME}, no bin/nvcc "
                f"there): install the CUDA toolkit for torch's CUDA {torch.version.cuda} and set CUDA_HOME, "
                "or build the CPU kernels only with SFRIK_CPU_ONLY=1."
            )
        if torch.version.cuda is None:
            raise SystemExit(f"setup.py: FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build.")
        return True
    if torch.cuda.is_available() and not _has_nvcc(CUDA_HOME):
        print(
            f"sfrik_plugin: warning: torch sees a GPU but no CUDA toolkit was found (CUDA_HOME={CUDA_HOME}): "
            "building the CPU kernels only; CUDA tensors will use the pure-PyTorch reference (with a "
            "warning). Set CUDA_HOME to a toolkit to build the CUDA kernels."
        )
        return False
    return torch.cuda.is_available()


def get_extensions():
    use_cuda = _use_cuda()
    debug, sanitize = _flag("SFRIK_DEBUG"), _flag("SFRIK_SANITIZE")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    define = [("SFRIK_TORCH_VERSION", json.dumps(torch.__version__))]
    # -Wno-psabi: GCC notes that 32-byte vectors are passed differently without AVX; the CPU
    # kernel's vector helpers are internal and always inlined, so no ABI is crossed.
    cxx = opt + ["-fopenmp", "-fdiagnostics-color=always", "-Wno-psabi"]
    sources = sorted(glob.glob("cpp/*.cpp")) + sorted(glob.glob("cpp/cpu/*.cpp"))
    kwargs = dict(extra_link_args=["-fopenmp"])
    if sanitize:
        # -O1: the sanitizers' usual level (fast enough, few false negatives from optimisation);
        # no recovery, so any UBSan report aborts the test run instead of scrolling past.
        # -fno-wrapv undoes Python's -fwrapv, under which UBSan does not check signed overflow.
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]
        cxx = [f for f in cxx if not f.startswith("-O")] + ["-O1", "-fno-wrapv"] + san
        kwargs["extra_link_args"] += san
    if use_cuda:
        define.append(("SFRIK_WITH_CUDA", None))
        sources += sorted(glob.glob("cpp/cuda/*.cu"))
        ext = CUDAExtension
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": opt + ["-lineinfo"]}
    else:
        ext = CppExtension
        kwargs["extra_compile_args"] = {"cxx": cxx}
    if not _flag("SFRIK_REUSE_EXTENSION"):
        kind = f"with CUDA ({CUDA_HOME})" if use_cuda else "for CPU only"
        print(f"sfrik_plugin: building the extension {kind}")
    extension = ext("sfrik_plugin._C", sources, define_macros=define, **kwargs)
    if use_cuda:
        extension.include_dirs = _include_wheel_headers_last(extension.include_dirs, _cuda_header_dirs())
    return [extension]


def _missing_build_tools():
    """The C++ compiler and the linker the build will call (CXX / LDSHARED / CC or Python's
    defaults) that are not on PATH."""
    ldshared = os.environ.get("LDSHARED") or os.environ.get("CC") or sysconfig.get_config_var("LDSHARED") or ""
    tools = {
        "C++ compiler (CXX)": os.environ.get("CXX", "c++"),  # as torch.utils.cpp_extension picks it
        "linker (LDSHARED or CC)": (shlex.split(ldshared) or [""])[0],
    }
    return [f"{role} {cmd!r}" for role, cmd in tools.items() if cmd and shutil.which(cmd) is None]


class BuildWithInfo(BuildExtension):
    """Writes _build_info.json beside the compiled module, so that the package can compare the
    torch it was built against with the torch it runs with before it loads the binary."""

    def run(self):
        if _flag("SFRIK_REUSE_EXTENSION"):
            self._reuse_in_place_build()
            return
        missing = _missing_build_tools()
        if missing:  # before torch's own checks, whose errors for a missing compiler are obscure
            raise SystemExit(
                f"setup.py: cannot build sfrik_plugin._C: {' and '.join(missing)} not found on PATH. "
                "Install a C++17 compiler (e.g. `apt-get install g++`, or build-essential) or point CXX "
                "(and CC) at one, then install again."
            )
        super().run()
        for ext in self.extensions:
            target_dir = os.path.dirname(self.get_ext_fullpath(ext.name))
            os.makedirs(target_dir, exist_ok=True)
            info = {"torch_version": torch.__version__, "cuda": any(s.endswith(".cu") for s in ext.sources)}
            with open(os.path.join(target_dir, "_build_info.json"), "w") as f:
                json.dump(info, f)

    def _reuse_in_place_build(self):
        """The in-place binary, checked (reuse_problem), copied to where this build puts its output
        (nothing to copy for an editable install, whose output is the in-place one)."""
        for ext in self.extensions:
            binary = os.path.join(
                HERE, "sfrik_plugin", ext.name.split(".")[-1] + sysconfig.get_config_var("EXT_SUFFIX")
            )
            info_path = os.path.join(HERE, "sfrik_plugin", "_build_info.json")
            sources = [os.path.join(HERE, "setup.py"), *glob.glob(os.path.join(HERE, "cpp", "**", "*"), recursive=True)]
            problem = reuse_problem(binary, info_path, sources, any(s.endswith(".cu") for s in ext.sources))
            if problem:
                raise SystemExit(
                    f"setup.py: SFRIK_REUSE_EXTENSION=1 but {problem}: build it in place first (make build), or "
                    "unset SFRIK_REUSE_EXTENSION"
                )
            print(f"sfrik_plugin: reusing {binary} (torch {torch.__version__}), nothing compiled")
            target = self.get_ext_fullpath(ext.name)
            if not (os.path.exists(target) and os.path.samefile(binary, target)):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(binary, target)
                shutil.copy2(info_path, os.path.join(os.path.dirname(target), "_build_info.json"))


def reuse_problem(binary, info_path, sources, cuda):
    """Why a built binary (with its _build_info.json) cannot stand for this build: missing, built
    for another torch or without/with the CUDA kernels this build plans, or older than a source.
    None when it can."""
    if not (os.path.isfile(binary) and os.path.isfile(info_path)):
        return f"{binary} or its _build_info.json is missing"
    with open(info_path) as f:
        info = json.load(f)
    if info.get("torch_version") != torch.__version__ or info.get("cuda") != cuda:
        return (
            f"{binary} was built for torch {info.get('torch_version')} (CUDA kernels: {info.get('cuda')}), and this "
            f"build is for torch {torch.__version__} (CUDA kernels: {cuda})"
        )
    newer = [p for p in sources if os.path.isfile(p) and os.path.getmtime(p) > os.path.getmtime(binary)]
    if newer:
        return f"{newer[0]} is newer than {binary}"
    return None


# The import hook (sfrik_plugin/solo_hook.py) goes into site-packages as a .pth file whose one
# line executes the hook's source: a .pth imports nothing until solo.methods is imported, and
# needs no module of its own on sys.path at start-up (an editable install's finder may not be
# active yet when .pth files run). Written by build_py for regular installs (wheel root =
# site-packages) and into the editable wheel for `pip install -e`.
HOOK_SOURCE = os.path.join(HERE, "sfrik_plugin", "solo_hook.py")
HOOK_PTH = "sfrik_plugin_solo_hook.pth"


def hook_pth_line() -> str:
    with open(HOOK_SOURCE, encoding="utf-8") as f:
        source = f.read()
    # a .pth line runs only when it starts with "import"; its own globals, so that the hook's
    # functions see its module-level names
    return f"import sys; exec({source!r}, {{'__name__': '_sfrik_plugin_solo_hook'}})\n"


def _write_hook_pth(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, HOOK_PTH)
    with open(path, "w", encoding="utf-8") as f:
        f.write(hook_pth_line())
    return path


class BuildPyWithHook(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            _write_hook_pth(self.build_lib)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else outputs + [os.path.join(self.build_lib, HOOK_PTH)]


class EditableWheelWithHook(editable_wheel):
    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        files, mapping = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        _write_hook_pth(str(unpacked_wheel))  # the editable wheel's root: site-packages
        return files, mapping


# Guarded so that tests can import the helpers above; pip, setuptools' build backend and
# `python setup.py` all run this file as __main__.
if __name__ == "__main__":
    setup(
        # configs/ (top level, next to the sources) is installed as sfrik_plugin_configs, found by the
        # Hydra plugin hydra_plugins.sfrik_plugin. hydra_plugins is a namespace package (no __init__.py):
        # listed by hand, itself included, so that an editable install maps its folder and Hydra's
        # plugin discovery (pkgutil.walk_packages over hydra_plugins.__path__) sees the plugin.
        packages=find_packages(include=["sfrik_plugin", "sfrik_plugin.*", "sfrik_experiments", "sfrik_experiments.*"])
        + ["sfrik_plugin_configs", "hydra_plugins", "hydra_plugins.sfrik_plugin"],
        package_dir={"sfrik_plugin_configs": "configs"},
        ext_modules=get_extensions(),
        cmdclass={
            "build_ext": BuildWithInfo.with_options(use_ninja=True),
            "build_py": BuildPyWithHook,
            "editable_wheel": EditableWheelWithHook,
        },
        include_package_data=True,
    )
