"""sfrik_plugin: SFRIK (self-supervised learning with rotation-invariant kernels) with compiled
Legendre-series operators on CPU and CUDA.

The public names load on first use: Hydra imports this package in every Hydra app to read the
configs shipped in sfrik_plugin.configs, and that must not import torch or load the extension.
"""
import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "extension_info": "._extension",
    "legendre": ".series",
    "legendre_series": ".series",
    **{name: ".losses" for name in (
        "mmd_uniform", "LossTerms", "sfrik_loss_terms", "sfrik_loss_func", "SFRIKLoss",
        "sfrik_multicrop_loss_terms", "sfrik_multicrop_loss_func", "auh_loss_terms", "auh_loss_func", "AUHLoss",
        "kernel_mmd_uniform", "kernel_mmd_loss_terms", "KernelMMDLoss",
    )},
    **{name: ".kernels" for name in ("GaussianKernel", "DistanceKernel")},
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sfrik_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
