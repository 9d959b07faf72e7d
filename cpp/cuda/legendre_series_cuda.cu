// CUDA kernels of the sfrik:: operators. One thread per element (grid-stride loop) runs the
// recurrence in registers; the recurrence table sits in shared memory. The reduction writes one
// partial sum per block (deterministic: no atomics) and sums the partials with at::sum.
// Launched on the current stream of t's device.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "../legendre_recurrence.h"

namespace sfrik {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxSharedTableBytes = 32 * 1024;

template <typename opmath_t>
__device__ __forceinline__ opmath_t eval_series(opmath_t x, const opmath_t* __restrict__ coeff,
                                                const opmath_t* __restrict__ alpha,
                                                const opmath_t* __restrict__ beta, int64_t degree) {
  opmath_t acc = coeff[0];
  if (degree == 0) return acc;
  opmath_t prev = opmath_t(1);  // P_{l-1}
  opmath_t cur = x;             // P_l
  acc += coeff[1] * x;
  for (int64_t l = 1; l < degree; ++l) {
    const opmath_t next = alpha[l - 1] * x * cur - beta[l - 1] * prev;
    prev = cur;
    cur = next;
    acc += coeff[l + 1] * next;
  }
  return acc;
}

template <typename opmath_t>
__device__ __forceinline__ opmath_t block_sum(opmath_t v) {
  __shared__ opmath_t warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : opmath_t(0);
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// out[i] = g_i * psi(t[i]) when out != nullptr; otherwise partials[block] = sum of g_i * psi(t[i]).
template <typename scalar_t, typename opmath_t>
__global__ void __launch_bounds__(kThreads)
series_kernel(const scalar_t* __restrict__ t, const scalar_t* __restrict__ grad, int grad_mode,
              scalar_t* __restrict__ out, opmath_t* __restrict__ partials, int64_t n,
              const opmath_t* __restrict__ table, int64_t table_size, bool table_in_shared,
              int64_t degree) {
  extern __shared__ unsigned char shared_raw[];
  const opmath_t* tab = table;
  if (table_in_shared) {
    opmath_t* shared_tab = reinterpret_cast<opmath_t*>(shared_raw);
    for (int64_t i = threadIdx.x; i < table_size; i += blockDim.x) shared_tab[i] = table[i];
    __syncthreads();
    tab = shared_tab;
  }
  const opmath_t* coeff = tab;
  const opmath_t* alpha = tab + degree + 1;
  const opmath_t* beta = alpha + (degree > 0 ? degree - 1 : 0);
  const opmath_t g_scalar =
      grad_mode == static_cast<int>(GradMode::kScalar) ? static_cast<opmath_t>(grad[0]) : opmath_t(1);

  opmath_t local = opmath_t(0);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    opmath_t v = eval_series<opmath_t>(static_cast<opmath_t>(t[i]), coeff, alpha, beta, degree);
    if (grad_mode == static_cast<int>(GradMode::kScalar)) {
      v *= g_scalar;
    } else if (grad_mode == static_cast<int>(GradMode::kElementwise)) {
      v *= static_cast<opmath_t>(grad[i]);
    }
    if (out != nullptr) {
      out[i] = static_cast<scalar_t>(v);
    } else {
      local += v;
    }
  }
  if (partials != nullptr) {
    local = block_sum(local);
    if (threadIdx.x == 0) partials[blockIdx.x] = local;
  }
}

// The recurrence table on t's device, in the compute type.
template <typename opmath_t>
at::Tensor device_table(const SeriesTables& tables, const at::Tensor& t) {
  std::vector<double> packed = tables.packed();
  const auto opmath_dtype = c10::CppTypeToScalarType<opmath_t>::value;
  at::Tensor host = at::from_blob(packed.data(), {static_cast<int64_t>(packed.size())},
                                  at::TensorOptions().dtype(at::kDouble))
                        .to(opmath_dtype);
  return host.to(t.device());
}

int grid_size(int64_t n, int64_t blocks_per_sm) {
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, sms * blocks_per_sm)));
}

template <typename scalar_t>
void launch(const scalar_t* t, const scalar_t* grad, GradMode mode, scalar_t* out, at::Tensor* partials,
            int64_t n, int blocks, const SeriesTables& tables, const at::Tensor& like) {
  using opmath_t = at::opmath_type<scalar_t>;
  const at::Tensor table = device_table<opmath_t>(tables, like);
  const int64_t table_bytes = table.numel() * static_cast<int64_t>(sizeof(opmath_t));
  const bool in_shared = table_bytes <= kMaxSharedTableBytes;
  opmath_t* partial_ptr = partials != nullptr ? partials->mutable_data_ptr<opmath_t>() : nullptr;
  series_kernel<scalar_t, opmath_t>
      <<<blocks, kThreads, in_shared ? table_bytes : 0, at::cuda::getCurrentCUDAStream()>>>(
          t, grad, static_cast<int>(mode), out, partial_ptr, n, table.const_data_ptr<opmath_t>(), table.numel(),
          in_shared, tables.degree);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void check_cuda(const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), "sfrik: CUDA kernel called with a tensor on ", t.device());
}

at::Tensor run_elementwise(const at::Tensor& t, const at::Tensor* grad, const SeriesTables& tables) {
  check_cuda(t);
  const c10::cuda::CUDAGuard guard(t.device());
  ElementwiseOperands ops = prepare_elementwise(t, grad);
  const int64_t n = ops.t.numel();
  if (n == 0) return ops.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ops.t.scalar_type(), "sfrik_legendre_series_cuda", [&] {
    const scalar_t* g = ops.mode == GradMode::kNone ? nullptr : ops.grad.const_data_ptr<scalar_t>();
    launch<scalar_t>(ops.t.const_data_ptr<scalar_t>(), g, ops.mode, ops.out.mutable_data_ptr<scalar_t>(), nullptr,
                     n, grid_size(n, 32), tables, ops.t);
  });
  return ops.out;
}

at::Tensor legendre_series_cuda(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t dim) {
  return run_elementwise(t, nullptr, make_tables(coeffs, dim, 0));
}

at::Tensor legendre_series_backward_cuda(const at::Tensor& grad, const at::Tensor& t, at::ArrayRef<double> coeffs,
                                         int64_t dim, int64_t order) {
  return run_elementwise(t, &grad, make_tables(coeffs, dim, order));
}

at::Tensor legendre_series_reduce_cuda(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t dim, bool mean) {
  check_input(t, "t");
  check_cuda(t);
  const c10::cuda::CUDAGuard guard(t.device());
  const SeriesTables tables = make_tables(coeffs, dim, 0);
  const at::Tensor dense = dense_view(t);
  const int64_t n = dense.numel();
  at::Tensor total;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dense.scalar_type(), "sfrik_legendre_series_reduce_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const int blocks = grid_size(n, 4);
    at::Tensor partials =
        at::empty({blocks}, dense.options().dtype(c10::CppTypeToScalarType<opmath_t>::value));
    if (n == 0) {
      partials.zero_();
    } else {
      launch<scalar_t>(dense.const_data_ptr<scalar_t>(), nullptr, GradMode::kNone, nullptr, &partials, n, blocks,
                       tables, dense);
    }
    total = partials.sum();
  });
  // The mean of no element is NaN, as torch.mean gives.
  if (mean) total = total.div(static_cast<double>(n));
  return total.to(t.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CUDA, m) {
  m.impl("legendre_series", &legendre_series_cuda);
  m.impl("legendre_series_reduce", &legendre_series_reduce_cuda);
  m.impl("legendre_series_backward", &legendre_series_backward_cuda);
}

}  // namespace sfrik
