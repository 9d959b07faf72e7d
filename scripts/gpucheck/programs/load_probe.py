"""Loads the extension and prints extension_info() as one JSON line; with argv[1] == "cuda", also
checks that it has CUDA kernels and that they agree with the CPU kernel (the build stage's check)."""

import json
import sys

import torch

import sfrik_plugin

info = sfrik_plugin.extension_info()
print(json.dumps(info))
assert info["loaded"], info
if sys.argv[1:] == ["cuda"]:
    assert info["cuda"], "the extension has no CUDA kernels"
    t = torch.linspace(-1, 1, 101, device="cuda", dtype=torch.float64)
    got = sfrik_plugin.legendre(t, 3, 3).cpu()
    assert torch.allclose(got, sfrik_plugin.legendre(t.cpu(), 3, 3), rtol=0, atol=1e-12)
