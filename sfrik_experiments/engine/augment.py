"""Batched, per-image random augmentations on tensors, applied on the training device inside the
training step: per-image PIL transforms keep 2 CPU cores busy with data instead of the network.

Each image of a batch gets its own random resized crop (one torchvision roi_align call for the
whole batch), horizontal flip, brightness/contrast (and, for colour images, saturation and
grayscale) jitter: the SimCLR / VICReg recipe for small images, without blur."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import roi_align


class BatchAugment(nn.Module):
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: float = 0.4,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        flip_p: float = 0.5,
    ):
        super().__init__()
        self.size, self.scale, self.ratio = size, scale, ratio
        self.jitter, self.jitter_p, self.grayscale_p, self.flip_p = jitter, jitter_p, grayscale_p, flip_p
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def crop_boxes(self, n: int, height: int, width: int, device) -> torch.Tensor:
        """(n, 5) boxes [image index, x1, y1, x2, y2] drawn as torchvision's RandomResizedCrop draws
        them (area fraction uniform in scale, log-uniform aspect ratio), clipped to the image."""
        area = height * width * torch.empty(n, device=device).uniform_(*self.scale)
        log_ratio = torch.empty(n, device=device).uniform_(*torch.log(torch.tensor(self.ratio)).tolist())
        aspect = torch.exp(log_ratio)
        w = torch.sqrt(area * aspect).clamp(1, width)
        h = torch.sqrt(area / aspect).clamp(1, height)
        x1 = torch.rand(n, device=device) * (width - w)
        y1 = torch.rand(n, device=device) * (height - h)
        index = torch.arange(n, device=device, dtype=torch.float32)
        return torch.stack([index, x1, y1, x1 + w, y1 + h], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n, c, h, w) -> float32 (n, c, size, size), normalised."""
        x = images.float().div_(255)
        n, c, h, w = x.shape
        x = roi_align(x, self.crop_boxes(n, h, w, x.device), output_size=self.size, aligned=True)
        flip = torch.rand(n, 1, 1, 1, device=x.device) < self.flip_p
        x = torch.where(flip, x.flip(3), x)
        x = self._color_jitter(x)
        return (x - self.mean) / self.std  # the backbone takes it to its memory format

    def _color_jitter(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]

        def factor():  # per-image factor in [1 - jitter, 1 + jitter], 1 where jitter is not applied
            f = torch.empty(n, 1, 1, 1, device=x.device).uniform_(1 - self.jitter, 1 + self.jitter)
            return torch.where(apply, f, torch.ones_like(f))

        apply = torch.rand(n, 1, 1, 1, device=x.device) < self.jitter_p
        x = x * factor()  # brightness
        grey = self._grey(x)
        x = (x - grey.mean((2, 3), keepdim=True)) * factor() + grey.mean((2, 3), keepdim=True)  # contrast
        if c == 3:
            grey = self._grey(x)
            x = (x - grey) * factor() + grey  # saturation
            to_grey = torch.rand(n, 1, 1, 1, device=x.device) < self.grayscale_p
            x = torch.where(to_grey, self._grey(x).expand_as(x), x)
        return x.clamp_(0, 1)

    @staticmethod
    def _grey(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x
        weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
