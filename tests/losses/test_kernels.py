"""The Gaussian and distance kernels' MMD regularisers and their loss against an independent
float64 numpy reference (values, and gradients from the analytic derivative), on every device
(the `device` fixture); argument errors."""

import numpy as np
import pytest
import torch

from sfrik_plugin import DistanceKernel, GaussianKernel, KernelMMDLoss, kernel_mmd_uniform
from sfrik_plugin.kernels import KERNELS as REGISTRY
from sfrik_plugin.kernels import parse_kernel


def reference(z: np.ndarray, kernel):
    """(value, d value / d z) of (1/n^2) sum_ij k(u_i . u_j), u = z / ||z||, by hand in float64 from
    the kernel's formula in its registry entry (k(1) on the diagonal, which carries no gradient:
    it is constant on the sphere)."""
    entry = next(e for e in REGISTRY.values() if isinstance(kernel, e.cls))
    n = z.shape[0]
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    u = z / norms
    g = np.clip(u @ u.T, -1.0, 1.0)
    off = ~np.eye(n, dtype=bool)
    parameter = getattr(kernel, entry.parameter)
    k_off, dk_off = entry.reference(g[off], parameter)
    with np.errstate(divide="ignore"):  # k'(1) may be infinite (the distance kernel): not used
        k_one, _ = entry.reference(np.ones(1), parameter)
    k, dk = np.full((n, n), k_one[0]), np.zeros((n, n))
    k[off], dk[off] = k_off, dk_off
    value = k.sum() / n**2
    grad_u = 2 * (dk @ u) / n**2  # G symmetric: each pair counted twice
    grad_z = (grad_u - (grad_u * u).sum(1, keepdims=True) * u) / norms
    return value, grad_z


# every registered kernel at its default, and parameters away from it
KERNELS = [entry.cls() for entry in REGISTRY.values()] + [GaussianKernel(0.3), DistanceKernel(0.5), DistanceKernel(1.9)]


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("n, q", [(2, 3), (17, 8), (64, 256)])
def test_value_and_gradient_match_float64_reference(device, kernel, n, q):
    z = torch.randn(n, q, dtype=torch.float64, generator=torch.Generator().manual_seed(n * q)) * 3
    ref_value, ref_grad = reference(z.numpy(), kernel)
    z = z.to(device).requires_grad_(True)
    value = kernel_mmd_uniform(z, kernel)
    value.backward()
    np.testing.assert_allclose(value.item(), ref_value, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(z.grad.cpu().numpy(), ref_grad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kernel", [GaussianKernel(2.5), DistanceKernel(1.0)], ids=str)
def test_float32_close_to_float64(device, kernel):
    z = torch.randn(128, 512, generator=torch.Generator().manual_seed(0)).to(device)
    z64 = z.double().requires_grad_(True)
    z32 = z.clone().requires_grad_(True)
    kernel_mmd_uniform(z64, kernel).backward()
    kernel_mmd_uniform(z32, kernel).backward()
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-3, atol=1e-3 * z64.grad.abs().max().item())


def test_distance_kernel_gradient_finite_for_equal_rows(device):
    z = torch.randn(8, 16, dtype=torch.float64).to(device)
    z = torch.cat([z, z[:2]]).requires_grad_(True)  # two duplicated rows: distance 0 off the diagonal
    kernel_mmd_uniform(z, DistanceKernel(1.0)).backward()
    assert torch.isfinite(z.grad).all()


def test_uniform_points_beat_collapsed_ones(device):
    """Both kernels' MMD is smaller for spread-out embeddings than for a collapsed batch."""
    spread = torch.randn(256, 64, generator=torch.Generator().manual_seed(1)).to(device)
    collapsed = (torch.randn(1, 64).expand(256, 64) + 0.05 * torch.randn(256, 64)).to(device)
    for kernel in (GaussianKernel(2.5), DistanceKernel(1.0)):
        assert kernel_mmd_uniform(spread, kernel) < kernel_mmd_uniform(collapsed, kernel)


def test_loss_terms_are_the_formula(device):
    z = torch.randn(2, 32, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z1, z2 = z.to(device).unbind(0)
    kernel = GaussianKernel(1.5)
    terms = KernelMMDLoss(kernel, sim_loss_weight=10.0, mmd_loss_weight=3.0).terms(z1, z2)
    u1, u2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    invariance = torch.nn.functional.mse_loss(u1, u2)
    regulariser = (kernel_mmd_uniform(z1, kernel) + kernel_mmd_uniform(z2, kernel)) / 2
    torch.testing.assert_close(terms.invariance, invariance)
    torch.testing.assert_close(terms.regulariser, regulariser)
    torch.testing.assert_close(terms.loss, 10.0 * invariance + 3.0 * regulariser)
    module = KernelMMDLoss(kernel, sim_loss_weight=10.0, mmd_loss_weight=3.0)
    torch.testing.assert_close(module(z1, z2), terms.loss)


def test_bad_arguments_name_themselves():
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="p must be a finite number in \\(0, 2\\)"):
        kernel_mmd_uniform(z, DistanceKernel(2.0))
    with pytest.raises(ValueError, match="s must be a finite number > 0"):
        kernel_mmd_uniform(z, GaussianKernel(-1.0))
    with pytest.raises(TypeError, match="kernel must be a GaussianKernel or a DistanceKernel"):
        kernel_mmd_uniform(z, "gaussian")
    assert parse_kernel("gaussian") == GaussianKernel() and parse_kernel("distance") == DistanceKernel()  # defaults
    with pytest.raises(ValueError, match="kernel must be 'gaussian' or 'distance'"):
        parse_kernel("legendre", 1.0)
    with pytest.raises(ValueError, match="sim_loss_weight"):
        KernelMMDLoss(GaussianKernel(), sim_loss_weight=-1)
    with pytest.raises(ValueError, match="z must be 2-D"):
        kernel_mmd_uniform(torch.randn(4), GaussianKernel())


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: GaussianKernel(-2), ValueError, r"GaussianKernel: s must be a finite number > 0, got -2\.0"),
        (lambda: GaussianKernel(s=float("nan")), ValueError, r"GaussianKernel: s must be a finite number > 0"),
        (lambda: GaussianKernel("2.5"), TypeError, r"GaussianKernel: s must be a real number > 0, got '2\.5'"),
        (lambda: DistanceKernel(2.0), ValueError, r"DistanceKernel: p must be a finite number in \(0, 2\), got 2\.0"),
        (lambda: DistanceKernel(p=True), TypeError, r"DistanceKernel: p must be a real number in \(0, 2\)"),
    ],
)
def test_a_bad_kernel_parameter_is_refused_at_construction(make, error, message):
    # before any loss is built or any forward pass runs (it used to fail at the first forward)
    with pytest.raises(error, match=message):
        KernelMMDLoss(make())


def test_the_kernels_stay_plain_named_tuples():
    import copy
    import pickle

    kernel = GaussianKernel(2)
    assert kernel == GaussianKernel(2.0) == (2.0,) and kernel.s == 2.0 and isinstance(kernel.s, float)
    assert repr(kernel) == "GaussianKernel(s=2.0)" and repr(DistanceKernel()) == "DistanceKernel(p=1.0)"
    assert pickle.loads(pickle.dumps(kernel)) == kernel and copy.deepcopy(DistanceKernel(0.5)) == DistanceKernel(0.5)
    assert hash(kernel) == hash(GaussianKernel(2.0)) and GaussianKernel(s=0.5).s == 0.5


def test_the_registry_is_what_the_demo_and_the_study_take_kernels_from():
    from sfrik_experiments.engine.objectives import KERNEL_METHODS, build_objective
    from sfrik_plugin.kernels import KERNELS, check_kernel

    assert KERNEL_METHODS == tuple(f"mmd_{name}" for name in KERNELS)
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    for name, entry in KERNELS.items():
        kernel = parse_kernel(name)
        assert isinstance(kernel, entry.cls) and check_kernel(kernel) is kernel
        assert getattr(kernel, entry.parameter) == getattr(entry.cls(), entry.parameter)  # defaults.py's value
        _, loss = build_objective(f"mmd_{name}", mmd_loss_weight=2.0)
        assert loss.kernel == kernel and torch.isfinite(loss(z1, z2))
