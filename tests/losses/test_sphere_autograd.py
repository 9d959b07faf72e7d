"""Tests of sfrik_plugin.sphere_autograd: the Gram matrix's one-GEMM backward, the row
normalisation, and the fused two-view Grams (values, gradients against autograd through the plain
formulas, float32 against float64, gradcheck and double backward), on every device (the `device`
fixture)."""

import pytest
import torch


def test_gram_matrix_gradient_is_exact(device):
    # The one-GEMM backward against autograd's own matmul rule, for a non-symmetric upstream grad.
    from sfrik_plugin.sphere_autograd import gram_matrix

    u = torch.randn(7, 5, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(gram_matrix, (u,))
    assert torch.autograd.gradgradcheck(gram_matrix, (u,))
    upstream = torch.randn(7, 7, dtype=torch.float64).to(device)
    (mine,) = torch.autograd.grad(gram_matrix(u), u, upstream)
    (plain,) = torch.autograd.grad(u @ u.T, u, upstream)
    torch.testing.assert_close(mine, plain, rtol=1e-12, atol=1e-12)


def test_row_normalisation_matches_f_normalize(device):
    from sfrik_plugin.sphere_autograd import _RowNormalize

    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, dtype=torch.float64, generator=g).to(device)
    z[2] = 0.0  # a zero row: F.normalize's eps branch
    z[4] *= 1e-14  # shorter than eps
    z.requires_grad_(True)
    upstream = torch.randn(6, 4, dtype=torch.float64, generator=g).to(device)
    mine = _RowNormalize.apply(z, 1e-12)
    ref = torch.nn.functional.normalize(z, dim=1)
    # the same formula to rounding, not to the bit: row_norms sums the squares in its own order
    # (158 of 3000 random draws differ from torch's norm, by at most 1.7 eps; asserting equality
    # failed whenever the unseeded draw was one of them)
    torch.testing.assert_close(mine, ref, rtol=4 * torch.finfo(torch.float64).eps, atol=0)
    (g_mine,) = torch.autograd.grad(mine, z, upstream)
    (g_ref,) = torch.autograd.grad(ref, z, upstream)
    torch.testing.assert_close(g_mine, g_ref, rtol=1e-12, atol=1e-12)
    zz = torch.randn(5, 3, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: _RowNormalize.apply(x, 1e-12), (zz,))
    assert torch.autograd.gradgradcheck(lambda x: _RowNormalize.apply(x, 1e-12), (zz,))


def _composed_two_view(z1, z2):
    """The same three outputs through F.normalize, plain matmul and F.mse_loss (autograd's rules)."""
    u1, u2 = (torch.nn.functional.normalize(z, dim=1) for z in (z1, z2))
    return u1 @ u1.T, u2 @ u2.T, torch.nn.functional.mse_loss(u1, u2)


def _two_views(seed=3, n=9, q=6, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(2, n, q, dtype=dtype, generator=g).to(device)
    z1[2] = 0.0  # F.normalize's eps branch: a zero row ...
    z2[5] *= 1e-14  # ... and a row shorter than eps
    z2[7] = 3.0 * z1[7]  # the same direction: a zero invariance term
    return z1.requires_grad_(True), z2.requires_grad_(True), g


@pytest.mark.parametrize("used", ["all", "grams_only", "mse_only", "one_gram", "one_gram_and_mse"])
def test_fused_two_view_grams_match_the_composed_formula(device, used):
    # The fused backward (one addmm per view) against autograd through the plain formula, in float64.
    from sfrik_plugin.sphere_autograd import two_view_sphere_grams

    z1, z2, g = _two_views(device=device)
    upstream = [torch.randn(o.shape, dtype=torch.float64, generator=g).to(device) for o in _composed_two_view(z1, z2)]
    keep = {"all": [0, 1, 2], "grams_only": [0, 1], "mse_only": [2], "one_gram": [1], "one_gram_and_mse": [0, 2]}[used]

    def objective(outputs):
        return sum((outputs[i] * upstream[i]).sum() for i in keep)

    mine, ref = two_view_sphere_grams(z1, z2), _composed_two_view(z1, z2)
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    g_mine = torch.autograd.grad(objective(mine), (z1, z2), allow_unused=True)
    g_ref = torch.autograd.grad(objective(ref), (z1, z2), allow_unused=True)
    for a, b in zip(g_mine, g_ref):
        if b is None:
            assert a is None or not a.abs().max() > 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_fused_two_view_grams_float32_against_float64(device):
    from sfrik_plugin.sphere_autograd import two_view_sphere_grams

    z1, z2, g = _two_views(n=64, q=512, device=device)
    upstream = [torch.randn(o.shape, dtype=torch.float64, generator=g).to(device) for o in _composed_two_view(z1, z2)]
    ref = _composed_two_view(z1, z2)
    g_ref = torch.autograd.grad(sum((o * u).sum() for o, u in zip(ref, upstream)), (z1, z2))
    a, b = (z.detach().float().requires_grad_() for z in (z1, z2))
    mine = two_view_sphere_grams(a, b)
    g_mine = torch.autograd.grad(sum((o * u.float()).sum() for o, u in zip(mine, upstream)), (a, b))
    for x, y in zip(mine, ref):
        torch.testing.assert_close(x.double(), y, rtol=1e-5, atol=1e-6)
    for x, y in zip(g_mine, g_ref):
        torch.testing.assert_close(x.double(), y, rtol=1e-4, atol=1e-5 * float(y.abs().max()))


def test_fused_two_view_grams_gradcheck_and_double_backward(device):
    from sfrik_plugin.sphere_autograd import two_view_sphere_grams

    z1, z2 = (torch.randn(5, 4, dtype=torch.float64).to(device).requires_grad_() for _ in range(2))
    assert torch.autograd.gradcheck(two_view_sphere_grams, (z1, z2))
    assert torch.autograd.gradgradcheck(two_view_sphere_grams, (z1, z2))
    only_first = (z1, z2.detach())
    assert torch.autograd.gradgradcheck(two_view_sphere_grams, only_first)


def test_unit_invariance_value_gradient_and_double_backward():
    # The non-fused paths' invariance: the value from double row sums (equal to the fused function's),
    # the gradient of mse(u1, u2) through the normalisation, exact to second order.
    from sfrik_plugin.sphere_autograd import to_sphere, two_view_sphere_grams, unit_invariance

    g = torch.Generator().manual_seed(21)
    z1 = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = (z1.detach() + 0.1 * torch.randn(7, 5, generator=g, dtype=torch.float64)).requires_grad_()

    def invariance(a, b):
        return unit_invariance(to_sphere(a), to_sphere(b), a, b)

    expected = torch.nn.functional.mse_loss(
        torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    )
    torch.testing.assert_close(invariance(z1, z2), expected, rtol=1e-12, atol=0)
    assert torch.equal(invariance(z1, z2), two_view_sphere_grams(z1, z2)[2])
    assert torch.autograd.gradcheck(invariance, (z1, z2))
    assert torch.autograd.gradgradcheck(invariance, (z1, z2))
