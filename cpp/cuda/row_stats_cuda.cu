// CUDA kernel of sfrik::row_stats: one block per row; each thread accumulates its strided share of
// the row's products in double (four independent loads in flight), then the block adds the
// threads' sums in a fixed tree (warp shuffles, then one warp): no atomics, the same bits on every
// GPU and run. Launched on the current stream of x's device; no host synchronisation.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <type_traits>

#include "../operands.h"

namespace sfrik {
namespace {

constexpr int kRowThreads = 256;
constexpr int kRowUnroll = 4;

// The sums of v[0..width) over the block, in thread 0 (fixed order: deterministic).
template <int kWidth>
__device__ __forceinline__ void block_sums(double (&v)[kWidth]) {
  __shared__ double warp_sums[kWidth][kRowThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < kWidth; ++j) {
    for (int offset = 16; offset > 0; offset >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], offset);
    if (lane == 0) warp_sums[j][warp] = v[j];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int j = 0; j < kWidth; ++j) {
      v[j] = lane < kRowThreads / 32 ? warp_sums[j][lane] : 0.0;
      for (int offset = 16; offset > 0; offset >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], offset);
    }
  }
}

// One entry in double: exact for every input type (half types widen through float).
template <typename scalar_t>
__device__ __forceinline__ double widen(scalar_t v) {
  if constexpr (std::is_same<scalar_t, double>::value) {
    return v;
  } else {
    return static_cast<double>(static_cast<float>(v));
  }
}

template <typename scalar_t, int kWidth>
__global__ void __launch_bounds__(kRowThreads)
    row_stats_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, int64_t q,
                     double* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const scalar_t* xr = x + row * q;
  const scalar_t* yr = kWidth == 3 ? y + row * q : nullptr;
  double sums[kWidth];
#pragma unroll
  for (int j = 0; j < kWidth; ++j) sums[j] = 0.0;
  constexpr int64_t step = static_cast<int64_t>(kRowThreads) * kRowUnroll;
  int64_t k = threadIdx.x;
  for (; k + (kRowUnroll - 1) * kRowThreads < q; k += step) {
    double a[kRowUnroll], b[kRowUnroll];
#pragma unroll
    for (int u = 0; u < kRowUnroll; ++u) {
      a[u] = widen(xr[k + u * kRowThreads]);
      if constexpr (kWidth == 3) b[u] = widen(yr[k + u * kRowThreads]);
    }
#pragma unroll
    for (int u = 0; u < kRowUnroll; ++u) {
      sums[0] += a[u] * a[u];
      if constexpr (kWidth == 3) {
        sums[1] += b[u] * b[u];
        sums[2] += a[u] * b[u];
      }
    }
  }
  for (; k < q; k += kRowThreads) {
    const double a = widen(xr[k]);
    sums[0] += a * a;
    if constexpr (kWidth == 3) {
      const double b = widen(yr[k]);
      sums[1] += b * b;
      sums[2] += a * b;
    }
  }
  block_sums<kWidth>(sums);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int j = 0; j < kWidth; ++j) out[row * kWidth + j] = sums[j];
  }
}

at::Tensor row_stats_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& y_in) {
  const at::Tensor* y_ptr = y_in.has_value() ? &*y_in : nullptr;
  check_row_operands(x_in, y_ptr);
  SFRIK_CHECK(x_in.is_cuda(), "sfrik: CUDA kernel called with a tensor on ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor y = y_ptr != nullptr ? y_ptr->contiguous() : at::Tensor();
  const int64_t n = x.size(0), q = x.size(1), width = y_ptr != nullptr ? 3 : 1;
  at::Tensor out = at::empty({n, width}, x.options().dtype(at::kDouble));
  if (n == 0) return out;
  SFRIK_CHECK_VALUE(n <= 2147483647, "sfrik: x must have at most 2^31 - 1 rows on CUDA, got ", n);
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sfrik_row_stats_cuda", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    double* op = out.mutable_data_ptr<double>();
    if (y.defined()) {
      row_stats_kernel<scalar_t, 3>
          <<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(xp, y.const_data_ptr<scalar_t>(), q, op);
    } else {
      row_stats_kernel<scalar_t, 1><<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(xp, nullptr, q, op);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CUDA, m) { m.impl("row_stats", &row_stats_cuda); }

}  // namespace sfrik
