// The elementwise ops (the series and its derivatives) over one device's kernel runner: each
// device file supplies run_elementwise(t, grad or nullptr, tables) and registers these, so the
// arguments of both ops are turned into tables in one place.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

#include "legendre_recurrence.h"

namespace sfrik {

using RunElementwise = at::Tensor (*)(const at::Tensor& t, const at::Tensor* grad, const SeriesTables& tables);

// legendre_series(t, coeffs, q): sum_k coeffs[k] P_k(q; t), elementwise.
template <RunElementwise Run>
at::Tensor legendre_series_op(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t q) {
  return Run(t, nullptr, make_tables(coeffs, q, 0));
}

// legendre_series_backward(grad, t, coeffs, q, order): grad times the order-th derivative.
template <RunElementwise Run>
at::Tensor legendre_series_backward_op(const at::Tensor& grad, const at::Tensor& t, at::ArrayRef<double> coeffs,
                                       int64_t q, int64_t order) {
  return Run(t, &grad, make_tables(coeffs, q, order));
}

}  // namespace sfrik
