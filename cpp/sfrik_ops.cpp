// The one schema file: the sfrik:: operators, and the pybind11 module sfrik_plugin._C whose
// import loads every registration of this library (schemas here, kernels per device in
// cpu/ and cuda/) and exposes the facts of the build.
#include <torch/extension.h>
#include <torch/library.h>

#ifdef SFRIK_WITH_CUDA
#include <cuda.h>
#endif

#ifndef SFRIK_TORCH_VERSION
#error "setup.py defines SFRIK_TORCH_VERSION (the torch version the extension is built against)"
#endif

TORCH_LIBRARY(sfrik, m) {
  // out = sum_k coeffs[k] * P_k(q; t), elementwise; coeffs[0] is degree 0 (numpy's legval order).
  m.def("legendre_series(Tensor t, float[] coeffs, int q) -> Tensor");
  // The same series summed (mean=False) or averaged (mean=True) over all elements of t,
  // without writing the elementwise result: a 0-dim tensor of t's dtype.
  m.def("legendre_series_reduce(Tensor t, float[] coeffs, int q, bool mean) -> Tensor");
  // grad * d^order/dt^order of the series, in one pass over t. grad has t's shape or is a
  // single value (0-dim, or expanded with all strides 0) that is broadcast.
  m.def(
      "legendre_series_backward(Tensor grad, Tensor t, float[] coeffs, int q, int order=1) "
      "-> Tensor");
  // The reduction and its gradient from one read of t: (sum or mean of the series, a 0-dim tensor of
  // t's dtype; its derivative with respect to t, laid out like t: psi'(t), divided by numel(t) for
  // the mean). One pass on CUDA (the fast path), two on the CPU.
  m.def("legendre_series_value_and_grad(Tensor t, float[] coeffs, int q, bool mean) -> (Tensor, Tensor)");
  // Tiled sum over the Gram matrix x y^T of a series, never holding more than two tile x tile
  // matrices: (S, grad_x, grad_y) with S = sum_{i,j} psi(x_i . y_j) (0-dim, x's dtype; each tile's
  // sum comes back rounded to x's dtype, the sum across tiles is accumulated in double) and, when
  // asked, dS/dx = psi'(x y^T) y and dS/dy = psi'(x y^T)^T x (else empty tensors of shape [0]). y = None means y = x:
  // only tiles i <= j are computed (symmetry) and grad_x is the whole gradient 2 psi'(x x^T) x; grad_y must then be
  // false.
  m.def(
      "gram_series_sum(Tensor x, Tensor? y, float[] coeffs, int q, int tile, bool grad_x, bool grad_y) "
      "-> (Tensor, Tensor, Tensor)");
  // Row sums of products of 2-D x (n, q) and y (same shape), accumulated in double from the exact
  // products, in one pass: (n, 1) float64 [x_i . x_i] when y is None, else (n, 3) float64
  // [x_i . x_i, y_i . y_i, x_i . y_i]. Squared norms that a float32 sum of squares would overflow
  // (entries past ~1.8e19) or flush (entries below ~1e-19), and the distance between two rows
  // normalised without the cancellation of 1 - cos (sfrik_plugin/sphere_autograd.py).
  m.def("row_stats(Tensor x, Tensor? y) -> Tensor");
  // A square matrix g made exactly symmetric: from its upper triangle, diagonal included, mirrored
  // (add = false; the strict lower triangle of g is not read), or g + g^T (add = true). A new
  // contiguous matrix. CPU only (sfrik_plugin/gram.py uses torch ops on other devices).
  m.def("symmetrize(Tensor g, bool add) -> Tensor");
}

namespace {

// The instruction set of the Legendre kernels' version that runs here (cpu/legendre_series_cpu.cpp).
const char* cpu_kernel_isa() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512 (x86-64-v4)";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2+fma";
#endif
  return "baseline";
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "sfrik_plugin._C: Legendre-series operators (registered as torch.ops.sfrik.*)";
#ifdef SFRIK_WITH_CUDA
  m.attr("with_cuda") = true;
  m.attr("cuda_version") = std::to_string(CUDA_VERSION / 1000) + "." + std::to_string(CUDA_VERSION % 1000 / 10);
#else
  m.attr("with_cuda") = false;
  m.attr("cuda_version") = py::none();
#endif
  m.attr("torch_version") = SFRIK_TORCH_VERSION;
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  m.def("cpu_kernel_isa", &cpu_kernel_isa, "Instruction set the CPU kernels dispatch to on this processor");
}
