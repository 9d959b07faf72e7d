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
// the tests compare both with scipy.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace sfrik {

// A series sum_k coeffs[k] * P_k(dim; t) with its recurrence constants precomputed in double.
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

inline void check_dim(int64_t dim) {
  TORCH_CHECK_VALUE(dim >= 2, "sfrik: dim must be an integer >= 2 (the sphere S^{dim-1}), got ", dim);
}

inline void check_coeffs(c10::ArrayRef<double> coeffs) {
  TORCH_CHECK_VALUE(!coeffs.empty(), "sfrik: coeffs must be a non-empty list of floats");
  for (size_t k = 0; k < coeffs.size(); ++k) {
    TORCH_CHECK_VALUE(std::isfinite(coeffs[k]), "sfrik: coeffs must be finite, got coeffs[", k, "] = ", coeffs[k]);
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

// Tables for grad * d^order/dt^order sum_k coeffs[k] P_k(dim; t).
inline SeriesTables make_tables(c10::ArrayRef<double> coeffs, int64_t dim, int64_t order) {
  check_dim(dim);
  check_coeffs(coeffs);
  TORCH_CHECK_VALUE(order >= 0, "sfrik: order must be >= 0, got ", order);
  std::vector<double> c(coeffs.begin(), coeffs.end());
  // The dimension grows by 2 per derivative, in double: dim + 2 * order can leave int64's range.
  double q = static_cast<double>(dim);
  for (int64_t k = 0; k < order; ++k) {
    if (c.size() <= 1) {  // a constant: this and every further derivative is 0 (order may be huge)
      c = {0.0};
      break;
    }
    c = derivative_coeffs(c, q);
    q += 2.0;
  }
  for (size_t k = 0; k < c.size(); ++k) {
    TORCH_CHECK_VALUE(std::isfinite(c[k]), "sfrik: derivative of order ", order, " overflows: its coefficient ", k,
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

// How a kernel reads grad: absent (plain series), one value broadcast to every element,
// or one value per element laid out like t.
enum class GradMode : int { kNone = 0, kScalar = 1, kElementwise = 2 };

// Input checks common to every op and device.
inline void check_input(const at::Tensor& t, const char* name) {
  // Not at::isFloatingType: it also admits the float8 types, which the kernels do not dispatch.
  const at::ScalarType s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat || s == at::kDouble, "sfrik: ", name,
                   " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ", t.scalar_type());
}

// The layout the kernels walk: every op reads t linearly in memory order. A dense tensor
// (contiguous, transposed, permuted) is walked as is; anything else (gaps, overlaps) is first
// copied into the layout at::empty_like(t) chooses, so results are laid out exactly as
// torch.empty_like(t) (what the fake kernels promise torch.compile).
inline at::Tensor dense_view(const at::Tensor& t) {
  if (t.is_non_overlapping_and_dense()) return t;
  at::Tensor dense = at::empty_like(t);
  dense.copy_(t);
  return dense;
}

// A grad of numel 1 with every stride 0 (expand of a scalar, as autograd gives for
// out.mean()) or of dim 0 is read as one value instead of being materialised.
inline bool is_broadcast_scalar(const at::Tensor& g) {
  if (g.dim() == 0) return true;
  if (g.numel() == 0) return false;
  for (auto s : g.strides()) {
    if (s != 0) return false;
  }
  return true;
}

// grad laid out exactly like `dense_t` (same strides), so both are walked in the same order.
inline at::Tensor align_like(const at::Tensor& grad, const at::Tensor& dense_t) {
  if (grad.strides() == dense_t.strides() && grad.is_non_overlapping_and_dense()) return grad;
  at::Tensor out = at::empty_like(dense_t);
  out.copy_(grad);
  return out;
}

inline GradMode check_grad(const at::Tensor& grad, const at::Tensor& t) {
  check_input(grad, "grad");
  TORCH_CHECK_VALUE(grad.scalar_type() == t.scalar_type(), "sfrik: grad must have the dtype of t (", t.scalar_type(),
                    "), got ", grad.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == t.device(), "sfrik: grad must be on the device of t (", t.device(), "), got ",
                    grad.device());
  if (is_broadcast_scalar(grad)) return GradMode::kScalar;
  TORCH_CHECK_VALUE(grad.sizes() == t.sizes(), "sfrik: grad must have the shape of t ", t.sizes(),
                    " or be a single value, got shape ", grad.sizes());
  return GradMode::kElementwise;
}

}  // namespace sfrik

namespace sfrik {

// The operands of an elementwise op, laid out for a linear walk in memory order.
struct ElementwiseOperands {
  at::Tensor t;     // dense (see dense_view)
  at::Tensor grad;  // undefined (kNone), 0-dim (kScalar) or laid out like t (kElementwise)
  GradMode mode = GradMode::kNone;
  at::Tensor out;  // same dtype, shape and strides as t
};

inline ElementwiseOperands prepare_elementwise(const at::Tensor& t, const at::Tensor* grad) {
  check_input(t, "t");
  ElementwiseOperands ops;
  ops.t = dense_view(t);
  if (grad != nullptr) {
    ops.mode = check_grad(*grad, t);
    ops.grad = ops.mode == GradMode::kScalar ? grad->as_strided({}, {}) : align_like(*grad, ops.t);
  }
  ops.out = at::empty_like(ops.t);
  return ops;
}

}  // namespace sfrik
