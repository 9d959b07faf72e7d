"""The Gram-precision option (sfrik_plugin.precision, gram_precision= of the SFRIK losses): TF32
rounding against numpy's, the reduced-precision regulariser against an independent float64
computation on the rounded rows, equal across the dense and tiled paths, the straight-through
gradient, on every device (the `device` fixture: on "cuda" the reduced-precision Gram is a TF32 or
half-precision GEMM with float32 output); argument errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.cuda import requires_extension

from sfrik_plugin.losses import SFRIKLoss
from sfrik_plugin.precision import GRAM_PRECISIONS, round_rows, round_to_tf32
from sfrik_plugin.reference import legendre_series_reference
from sfrik_plugin.regulariser import mmd_uniform

pytestmark = requires_extension
WEIGHTS = (1.0, 40.0, 40.0)
LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}
SLACK = {"cpu": 1, "cuda": 4}  # float32 sums of another GEMM (cuBLAS) than the reference's


def numpy_tf32(x: np.ndarray) -> np.ndarray:
    """Round to 11 significant bits (10 stored), ties to even, through frexp (independent of the bit trick)."""
    mantissa, exponent = np.frexp(x.astype(np.float64))  # x = m 2^e, 0.5 <= |m| < 1
    return (np.round(mantissa * 2.0**11) / 2.0**11 * 2.0**exponent).astype(np.float32)


def test_round_to_tf32_matches_numpy_and_keeps_inf_and_nan(device):
    x = torch.randn(10000, generator=torch.Generator().manual_seed(0)) * 10.0 ** torch.randint(-20, 20, (10000,))
    ties = torch.tensor([1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-11), 1 + 2**-11 + 2**-20, 2.0**-130])
    x = torch.cat([x, ties]).float()
    expected = torch.from_numpy(numpy_tf32(x.numpy()))
    x, ties = x.to(device), ties.to(device)
    torch.testing.assert_close(round_to_tf32(x).cpu(), expected, rtol=0, atol=0)
    assert round_to_tf32(ties)[:3].tolist() == [1.0, 1 + 2**-9, -1.0]  # ties to even
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0, -0.0], device=device)
    out = round_to_tf32(special).cpu()
    assert out[0] == float("inf") and out[1] == float("-inf") and out[2].isnan() and out[3] == 0
    with pytest.raises(TypeError, match="float32"):
        round_to_tf32(x.double())


def reference_mmd(z: torch.Tensor, precision: str) -> torch.Tensor:
    """R from the float32 unit rows rounded to `precision`, everything after in float64 (on the CPU)."""
    u = F.normalize(z.float().cpu(), dim=1)
    r = u if precision == "float32" else (round_to_tf32(u) if precision == "tf32" else u.to(LOW[precision]).float())
    r = r.double()
    return legendre_series_reference(r @ r.T, [0.0, *WEIGHTS], z.shape[1]).mean()


@pytest.mark.parametrize("precision", GRAM_PRECISIONS)
def test_reduced_precision_regulariser_against_float64_on_the_rounded_rows(device, precision):
    z = torch.randn(300, 64, generator=torch.Generator().manual_seed(1))
    expected = reference_mmd(z, precision)
    z = z.to(device)
    for impl in ("dense", "tiled"):
        got = mmd_uniform(z, WEIGHTS, mmd_impl=impl, mmd_tile_size=128, gram_precision=precision)
        assert got.dtype == torch.float32
        # on CUDA the rounded rows go through a TF32 or half GEMM (float32 sums, in cuBLAS's order)
        torch.testing.assert_close(got.cpu().double(), expected, rtol=2e-6 * SLACK[device], atol=0)
    if precision != "float32":  # the option changes the numbers, by the rounding's size
        plain = mmd_uniform(z, WEIGHTS, mmd_impl="dense").cpu().double()
        assert abs(plain - expected) > 1e-7 * abs(expected)


def rounded_like_the_backward_gemm(s: torch.Tensor, precision: str) -> torch.Tensor:
    """S + S^T as the dense path's backward GEMM sees it (float64 in, float64 out): rounded to the
    precision, float16 after scaling by the power of two that brings its largest entry to [2^13, 2^14)."""
    scale = 1.0
    if precision == "fp16":
        scale = 2.0 ** np.floor(np.log2(2.0**13 / float(s.abs().max())))
    return round_rows((s * scale).float(), precision).double() / scale


@pytest.mark.parametrize("precision", ("tf32", "bf16", "fp16"))
def test_gradient_is_straight_through_the_rounding(device, precision):
    # dR/dz through the rounding as if it were the identity: the float64 gradient of R(r) with
    # respect to r, pushed back through the normalisation at u. The dense path's backward GEMM
    # (S + S^T) r runs in the precision too (S = dR/dG rounded like the rows); the tiled path's
    # tile GEMMs are float32 by design.
    z = torch.randn(200, 32, generator=torch.Generator().manual_seed(2)).to(device).requires_grad_()
    z64 = z.detach().cpu().double().requires_grad_()
    u = F.normalize(z64, dim=1)
    r = u + (round_rows(F.normalize(z.detach().cpu(), dim=1), precision).double() - u).detach()
    gram = (r @ r.T).detach().requires_grad_()
    (s,) = torch.autograd.grad(legendre_series_reference(gram, [0.0, *WEIGHTS], 32).mean(), gram)
    rounded_s = rounded_like_the_backward_gemm(s + s.T, precision)
    expected = {
        "dense": torch.autograd.grad(r, z64, rounded_s @ r.detach(), retain_graph=True)[0],
        "tiled": torch.autograd.grad(r, z64, (s + s.T) @ r.detach())[0],
    }
    # The kernel's float32 S and the float64 S above can round to neighbouring values of the low
    # type near a rounding boundary (rare): each such entry moves a gradient entry by at most one ulp
    # of the low type times max |S + S^T| (|r| <= 1), divided by the row's norm (the normalisation).
    ulp = {"tf32": 2.0**-10, "fp16": 2.0**-10, "bf16": 2.0**-7}[precision]
    flip = 2 * ulp * float((s + s.T).abs().max()) / float(z64.detach().norm(dim=1).min())
    for impl, want in expected.items():
        (got,) = torch.autograd.grad(
            mmd_uniform(z, WEIGHTS, mmd_impl=impl, mmd_tile_size=64, gram_precision=precision), z
        )
        atol = max(1e-4 * want.abs().max().item(), flip if impl == "dense" else 0.0)
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=atol)


def test_fp16_backward_gemm_keeps_the_gradient_normal():
    # At n = 2048, S = psi'(G) / n^2 ~ 1e-6: unscaled, float16 would hold it in subnormals (a few
    # bits) or flush it; scaled, the float16 backward GEMM loses no more than float16's rounding.
    from sfrik_plugin.precision import low_precision_mm

    g = torch.Generator().manual_seed(3)
    s = torch.rand(64, 64, generator=g) * 1e-6
    r = round_rows(F.normalize(torch.randn(64, 16, generator=g), dim=1), "fp16")
    exact = s.double() @ r.double()
    got = low_precision_mm(s, r, "fp16").double()
    unscaled = low_precision_mm(s, r, "fp16", scale_fp16=False).double()
    error, unscaled_error = ((x - exact).norm() / exact.norm() for x in (got, unscaled))
    assert error < 2 * 2.0**-11 < unscaled_error


def test_losses_take_the_option_and_float32_is_the_default(device):
    z1, z2 = (torch.randn(64, 48, generator=torch.Generator().manual_seed(s)).to(device) for s in (3, 4))
    default = SFRIKLoss(gather_distributed=False).terms(z1, z2)
    same = SFRIKLoss(gather_distributed=False, gram_precision="float32").terms(z1, z2)
    assert torch.equal(default.loss, same.loss)
    low = SFRIKLoss(gather_distributed=False, gram_precision="bf16").terms(z1, z2)
    # Only the regulariser's Gram changes: both paths compute the invariance from the same double row
    # sums (sphere_autograd), rounded once to float32; one ulp of slack for the two code paths' sums.
    torch.testing.assert_close(low.invariance, default.invariance, rtol=torch.finfo(torch.float32).eps, atol=0)
    expected = (reference_mmd(z1, "bf16") + reference_mmd(z2, "bf16")) / 2
    torch.testing.assert_close(low.regulariser.cpu().double(), expected, rtol=2e-6 * SLACK[device], atol=0)
    module = SFRIKLoss(gather_distributed=False, gram_precision="fp16")
    assert "gram_precision='fp16'" in repr(module)
    torch.testing.assert_close(
        module(z1, z2), SFRIKLoss(gather_distributed=False, gram_precision="fp16").terms(z1, z2).loss
    )


def test_float64_embeddings_keep_float64_with_the_default(device):
    z = torch.randn(50, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(device)
    got = mmd_uniform(z, WEIGHTS, gram_precision="float32")
    u = F.normalize(z, dim=1)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, legendre_series_reference(u @ u.T, [0.0, *WEIGHTS], 16).mean(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", ("int8", "FP16", None, 16))
def test_bad_precision_names_the_argument(bad):
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match="gram_precision must be one of"):
        mmd_uniform(z, WEIGHTS, gram_precision=bad)
    with pytest.raises(ValueError, match="gram_precision must be one of"):
        SFRIKLoss(gram_precision=bad)
    with pytest.raises(ValueError, match="gram_precision must be one of"):
        SFRIKLoss(gram_precision=bad).terms(z, z)
