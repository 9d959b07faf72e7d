"""sfrik_plugin: SFRIK (self-supervised learning with rotation-invariant kernels) with compiled
Legendre-series operators on CPU and CUDA.

Importing the package loads the compiled extension and registers the operators
``torch.ops.sfrik.*`` with their fake (meta) kernels, autograd formulas and autocast rules, so that
torch.compile and torch.library.opcheck work from the first call. The Hydra configs live in the
torch-free package ``sfrik_plugin_configs``, so that Hydra apps that merely have the plugin
installed never import torch.
"""

__version__ = "0.1.0"

from ._extension import extension_info
from .kernels import DistanceKernel, GaussianKernel

# The *_terms and multi-crop functions are deprecated (each loss is its class and its function):
# importable from here for one release, left out of __all__.
from .losses import (  # noqa: F401
    AUHLoss,
    KernelMMDLoss,
    LossTerms,
    SFRIKLoss,
    auh_loss_func,
    auh_loss_terms,
    kernel_mmd_loss_func,
    kernel_mmd_loss_terms,
    sfrik_loss_func,
    sfrik_loss_terms,
    sfrik_multicrop_loss_func,
    sfrik_multicrop_loss_terms,
)
from .regulariser import kernel_mmd_uniform, mmd_uniform
from .series import legendre, legendre_series
from .sphere_mmd import SphereMMD

__all__ = [
    "extension_info",
    "legendre",
    "legendre_series",
    "mmd_uniform",
    "SphereMMD",
    "LossTerms",
    "SFRIKLoss",
    "sfrik_loss_func",
    "AUHLoss",
    "auh_loss_func",
    "kernel_mmd_uniform",
    "KernelMMDLoss",
    "kernel_mmd_loss_func",
    "GaussianKernel",
    "DistanceKernel",
]
