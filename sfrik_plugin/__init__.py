"""sfrik_plugin: SFRIK (self-supervised learning with rotation-invariant kernels) with compiled
Legendre-series operators on CPU and CUDA."""
from ._extension import extension_info
from .legendre import legendre, legendre_series
from .losses import (
    AUHLoss,
    LossTerms,
    SFRIKLoss,
    auh_loss_func,
    auh_loss_terms,
    mmd_uniform,
    sfrik_loss_func,
    sfrik_loss_terms,
    sfrik_multicrop_loss_func,
    sfrik_multicrop_loss_terms,
)

__all__ = [
    "extension_info", "legendre", "legendre_series",
    "mmd_uniform", "LossTerms", "sfrik_loss_terms", "sfrik_loss_func", "SFRIKLoss",
    "sfrik_multicrop_loss_terms", "sfrik_multicrop_loss_func", "auh_loss_terms", "auh_loss_func", "AUHLoss",
]
__version__ = "0.1.0"
