"""Test inputs, and the conversions of device-parametrised tests.

Tensors are drawn on the CPU (a CPU generator, so the same values on every device) and moved to
the test's device; references are computed on the CPU in float64, from the CPU copy or from
numpy() (which needs the CPU: use to_numpy)."""

import numpy as np
import torch


def gram(n: int, q: int = 16, dtype=torch.float64, generator=None, device="cpu") -> torch.Tensor:
    """A real Gram matrix of L2-normalised embeddings (entries in [-1, 1], rounding included),
    computed on the CPU and moved to `device`."""
    z = torch.randn(n, q, dtype=dtype, generator=generator)
    z = torch.nn.functional.normalize(z, dim=1)
    return (z @ z.T).to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """t's values as a numpy array, from any device."""
    return t.detach().cpu().numpy()


def leaf(t: torch.Tensor, device) -> torch.Tensor:
    """A copy of t on `device` that requires grad (t itself, a CPU reference, is left as it was)."""
    return t.detach().to(device, copy=True).requires_grad_()
