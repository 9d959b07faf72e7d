"""Evaluation of a frozen encoder: features of the (un-augmented) images, a linear probe trained on
the training features and a weighted kNN classifier, both scored on the test split (top-1, percent).
Hyper-parameters are fixed in advance: nothing is tuned on the test split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, mean, std, *, device, batch_size: int = 1024):
    """Backbone features (float32, on CPU) of uint8 images, normalised like the training views."""
    backbone.eval().to(device)
    mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=device).view(1, -1, 1, 1)
    out = []
    for chunk in images.split(batch_size):
        x = (chunk.to(device).float().div_(255) - mean) / std
        out.append(backbone(x).float().cpu())
    return torch.cat(out)


def linear_probe_top1(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 300,
) -> float:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS, fixed L2)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(torch.cat([train_y, test_y]).max()) + 1
    torch.manual_seed(0)
    probe = nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(
        probe.parameters(), lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(train_x), train_y) + weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return 100.0 * (probe(test_x).argmax(1) == test_y).float().mean().item()


@torch.no_grad()
def knn_top1(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> float:
    """Weighted kNN on cosine similarity, votes exp(s / T) (Wu et al. 2018; solo-learn's defaults)."""
    train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    num_classes = int(torch.cat([train_y, test_y]).max()) + 1
    k = min(k, train_x.shape[0])
    correct = 0
    for x, y in zip(test_x.split(chunk), test_y.split(chunk)):
        sim, idx = (x @ train_x.T).topk(k, dim=1)
        votes = x.new_zeros(x.shape[0], num_classes).scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == y).sum().item()
    return 100.0 * correct / test_y.shape[0]
