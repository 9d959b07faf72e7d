"""Tests of sfrik_plugin.losses: SFRIK, AUH and multi-crop losses against the official code's
formulas (re-stated below as independent oracles), the MMD against a scipy Gegenbauer double loop,
gradients, mixed precision and non-finite inputs on every device (the `device` fixture); argument
checks, and a real two-process gloo all-gather, on the CPU.

Inputs are drawn on the CPU and moved. Where float32 results of two different computations are
compared (the official formula's GEMMs against the fused ones), the CUDA case allows SLACK times
the CPU's tolerance: cuBLAS sums the products in other orders than the CPU's GEMMs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers import dist as dist_helpers
from scipy.special import eval_chebyt, eval_gegenbauer

import sfrik_plugin
from sfrik_plugin.distributed import gather_rows
from sfrik_plugin.losses import (
    AUHLoss,
    LossTerms,
    SFRIKLoss,
    auh_loss_func,
    sfrik_loss_func,
)
from sfrik_plugin.reference import official_psi
from sfrik_plugin.regulariser import mmd_uniform


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=dtype).to(device)


SLACK = {"cpu": 1, "cuda": 4}


# ---------------------------------------------------------------------------------------------
# Oracles: the official valeoai/sfrik formulas (src/sfrik/ssl.py): its closed forms of P_l are
# sfrik_plugin.reference.official_psi (checked against scipy in tests/ops); the losses around them here.


def official_mmd(emb: torch.Tensor, b) -> torch.Tensor:
    """SFRIK.mmd_loss: psi of the full Gram matrix (diagonal included), mean."""
    return official_psi(torch.mm(emb, emb.t()), b, emb.shape[1]).mean()


def official_sfrik(z1, z2, b, sim_w=4000.0, mmd_w=1.0):
    """SFRIK.two_views_forward after the projector, one process."""
    x, y = F.normalize(z1, dim=1, p=2), F.normalize(z2, dim=1, p=2)
    return sim_w * F.mse_loss(x, y) + mmd_w * (official_mmd(x, b) + official_mmd(y, b)) / 2


def official_off_diagonal(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def official_auh(z1, z2, t=2.5, sim_w=3000.0, unif_w=1.0):
    """AUH.two_views_forward after the projector, one process: mean of exp, then log."""
    x, y = F.normalize(z1, dim=1, p=2), F.normalize(z2, dim=1, p=2)
    unif = sum(torch.exp(-2 * t * (1 - official_off_diagonal(e @ e.t()))).mean().log() for e in (x, y)) / 2
    return sim_w * F.mse_loss(x, y) + unif_w * unif


def official_swav_multicrop(views, num_large, reg_small, b, sim_w=4000.0, mmd_w=1.0):
    """SFRIK.swav_multi_crop_forward after the projector, one process (general_indices = the
    first num_large views)."""
    views = [F.normalize(v, dim=1, p=2) for v in views]
    n_views = len(views)
    repr_loss = (
        sum(
            sum(F.mse_loss(views[v], views[i]) for i in range(n_views) if i != v) / (n_views - 1)
            for v in range(num_large)
        )
        / num_large
    )
    if reg_small:
        mmd = sum(official_mmd(e, b) for e in views) / n_views
    else:
        mmd = sum(official_mmd(views[v], b) for v in range(num_large)) / num_large
    return sim_w * repr_loss + mmd_w * mmd


def gegenbauer_mmd(z: np.ndarray, b, q: int) -> float:
    """Dense float64 double loop: (1/n^2) sum_{i,j} sum_l b_l C_l^a(t_ij) / C_l^a(1), a = (q-2)/2
    (scipy; Chebyshev T_l at q = 2, where scipy's Gegenbauer is 0)."""

    def p(degree, t):
        if q == 2:
            return eval_chebyt(degree, t)
        a = (q - 2) / 2
        return eval_gegenbauer(degree, a, t) / eval_gegenbauer(degree, a, 1.0)

    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = u.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            t = float(np.clip(u[i] @ u[j], -1.0, 1.0))
            total += sum(w * p(degree, t) for degree, w in enumerate(b, start=1))
    return total / n**2


# ---------------------------------------------------------------------------------------------
# SFRIK against the official formula


KERNELS = {"L2": (1.0, 40.0), "L3": (1.0, 40.0, 40.0), "L4": (1.0, 40.0, 40.0, 10.0)}


@pytest.mark.parametrize("q", [64, 8192])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_sfrik_matches_official_formula_float32(device, q, kernel):
    b = KERNELS[kernel]
    z1 = randn(32, q, seed=q, device=device)
    z2 = z1 + 0.5 * randn(32, q, seed=q + 1, device=device)
    loss = sfrik_loss_func(z1, z2, kernel_weights=b)
    expected = official_sfrik(z1, z2, b)
    assert loss.dtype == torch.float32 and loss.dim() == 0 and loss.device.type == device
    torch.testing.assert_close(loss, expected, rtol=2e-6 * SLACK[device], atol=1e-6 * SLACK[device])


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_sfrik_matches_official_formula_and_gradient_float64(device, kernel):
    b = KERNELS[kernel]
    z1 = randn(16, 64, seed=3, dtype=torch.float64, device=device).requires_grad_()
    z2 = (z1.detach() + 0.3 * randn(16, 64, seed=4, dtype=torch.float64, device=device)).requires_grad_()
    loss = sfrik_loss_func(z1, z2, sim_loss_weight=100.0, mmd_loss_weight=2.0, kernel_weights=b)
    expected = official_sfrik(z1, z2, b, sim_w=100.0, mmd_w=2.0)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (z1, z2))
    expected_grads = torch.autograd.grad(expected, (z1, z2))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_sfrik_terms_module_and_function_agree(device):
    z1, z2 = randn(12, 32, seed=5, device=device), randn(12, 32, seed=6, device=device)
    terms = SFRIKLoss(sim_loss_weight=10.0, mmd_loss_weight=3.0, kernel_weights=(1.0, 2.0)).terms(z1, z2)
    assert isinstance(terms, LossTerms)
    torch.testing.assert_close(terms.loss, 10.0 * terms.invariance + 3.0 * terms.regulariser)
    torch.testing.assert_close(terms.invariance, F.mse_loss(F.normalize(z1), F.normalize(z2)))
    u1, u2 = F.normalize(z1), F.normalize(z2)
    torch.testing.assert_close(terms.regulariser, (mmd_uniform(u1, (1.0, 2.0)) + mmd_uniform(u2, (1.0, 2.0))) / 2)
    function = sfrik_loss_func(z1, z2, sim_loss_weight=10.0, mmd_loss_weight=3.0, kernel_weights=(1.0, 2.0))
    module = SFRIKLoss(sim_loss_weight=10.0, mmd_loss_weight=3.0, kernel_weights=(1.0, 2.0))
    assert torch.equal(function, terms.loss) and torch.equal(module(z1, z2), terms.loss)
    assert torch.equal(module.terms(z1, z2).regulariser, terms.regulariser)


# ---------------------------------------------------------------------------------------------
# mmd_uniform


@pytest.mark.parametrize("q", [2, 3, 5, 64])
def test_mmd_uniform_matches_gegenbauer_double_loop(device, q):
    b = (0.7, 2.0, 1.5, 0.25, 3.0)
    z = randn(10, q, seed=10 + q, dtype=torch.float64)
    z[3] = 2.5 * z[0]  # a repeated direction: t = 1 off the diagonal
    got = mmd_uniform(z.to(device), b).item()
    torch.testing.assert_close(got, gegenbauer_mmd(z.numpy(), b, q), rtol=1e-11, atol=1e-12)


def test_mmd_uniform_gradcheck(device):
    z = randn(6, 5, seed=20, dtype=torch.float64, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: mmd_uniform(x, (1.0, 40.0, 40.0)), (z,))
    assert torch.autograd.gradgradcheck(lambda x: mmd_uniform(x, (1.0, 3.0)), (z,))


@pytest.mark.parametrize("q", [2, 3, 16])
def test_mmd_uniform_is_nonnegative(device, q):
    g = gen(30 + q)
    for trial in range(8):
        b = torch.rand(1 + trial % 5, generator=g, dtype=torch.float64).tolist()
        centre = torch.randn(1, q, generator=g, dtype=torch.float64)
        spread = 10.0 ** (-trial % 3)
        z = centre + spread * torch.randn(16, q, generator=g, dtype=torch.float64)  # clustered to spread
        assert mmd_uniform(z.to(device), b).item() >= -1e-12
    # The diagonal alone gives sum(b)/n, the MMD of one point mass per embedding.
    one = randn(1, q, seed=1, dtype=torch.float64, device=device)
    assert mmd_uniform(one, (1.0, 2.0)).item() == pytest.approx(3.0)


def test_mmd_uniform_near_zero_for_uniform_points(device):
    # For n i.i.d. uniform points, n R -> sum_l (b_l / N_l) chi2(N_l), N_l the dimension of the
    # degree-l spherical harmonics (q = 3: N_1 = 3, N_2 = 5): mean sum(b), variance 2 sum b_l^2 / N_l.
    n, b = 4000, (1.0, 40.0)
    uniform = mmd_uniform(randn(n, 3, seed=40, device=device), b).item()
    mean, std = sum(b), math.sqrt(2 * (b[0] ** 2 / 3 + b[1] ** 2 / 5))
    assert abs(n * uniform - mean) < 6 * std
    assert uniform < 0.05
    # A cap around one pole is far from uniform: R is O(sum b).
    cap = torch.tensor([0.0, 0.0, 1.0], device=device) + 0.3 * randn(n, 3, seed=41, device=device)
    assert mmd_uniform(cap, b).item() > 5.0


def test_mmd_uniform_normalises_rows(device):
    z = randn(9, 7, seed=50, dtype=torch.float64, device=device)
    scale = (torch.rand(9, 1, generator=gen(51), dtype=torch.float64) * 10 + 0.1).to(device)
    torch.testing.assert_close(mmd_uniform(z * scale, (1.0, 2.0, 3.0)), mmd_uniform(z, (1.0, 2.0, 3.0)))


# ---------------------------------------------------------------------------------------------
# AUH


@pytest.mark.parametrize("q", [64, 8192])
def test_auh_matches_official_formula(device, q):
    z1 = randn(32, q, seed=60, device=device)
    z2 = z1 + 0.5 * randn(32, q, seed=61, device=device)
    slack = SLACK[device]
    torch.testing.assert_close(auh_loss_func(z1, z2), official_auh(z1, z2), rtol=2e-6 * slack, atol=1e-5 * slack)
    z1, z2 = z1[:, :64].double().requires_grad_(), z2[:, :64].double().requires_grad_()
    loss, expected = auh_loss_func(z1, z2, t=1.5), official_auh(z1, z2, t=1.5)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    for g, e in zip(torch.autograd.grad(loss, (z1, z2)), torch.autograd.grad(expected, (z1, z2))):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_auh_is_stable_where_the_mean_of_exponentials_underflows(device):
    # t = 100, q = 256: u.v < 0.5 for every pair, so exp(-2t(1 - u.v)) < exp(-100) underflows in
    # float32 and the official mean-then-log gives -inf.
    z1, z2 = randn(16, 256, seed=62, device=device), randn(16, 256, seed=63, device=device)
    expected = official_auh(z1.double(), z2.double(), t=100.0)
    assert torch.isinf(official_auh(z1, z2, t=100.0))
    loss = auh_loss_func(z1, z2, t=100.0)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-3)


def test_auh_terms_module_and_function_agree(device):
    z1, z2 = randn(12, 32, seed=64, device=device), randn(12, 32, seed=65, device=device)
    terms = AUHLoss(sim_loss_weight=7.0, unif_loss_weight=2.0, t=1.0).terms(z1, z2)
    torch.testing.assert_close(terms.loss, 7.0 * terms.invariance + 2.0 * terms.regulariser)
    assert torch.equal(auh_loss_func(z1, z2, sim_loss_weight=7.0, unif_loss_weight=2.0, t=1.0), terms.loss)
    assert torch.equal(AUHLoss(sim_loss_weight=7.0, unif_loss_weight=2.0, t=1.0)(z1, z2), terms.loss)


# ---------------------------------------------------------------------------------------------
# Multi-crop


@pytest.mark.parametrize("num_large", [1, 2])
@pytest.mark.parametrize("reg_small", [False, True])
def test_multicrop_matches_official_swav_formula(device, num_large, reg_small):
    b = (1.0, 40.0, 40.0)
    base = randn(16, 128, seed=70, dtype=torch.float64, device=device)
    views = [
        (base + 0.4 * randn(16, 128, seed=71 + i, dtype=torch.float64, device=device)).requires_grad_()
        for i in range(6)
    ]
    loss = SFRIKLoss(kernel_weights=b).multicrop_terms(views, num_large, reg_small).loss
    expected = official_swav_multicrop(views, num_large, reg_small, b)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    for g, e in zip(torch.autograd.grad(loss, views), torch.autograd.grad(expected, views)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    f32 = [v.detach().float() for v in views]
    torch.testing.assert_close(
        SFRIKLoss(kernel_weights=b).multicrop_terms(f32, num_large, reg_small).loss,
        official_swav_multicrop(f32, num_large, reg_small, b),
        rtol=2e-6 * SLACK[device],
        atol=1e-6 * SLACK[device],
    )


def test_multicrop_with_two_large_views_is_the_two_view_loss(device):
    z1, z2 = randn(12, 32, seed=80, device=device), randn(12, 32, seed=81, device=device)
    two_view = SFRIKLoss().terms(z1, z2)
    multicrop = SFRIKLoss().multicrop_terms([z1, z2], 2)
    for a, e in zip(multicrop, two_view):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------------------------------------
# Mixed precision


@pytest.mark.parametrize("name", ["sfrik", "auh", "multicrop", "mmd"])
def test_bfloat16_autocast_computes_in_float32(device, name):
    losses = {
        "sfrik": lambda zs: sfrik_loss_func(zs[0], zs[1]),
        "auh": lambda zs: auh_loss_func(zs[0], zs[1]),
        "multicrop": lambda zs: SFRIKLoss().multicrop_terms(zs, 1, True).loss,
        "mmd": lambda zs: mmd_uniform(zs[0], (1.0, 40.0, 40.0)),
    }
    layer = torch.nn.Linear(32, 256).to(device)
    inputs = [randn(24, 32, seed=s, device=device) for s in (90, 91, 92)]
    with torch.autocast(device, dtype=torch.bfloat16):
        zs = [layer(x) for x in inputs]
        assert zs[0].dtype == torch.bfloat16
        loss = losses[name](zs)
    assert loss.dtype == torch.float32
    # Same bfloat16 embeddings, computed in float32 without autocast: equal to float32 rounding
    # (a bfloat16 Gram matrix or psi would be off by about 1e-2).
    torch.testing.assert_close(loss, losses[name]([z.float() for z in zs]), rtol=1e-5, atol=1e-5)
    # Against the all-float32 model, only the bfloat16 projector differs.
    torch.testing.assert_close(loss, losses[name]([layer(x) for x in inputs]), rtol=5e-2, atol=5e-2)
    loss.backward()
    assert layer.weight.grad.dtype == torch.float32 and torch.isfinite(layer.weight.grad).all()


# ---------------------------------------------------------------------------------------------
# Argument checks

Z = randn(4, 8, seed=100)

BAD_CALLS = [
    (lambda: sfrik_loss_func(Z.numpy(), Z), TypeError, "z1"),
    (lambda: sfrik_loss_func(Z, Z.long()), TypeError, "z2 must be a floating-point"),
    (lambda: sfrik_loss_func(Z.flatten(), Z.flatten()), ValueError, "z1 must be 2-D"),
    (lambda: sfrik_loss_func(Z, Z[:3]), ValueError, "z2 must have the shape of z1"),
    (lambda: sfrik_loss_func(Z, Z.double()), TypeError, "z2 must have the dtype of z1"),
    (lambda: sfrik_loss_func(Z[:0], Z[:0]), ValueError, "z1 must hold at least one"),
    (lambda: sfrik_loss_func(Z[:, :1], Z[:, :1]), ValueError, "z1 must have at least 2 features"),
    (lambda: sfrik_loss_func(Z, Z, kernel_weights=(1.0, -40.0)), ValueError, r"kernel_weights must be >= 0.*b_2"),
    (lambda: sfrik_loss_func(Z, Z, kernel_weights=()), ValueError, "kernel_weights must be non-empty"),
    (lambda: sfrik_loss_func(Z, Z, kernel_weights=(1.0, float("nan"))), ValueError, "kernel_weights must be finite"),
    (lambda: sfrik_loss_func(Z, Z, sim_loss_weight=-1.0), ValueError, "sim_loss_weight"),
    (lambda: sfrik_loss_func(Z, Z, sim_loss_weight="1"), TypeError, "sim_loss_weight"),
    (lambda: sfrik_loss_func(Z, Z, mmd_loss_weight=float("inf")), ValueError, "mmd_loss_weight"),
    (lambda: SFRIKLoss(kernel_weights=(-1.0,)), ValueError, "kernel_weights"),
    (lambda: mmd_uniform(Z[None], (1.0,)), ValueError, "z must be 2-D"),
    (lambda: mmd_uniform(Z[:, :1], (1.0,)), ValueError, "z must have at least 2 features"),
    (lambda: mmd_uniform(Z[:0], (1.0,)), ValueError, "z must hold at least one"),
    (lambda: mmd_uniform(Z, [-0.5]), ValueError, "kernel_weights"),
    (lambda: auh_loss_func(Z, Z, t=0.0), ValueError, "t must be a finite number > 0"),
    (lambda: auh_loss_func(Z, Z, t=-2.5), ValueError, "t must be"),
    (lambda: auh_loss_func(Z, Z, unif_loss_weight=-1.0), ValueError, "unif_loss_weight"),
    (lambda: auh_loss_func(Z[:1], Z[:1]), ValueError, "at least 2 embeddings"),
    (lambda: AUHLoss(t=float("nan")), ValueError, "t must be"),
    (lambda: SFRIKLoss().multicrop_terms([Z, Z, Z], 0).loss, ValueError, "num_large_crops"),
    (lambda: SFRIKLoss().multicrop_terms([Z, Z, Z], 4).loss, ValueError, "num_large_crops"),
    (lambda: SFRIKLoss().multicrop_terms([Z, Z, Z], 1.0).loss, TypeError, "num_large_crops"),
    (lambda: SFRIKLoss().multicrop_terms([Z, Z, Z], True).loss, TypeError, "num_large_crops"),
    (lambda: SFRIKLoss().multicrop_terms([Z], 1).loss, ValueError, "at least 2 views"),
    (lambda: SFRIKLoss().multicrop_terms(Z, 1).loss, TypeError, "views must be a list"),
    (lambda: SFRIKLoss().multicrop_terms([Z, Z, Z[:, :4]], 1).loss, ValueError, r"views\[2\] must have the shape"),
]


@pytest.mark.parametrize("call, error, match", BAD_CALLS, ids=[m for _, _, m in BAD_CALLS])
def test_bad_arguments_raise_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# Distributed


def test_without_process_group_nothing_is_gathered(device):
    assert not torch.distributed.is_initialized()
    z1, z2 = randn(8, 16, seed=110, device=device), randn(8, 16, seed=111, device=device)
    assert gather_rows(z1) is z1
    assert torch.equal(
        sfrik_loss_func(z1, z2, gather_distributed=True), sfrik_loss_func(z1, z2, gather_distributed=False)
    )
    assert torch.equal(auh_loss_func(z1, z2, gather_distributed=True), auh_loss_func(z1, z2, gather_distributed=False))
    assert torch.equal(mmd_uniform(z1, (1.0,), gather_distributed=True), mmd_uniform(z1, (1.0,)))


@pytest.mark.fresh_interpreter
def test_two_process_gloo_matches_single_process_global_batch():
    # Each rank: half of a fixed global batch through a shared layer, loss with the all-gather,
    # backward, gradients averaged over ranks as DDP does; compared (float64, in the workers)
    # with one process computing the same global batch. A failing rank raises here.
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    # The spawned processes import helpers.dist by name: pytest's pythonpath option (pyproject.toml)
    # puts tests/ on sys.path, which torch.multiprocessing passes on to them.
    mp.spawn(dist_helpers.worker, args=(2, dist_helpers.free_port()), nprocs=2, join=True)


def test_sfrik_and_auh_losses_fused_path_equals_the_gathered_path(device, monkeypatch):
    # Without a process group the fused function runs; forcing the generic path (normalise,
    # mse, gather, Gram; SFRIK's all-gather variant, shard_mmd=False) must give the same loss and gradients.
    import functools

    from sfrik_plugin import losses, regulariser

    g = torch.Generator().manual_seed(1)
    z1, z2 = (torch.randn(16, 12, dtype=torch.float64, generator=g).to(device).requires_grad_() for _ in range(2))
    for fn in (functools.partial(losses.sfrik_loss_func, shard_mmd=False), losses.auh_loss_func):
        fused = fn(z1, z2)
        g_fused = torch.autograd.grad(fused, (z1, z2))
        for module in (losses, regulariser):
            monkeypatch.setattr(module, "world_size", lambda: 2)
        monkeypatch.setattr(losses, "gather_views", lambda views, enabled: list(views))  # one process standing for two
        generic = fn(z1, z2)
        g_generic = torch.autograd.grad(generic, (z1, z2))
        monkeypatch.undo()
        torch.testing.assert_close(fused, generic, rtol=1e-13, atol=1e-15)
        for a, b in zip(g_fused, g_generic):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-14)


def test_float32_rows_whose_squares_overflow_keep_the_right_loss_and_gradient(device):
    # Entries past ~1.8e19 overflow the float32 sum of squares, not the norm: the loss and its
    # gradient must still match float64 (a diverging network must not get a silently wrong loss).
    z1 = torch.tensor([[1e20, 1e20, 0.0], [3e30, -1e30, 2e30], [1.0, 2.0, 3.0], [0.5, -1e25, 1.0]])
    z2 = z1 * torch.tensor([[1.0], [-0.5], [2.0], [1.0]]) + torch.tensor([0.0, 1e19, 0.0])
    z1, z2 = z1.to(device), z2.to(device)
    for fn in (sfrik_plugin.sfrik_loss_func, sfrik_plugin.auh_loss_func):
        values, grads = [], []
        for dtype in (torch.float32, torch.float64):
            a, b = z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()
            loss = fn(a, b, gather_distributed=False)
            values.append(loss.double())
            grads.append([g.double() for g in torch.autograd.grad(loss, (a, b))])
        torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-5)
        for g32, g64, z in zip(*grads, (z1, z2)):
            # dz scales as 1 / ||z_i||: compare the dimensionless ||z_i|| dz_i row by row
            norms = z.double().norm(dim=1, keepdim=True)
            scale = float((g64 * norms).abs().max())  # float32 rounding of the whole gradient
            torch.testing.assert_close(g32 * norms, g64 * norms, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(
        sfrik_plugin.mmd_uniform(z1, [1.0, 40.0]).double(),
        sfrik_plugin.mmd_uniform(z1.double(), [1.0, 40.0]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_an_infinite_entry_still_gives_a_non_finite_loss(device):
    z = torch.tensor([[float("inf"), 1.0, 0.0], [1.0, 2.0, 3.0]], device=device)
    assert not torch.isfinite(sfrik_plugin.mmd_uniform(z, [1.0]))
    assert not torch.isfinite(sfrik_plugin.sfrik_loss_func(z, z.flip(0), gather_distributed=False))


@pytest.mark.parametrize("fn", ["mmd", "sfrik", "auh"])
def test_float8_embeddings_rejected_by_name(fn):
    z = torch.randn(4, 3).to(torch.float8_e4m3fn)
    call = {
        "mmd": lambda: sfrik_plugin.mmd_uniform(z, [1.0]),
        "sfrik": lambda: sfrik_plugin.SFRIKLoss().terms(z, z),
        "auh": lambda: sfrik_plugin.AUHLoss().terms(z, z),
    }[fn]
    with pytest.raises(TypeError, match=r"^z1? must be a floating-point tensor \(float16, bfloat16"):
        call()
