"""Small ResNets with a CIFAR-style stem (3x3 convolution, stride 1, no max-pool) for 28-96 pixel
images, built from torchvision's BasicBlock with a configurable base width."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

ARCHS = {"resnet10": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2)}

# Channels-last is about 1.4x faster on a CPU (resnet10 w16, 2 cores), but oneDNN's channels-last
# weight gradient of a 1x1, stride-2 convolution with 2-7 input channels is wrong (errors up to 1e3,
# different on every run with 2 threads) and corrupts the heap with one thread (torch 2.14.1 on an
# AVX2 AMD EPYC; tests/demo/test_backbone_gradients.py). The downsampling convolutions take width,
# 2 width and 4 width channels, so a narrower network stays in the contiguous format.
CHANNELS_LAST_MIN_WIDTH = 8


class CifarResNet(nn.Module):
    """Stages of BasicBlocks with widths width * (1, 2, 4, 8); forward returns the pooled features
    (features_dim = 8 * width). Weights and inputs in memory_format: channels-last from
    CHANNELS_LAST_MIN_WIDTH on, contiguous below (forward converts its input)."""

    def __init__(self, layers: Sequence[int], width: int = 64, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages, inplanes = [], width
        for i, num_blocks in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            blocks = []
            for b in range(num_blocks):
                downsample = None
                if b == 0 and (stride != 1 or inplanes != planes):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                    )
                blocks.append(BasicBlock(inplanes, planes, stride if b == 0 else 1, downsample))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.features_dim = inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        wide = width >= CHANNELS_LAST_MIN_WIDTH
        self.memory_format = torch.channels_last if wide else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x):
        return self.pool(self.stages(self.stem(x.contiguous(memory_format=self.memory_format))))


def build_backbone(arch: str, width: int, in_channels: int) -> CifarResNet:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    return CifarResNet(ARCHS[arch], width, in_channels)
