"""sfrik_plugin.reference, the oracle other tests use and the extension's fallback: the recurrence
and the official code's closed forms, both against scipy (float64)."""

import numpy as np
import pytest
import torch
from helpers.references import DIMS, scipy_legendre, scipy_series

from sfrik_plugin.reference import legendre_series_reference, official_legendre_polynomial, official_psi

T = torch.linspace(-1, 1, 401, dtype=torch.float64)


@pytest.mark.parametrize("dim", DIMS)
def test_recurrence_matches_scipy(dim):
    coeffs = torch.rand(12, generator=torch.Generator().manual_seed(dim), dtype=torch.float64).tolist()
    got = legendre_series_reference(T, coeffs, dim).numpy()
    np.testing.assert_allclose(got, scipy_series(coeffs, dim, T.numpy()), rtol=0, atol=1e-12 * len(coeffs))


@pytest.mark.parametrize("dim", [d for d in DIMS if d >= 3])  # the closed forms divide by dim - 1 and dim + 1
def test_official_closed_forms_match_scipy(dim):
    for degree in (1, 2, 3, 4):
        got = official_legendre_polynomial(dim, degree, T).numpy()
        np.testing.assert_allclose(got, scipy_legendre(degree, dim, T.numpy()), rtol=0, atol=1e-12, err_msg=degree)
    b = [1.0, 40.0, 40.0]
    np.testing.assert_allclose(
        official_psi(T, b, dim).numpy(), scipy_series([0.0, *b], dim, T.numpy()), rtol=0, atol=1e-10
    )
    with pytest.raises(NotImplementedError, match="stop at degree 4"):
        official_legendre_polynomial(dim, 5, T)
