// How the CPU and CUDA kernels receive their tensors: the dtype and grad checks common to every
// op and device, and the layouts the kernels walk (dense views, grads aligned with t, a grad that
// is one broadcast value read as such). The maths is in legendre_recurrence.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include "messages.h"

namespace sfrik {

// How a kernel reads grad: absent (plain series), one value broadcast to every element,
// or one value per element laid out like t.
enum class GradMode : int { kNone = 0, kScalar = 1, kElementwise = 2 };

// Input checks common to every op and device.
inline void check_input(const at::Tensor& t, const char* name) {
  // Not at::isFloatingType: it also admits the float8 types, which the kernels do not dispatch.
  const at::ScalarType s = t.scalar_type();
  SFRIK_CHECK_TYPE(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat || s == at::kDouble, "sfrik: ", name,
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

// `other` (named other_name) must have the dtype and device of `ref` (named ref_name): the pairing
// check of every op that takes two tensors.
inline void check_dtype_and_device(const at::Tensor& other, const char* other_name, const at::Tensor& ref,
                                   const char* ref_name) {
  SFRIK_CHECK_VALUE(other.scalar_type() == ref.scalar_type(), "sfrik: ", other_name, " must have the dtype of ",
                    ref_name, " (", ref.scalar_type(), "), got ", other.scalar_type());
  SFRIK_CHECK_VALUE(other.device() == ref.device(), "sfrik: ", other_name, " must be on the device of ", ref_name, " (",
                    ref.device(), "), got ", other.device());
}

inline GradMode check_grad(const at::Tensor& grad, const at::Tensor& t) {
  check_input(grad, "grad");
  check_dtype_and_device(grad, "grad", t, "t");
  if (is_broadcast_scalar(grad)) return GradMode::kScalar;
  SFRIK_CHECK_VALUE(grad.sizes() == t.sizes(), "sfrik: grad must have the shape of t ", t.sizes(),
                    " or be a single value, got shape ", grad.sizes());
  return GradMode::kElementwise;
}

// x (n, q) and, when given, y of x's shape, dtype and device: the rows of row_stats.
inline void check_row_operands(const at::Tensor& x, const at::Tensor* y) {
  check_input(x, "x");
  SFRIK_CHECK_VALUE(x.dim() == 2, "sfrik: x must be 2-D (rows, features), got shape ", x.sizes());
  if (y == nullptr) return;
  check_input(*y, "y");
  check_dtype_and_device(*y, "y", x, "x");
  SFRIK_CHECK_VALUE(y->sizes() == x.sizes(), "sfrik: y must have the shape of x ", x.sizes(), ", got ", y->sizes());
}

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
