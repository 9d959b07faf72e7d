// sfrik::gram_series_sum: a Legendre series summed over the Gram matrix x y^T in tiles, with its
// gradient, without the n x n matrix (flash-attention's idea applied to an MMD). Written once for
// every device: each tile is a GEMM (at::mm: MKL/OpenBLAS on CPU, cuBLAS on CUDA) followed by the
// per-device series kernels of this library (sfrik::legendre_series_reduce for the value alone,
// sfrik::legendre_series_value_and_grad for the value and psi' from one read of the tile), called
// through the dispatcher. Memory: two
// tile x tile matrices plus the gradients (n x q).
//
// Why the gradient comes out of the forward pass: the caller (sfrik_plugin/tiled.py) needs it
// whenever it needs the value with autograd, and computing it while the Gram tile is at hand
// saves recomputing every tile GEMM in the backward (1.5 GEMM-equivalents per pass instead of 2
// with symmetry, instead of 2.5 with recomputation).
//
// The tile GEMMs run in full float32 whatever the process-wide matmul precision says
// (torch.backends.cuda.matmul.allow_tf32, torch.set_float32_matmul_precision("high"/"medium"),
// torch.backends.mkldnn.matmul.fp32_precision): a training script that enables TF32 (or oneDNN's
// bf16 on a CPU) for its network must not silently lower the Gram's precision. See
// FullPrecisionMatmul.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "legendre_recurrence.h"
#include "operands.h"

namespace sfrik {
namespace {

// Full float32 GEMMs for its lifetime, the settings restored after (also on an exception).
// cuBLAS honours the thread-local at::NoTF32Guard, but cuBLASLt and oneDNN read only the global
// settings, so those are set to "highest" (the legacy value and the CUDA and oneDNN matmul
// precisions together, which keeps them consistent) and put back: while the op runs, another
// thread's float32 GEMMs also run in full precision (never in less than they asked for).
class FullPrecisionMatmul {
 public:
  FullPrecisionMatmul() {
    auto& ctx = at::globalContext();
    cuda_ = ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL);
    mkldnn_ = ctx.float32Precision(at::Float32Backend::MKLDNN, at::Float32Op::MATMUL);
    try {
      legacy_ = ctx.float32MatmulPrecision();
    } catch (const c10::Error&) {  // legacy and new settings mixed by the caller: follow the CUDA one
      legacy_ =
          cuda_ == at::Float32Precision::TF32 ? at::Float32MatmulPrecision::HIGH : at::Float32MatmulPrecision::HIGHEST;
    }
    changed_ = legacy_ != at::Float32MatmulPrecision::HIGHEST || cuda_ == at::Float32Precision::TF32 ||
               mkldnn_ == at::Float32Precision::TF32 || mkldnn_ == at::Float32Precision::BF16;
    if (changed_) ctx.setFloat32MatmulPrecision("highest");
  }
  ~FullPrecisionMatmul() {
    if (!changed_) return;
    auto& ctx = at::globalContext();
    ctx.setFloat32MatmulPrecision(legacy_ == at::Float32MatmulPrecision::HIGHEST ? "highest"
                                  : legacy_ == at::Float32MatmulPrecision::HIGH  ? "high"
                                                                                 : "medium");
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, cuda_);
    ctx.setFloat32Precision(at::Float32Backend::MKLDNN, at::Float32Op::MATMUL, mkldnn_);
  }
  FullPrecisionMatmul(const FullPrecisionMatmul&) = delete;
  FullPrecisionMatmul& operator=(const FullPrecisionMatmul&) = delete;

 private:
  at::NoTF32Guard no_tf32_;  // cuBLAS, this thread
  at::Float32Precision cuda_ = at::Float32Precision::NONE, mkldnn_ = at::Float32Precision::NONE;
  at::Float32MatmulPrecision legacy_ = at::Float32MatmulPrecision::HIGHEST;
  bool changed_ = false;
};

void check_rows(const at::Tensor& x, const char* name) {
  const at::ScalarType s = x.scalar_type();
  SFRIK_CHECK_TYPE(s == at::kFloat || s == at::kDouble, "sfrik: ", name,
                   " must be a float32 or float64 tensor (cast float16/bfloat16 to float32 first: the Gram "
                   "entries need float32's digits), got ",
                   s);
  SFRIK_CHECK_VALUE(x.dim() == 2, "sfrik: ", name, " must be 2-D (rows, features), got shape ", x.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gram_series_sum(const at::Tensor& x,
                                                               const std::optional<at::Tensor>& y_opt,
                                                               at::ArrayRef<double> coeffs, int64_t q, int64_t tile,
                                                               bool grad_x, bool grad_y) {
  check_rows(x, "x");
  const bool symmetric = !y_opt.has_value();
  const at::Tensor& y = symmetric ? x : *y_opt;
  if (!symmetric) {
    check_rows(y, "y");
    check_dtype_and_device(y, "y", x, "x");
    SFRIK_CHECK_VALUE(y.size(1) == x.size(1), "sfrik: y must have as many features as x (", x.size(1), "), got shape ",
                      y.sizes());
  }
  SFRIK_CHECK_VALUE(!(symmetric && grad_y),
                    "sfrik: y is None (y = x), so grad_y must be false: grad_x is the "
                    "whole gradient");
  SFRIK_CHECK_VALUE(tile >= 1, "sfrik: tile must be an integer >= 1, got ", tile);
  make_tables(coeffs, q, 1);  // checks coeffs and q, and that psi' is finite, before any work

  static auto reduce_op = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("sfrik::legendre_series_reduce", "")
                              .typed<at::Tensor(const at::Tensor&, at::ArrayRef<double>, int64_t, bool)>();
  static auto value_and_grad_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("sfrik::legendre_series_value_and_grad", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, at::ArrayRef<double>, int64_t, bool)>();

  const int64_t m = x.size(0), n = y.size(0);
  at::Tensor total = at::zeros({}, x.options().dtype(at::kDouble));
  at::Tensor gx = grad_x ? at::zeros(x.sizes(), x.options()) : at::empty({0}, x.options());
  at::Tensor gy = grad_y ? at::zeros(y.sizes(), y.options()) : at::empty({0}, y.options());
  const int64_t buffer_rows = std::min(tile, m), buffer_cols = std::min(tile, n);
  at::Tensor buffer = at::empty({buffer_rows * buffer_cols}, x.options());
  const FullPrecisionMatmul full_precision;

  for (int64_t i0 = 0; i0 < m; i0 += tile) {
    const int64_t rows = std::min(tile, m - i0);
    const at::Tensor xi = x.narrow(0, i0, rows);
    for (int64_t j0 = symmetric ? i0 : 0; j0 < n; j0 += tile) {
      const int64_t cols = std::min(tile, n - j0);
      const at::Tensor yj = y.narrow(0, j0, cols);
      // The tile of x y^T, written into one reused buffer (contiguous for partial tiles too).
      at::Tensor gram = buffer.narrow(0, 0, rows * cols).view({rows, cols});
      at::mm_out(gram, xi, yj.t());
      // Off-diagonal tiles of a symmetric sum stand for themselves and their transposes.
      const bool mirrored = symmetric && j0 != i0;
      if (!grad_x && !grad_y) {
        total.add_(reduce_op.call(gram, coeffs, q, false), mirrored ? 2.0 : 1.0);
        continue;
      }
      // The tile's sum and psi'(tile) from one read of the tile.
      const auto [tile_sum, slope] = value_and_grad_op.call(gram, coeffs, q, false);
      total.add_(tile_sum, mirrored ? 2.0 : 1.0);
      if (grad_x) gx.narrow(0, i0, rows).addmm_(slope, yj);
      if (grad_x && mirrored) gx.narrow(0, j0, cols).addmm_(slope.t(), xi);
      if (grad_y) gy.narrow(0, j0, cols).addmm_(slope.t(), xi);
    }
  }
  // sum_{i,j} psi(x_i . x_j) has x_k in both factors: d/dx_k = 2 sum_j psi'(x_k . x_j) x_j.
  if (symmetric && grad_x) gx.mul_(2.0);
  return {total.to(x.scalar_type()), gx, gy};
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CompositeExplicitAutograd, m) { m.impl("gram_series_sum", &gram_series_sum); }

}  // namespace sfrik
