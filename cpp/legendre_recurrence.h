// The maths shared by the CPU and CUDA kernels: the three-term recurrence of the
// Legendre polynomials in dimension q, normalised so that P_l(q; 1) = 1,
//
//   P_0 = 1,  P_1 = t,
//   P_{l+1} = alpha_l * t * P_l - beta_l * P_{l-1},
//   alpha_l = (2l + q - 2) / (l + q - 2),   beta_l = l / (l + q - 2),
//
// and the derivative identity d/dt P_l(q; t) = l (l + q - 2) / (q - 1) * P_{l-1}(q + 2; t),
// which turns the derivative of a series in dimension q into a series in dimension q + 2.
// The Python reference (sfrik_plugin/reference.py) implements the same maths independently;
// the tests compare both with scipy. How the kernels lay out their tensors: operands.h.
#pragma once

#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "messages.h"

namespace sfrik {

// A series sum_k coeffs[k] * P_k(q; t) with its recurrence constants precomputed in double.
// Layout of `packed()`: [coeff_0 .. coeff_L, alpha_1 .. alpha_{L-1}, beta_1 .. beta_{L-1}],
// so kernels read one flat table (CPU: host memory, CUDA: shared memory).
struct SeriesTables {
  int64_t degree = 0;         // L = number of coefficients - 1
  std::vector<double> coeff;  // L + 1 entries
  std::vector<double> alpha;  // alpha_l for l = 1 .. L-1 (index l - 1)
  std::vector<double> beta;   // beta_l  for l = 1 .. L-1 (index l - 1)

  std::vector<double> packed() const {
    std::vector<double> out(coeff);
    out.insert(out.end(), alpha.begin(), alpha.end());
    out.insert(out.end(), beta.begin(), beta.end());
    return out;
  }
};

inline void check_q(int64_t q) {
  SFRIK_CHECK_VALUE(q >= 2, "sfrik: q must be an integer >= 2 (the sphere S^{q-1}), got ", q);
}

inline void check_coeffs(c10::ArrayRef<double> coeffs) {
  SFRIK_CHECK_VALUE(!coeffs.empty(), "sfrik: coeffs must be a non-empty list of floats");
  for (size_t k = 0; k < coeffs.size(); ++k) {
    SFRIK_CHECK_VALUE(std::isfinite(coeffs[k]), "sfrik: coeffs must be finite, got coeffs[", k, "] = ", coeffs[k]);
  }
}

// Coefficients of d/dt sum_k c_k P_k(q; t) as a series in dimension q + 2.
inline std::vector<double> derivative_coeffs(const std::vector<double>& c, double q) {
  if (c.size() <= 1) return {0.0};  // derivative of a constant
  std::vector<double> d(c.size() - 1);
  for (size_t j = 0; j + 1 < c.size(); ++j) {
    const double l = static_cast<double>(j + 1);
    d[j] = c[j + 1] * l * (l + q - 2.0) / (q - 1.0);
  }
  return d;
}

// Tables for grad * d^order/dt^order sum_k coeffs[k] P_k(q; t).
inline SeriesTables make_tables(c10::ArrayRef<double> coeffs, int64_t q_in, int64_t order) {
  check_q(q_in);
  check_coeffs(coeffs);
  SFRIK_CHECK_VALUE(order >= 0, "sfrik: order must be >= 0, got ", order);
  std::vector<double> c(coeffs.begin(), coeffs.end());
  // The dimension grows by 2 per derivative, in double: q + 2 * order can leave int64's range.
  double q = static_cast<double>(q_in);
  for (int64_t k = 0; k < order; ++k) {
    if (c.size() <= 1) {  // a constant: this and every further derivative is 0 (order may be huge)
      c = {0.0};
      break;
    }
    c = derivative_coeffs(c, q);
    q += 2.0;
  }
  for (size_t k = 0; k < c.size(); ++k) {
    SFRIK_CHECK_VALUE(std::isfinite(c[k]), "sfrik: derivative of order ", order, " overflows: its coefficient ", k,
                      " is not finite");
  }
  SeriesTables tab;
  tab.degree = static_cast<int64_t>(c.size()) - 1;
  tab.coeff = std::move(c);
  for (int64_t l = 1; l < tab.degree; ++l) {
    const double ld = static_cast<double>(l);
    tab.alpha.push_back((2.0 * ld + q - 2.0) / (ld + q - 2.0));
    tab.beta.push_back(ld / (ld + q - 2.0));
  }
  return tab;
}

}  // namespace sfrik
