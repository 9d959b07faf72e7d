"""Test inputs."""

import torch


def gram(n: int, q: int = 16, dtype=torch.float64, generator=None) -> torch.Tensor:
    """A real Gram matrix of L2-normalised embeddings (entries in [-1, 1], rounding included)."""
    z = torch.randn(n, q, dtype=dtype, generator=generator)
    z = torch.nn.functional.normalize(z, dim=1)
    return z @ z.T
