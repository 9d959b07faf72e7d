"""sfrik_plugin: SFRIK (self-supervised learning with rotation-invariant kernels) with compiled
Legendre-series operators on CPU and CUDA."""
from ._extension import extension_info
from .legendre import legendre, legendre_series

__all__ = ["extension_info", "legendre", "legendre_series"]
__version__ = "0.1.0"
