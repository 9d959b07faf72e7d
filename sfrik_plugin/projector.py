"""The projector head shared by every method the plugin trains (solo-learn methods and the demo)."""

from torch import nn


def build_projector(features_dim: int, proj_hidden_dim: int, proj_output_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias: the projector of the official SFRIK
    code (valeoai/sfrik, ``Projector``), shared by every method it compares."""
    return nn.Sequential(
        nn.Linear(features_dim, proj_hidden_dim),
        nn.BatchNorm1d(proj_hidden_dim),
        nn.ReLU(),
        nn.Linear(proj_hidden_dim, proj_hidden_dim),
        nn.BatchNorm1d(proj_hidden_dim),
        nn.ReLU(),
        nn.Linear(proj_hidden_dim, proj_output_dim, bias=False),
    )
