// CUDA kernels of the sfrik:: operators. One thread per element (grid-stride loop) runs the
// recurrence in registers. The recurrence table goes in as a kernel argument (a fixed-size struct
// passed by value, read through the constant cache) for degrees up to kArgDegree, so a call does
// no host-to-device copy and no host synchronisation, and can be captured in a CUDA graph; larger
// tables are copied to the device once per distinct table and cached (staged in shared memory).
// The reduction accumulates in double, as the CPU kernel does, over a grid whose size depends on
// n only (never on the GPU's SM count), writes one partial sum per block and adds the partials in
// a second single-block kernel in a fixed order: no atomics, the same bits on every GPU.
// Launched on the current stream of t's device.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "../elementwise_ops.h"
#include "../legendre_recurrence.h"
#include "../operands.h"

namespace sfrik {
namespace {

constexpr int kThreads = 256;
// Blocks of a reduction at most; the grid is min(ceil(n / kThreads), kReduceBlocks): a function of
// n alone, so the partial sums, and the order they are added in, are the same on every GPU.
constexpr int64_t kReduceBlocks = 1024;
// Blocks of an elementwise launch at most (grid-stride beyond); the results do not depend on it.
constexpr int64_t kElementwiseBlocks = 16384;
constexpr int64_t kMaxSharedTableBytes = 32 * 1024;
// Series of degree <= kArgDegree carry their table (3 L - 1 entries) in the kernel's arguments:
// 1.5 KB in double, within the 4 KB every architecture accepts.
constexpr int64_t kArgDegree = 64;
constexpr int64_t kArgTableEntries = 3 * kArgDegree;
// Distinct large tables kept on the device (each a few KB); beyond, a call copies its table
// synchronously (degrees > kArgDegree only).
constexpr size_t kMaxCachedTables = 256;

template <typename opmath_t>
struct ArgTable {
  opmath_t value[kArgTableEntries];
};

template <typename opmath_t>
__device__ __forceinline__ opmath_t eval_series(opmath_t x, const opmath_t* __restrict__ coeff,
                                                const opmath_t* __restrict__ alpha, const opmath_t* __restrict__ beta,
                                                int64_t degree) {
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

// The sum of v over the block, in thread 0 (a fixed tree: deterministic).
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// out[i] = g_i * psi(t[i]) when out != nullptr; otherwise partials[block] = sum of g_i * psi(t[i]),
// accumulated in double. The table is arg_table unless global_table is given (large degrees).
template <typename scalar_t, typename opmath_t>
__global__ void __launch_bounds__(kThreads)
    series_kernel(const scalar_t* __restrict__ t, const scalar_t* __restrict__ grad, int grad_mode,
                  scalar_t* __restrict__ out, double* __restrict__ partials, int64_t n,
                  const __grid_constant__ ArgTable<opmath_t> arg_table, const opmath_t* __restrict__ global_table,
                  int64_t table_size, bool table_in_shared, int64_t degree) {
  extern __shared__ unsigned char shared_raw[];
  const opmath_t* tab = arg_table.value;
  if (global_table != nullptr) {
    tab = global_table;
    if (table_in_shared) {
      opmath_t* shared_tab = reinterpret_cast<opmath_t*>(shared_raw);
      for (int64_t i = threadIdx.x; i < table_size; i += blockDim.x) shared_tab[i] = global_table[i];
      __syncthreads();
      tab = shared_tab;
    }
  }
  const opmath_t* coeff = tab;
  const opmath_t* alpha = tab + degree + 1;
  const opmath_t* beta = alpha + (degree > 0 ? degree - 1 : 0);
  const opmath_t g_scalar =
      grad_mode == static_cast<int>(GradMode::kScalar) ? static_cast<opmath_t>(grad[0]) : opmath_t(1);

  double local = 0.0;
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
      local += static_cast<double>(v);
    }
  }
  if (partials != nullptr) {
    local = block_sum(local);
    if (threadIdx.x == 0) partials[blockIdx.x] = local;
  }
}

// *out = (sum of the count partials) / divisor, in double, then rounded once to the output type
// (divisor 1: the sum; n: the mean, NaN for n = 0 as torch.mean gives). One block, fixed order.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    finish_sum_kernel(const double* __restrict__ partials, int64_t count, double divisor, scalar_t* __restrict__ out) {
  double v = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) v += partials[i];
  v = block_sum(v);
  if (threadIdx.x == 0) *out = static_cast<scalar_t>(v / divisor);
}

// Large tables (degree > kArgDegree) on the device: one copy per (table, dtype, device), made on
// first use (a synchronous copy, refused under CUDA graph capture with a message saying how to
// warm it up) and kept for the life of the process. Never freed: the map lives on the heap, so no
// tensor is released after the CUDA runtime has shut down at exit.
using TableKey = std::tuple<std::vector<double>, int, c10::DeviceIndex>;

template <typename opmath_t>
at::Tensor large_device_table(const std::vector<double>& packed, const at::Tensor& like) {
  static std::mutex mutex;
  static auto* cache = new std::map<TableKey, at::Tensor>();
  const auto opmath_dtype = c10::CppTypeToScalarType<opmath_t>::value;
  TableKey key{packed, static_cast<int>(opmath_dtype), like.device().index()};
  {
    const std::lock_guard<std::mutex> lock(mutex);
    auto found = cache->find(key);
    if (found != cache->end()) return found->second;
  }
  SFRIK_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None,
              "sfrik: a Legendre series of degree > ", kArgDegree, " (here ", packed.size(),
              " table entries) copies its recurrence table to the GPU on its first call, which CUDA graph "
              "capture forbids: call the operator once with the same coefficients, q and derivative order "
              "before capturing");
  at::Tensor host = at::from_blob(const_cast<double*>(packed.data()), {static_cast<int64_t>(packed.size())},
                                  at::TensorOptions().dtype(at::kDouble))
                        .to(opmath_dtype);
  at::Tensor table = host.to(like.device());
  const std::lock_guard<std::mutex> lock(mutex);
  if (cache->size() < kMaxCachedTables) cache->emplace(std::move(key), table);
  return table;
}

int64_t blocks_for(int64_t n, int64_t max_blocks) {
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks));
}

template <typename scalar_t>
void launch(const scalar_t* t, const scalar_t* grad, GradMode mode, scalar_t* out, double* partials, int64_t n,
            int64_t blocks, const SeriesTables& tables, const at::Tensor& like) {
  using opmath_t = at::opmath_type<scalar_t>;
  const std::vector<double> packed = tables.packed();
  const int64_t table_size = static_cast<int64_t>(packed.size());
  ArgTable<opmath_t> arg_table{};
  at::Tensor global;  // keeps a large table alive until the launch is queued
  const opmath_t* global_ptr = nullptr;
  bool in_shared = false;
  if (tables.degree <= kArgDegree) {
    for (int64_t k = 0; k < table_size; ++k) arg_table.value[k] = static_cast<opmath_t>(packed[k]);
  } else {
    global = large_device_table<opmath_t>(packed, like);
    global_ptr = global.const_data_ptr<opmath_t>();
    in_shared = table_size * static_cast<int64_t>(sizeof(opmath_t)) <= kMaxSharedTableBytes;
  }
  const size_t shared_bytes = in_shared ? static_cast<size_t>(table_size) * sizeof(opmath_t) : 0;
  series_kernel<scalar_t, opmath_t>
      <<<static_cast<unsigned>(blocks), kThreads, shared_bytes, at::cuda::getCurrentCUDAStream()>>>(
          t, grad, static_cast<int>(mode), out, partials, n, arg_table, global_ptr, table_size, in_shared,
          tables.degree);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void check_cuda(const at::Tensor& t) {
  SFRIK_CHECK(t.is_cuda(), "sfrik: CUDA kernel called with a tensor on ", t.device());
}

at::Tensor run_elementwise(const at::Tensor& t, const at::Tensor* grad, const SeriesTables& tables) {
  check_cuda(t);
  const c10::cuda::CUDAGuard guard(t.device());
  ElementwiseOperands ops = prepare_elementwise(t, grad);
  const int64_t n = ops.t.numel();
  if (n == 0) return ops.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ops.t.scalar_type(), "sfrik_legendre_series_cuda", [&] {
    const scalar_t* g = ops.mode == GradMode::kNone ? nullptr : ops.grad.const_data_ptr<scalar_t>();
    launch<scalar_t>(ops.t.const_data_ptr<scalar_t>(), g, ops.mode, ops.out.mutable_data_ptr<scalar_t>(), nullptr, n,
                     blocks_for(n, kElementwiseBlocks), tables, ops.t);
  });
  return ops.out;
}

at::Tensor legendre_series_reduce_cuda(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t q, bool mean) {
  check_input(t, "t");
  check_cuda(t);
  const c10::cuda::CUDAGuard guard(t.device());
  const SeriesTables tables = make_tables(coeffs, q, 0);
  const at::Tensor dense = dense_view(t);
  const int64_t n = dense.numel();
  const int64_t blocks = blocks_for(n, kReduceBlocks);
  at::Tensor partials = at::empty({blocks}, dense.options().dtype(at::kDouble));
  at::Tensor total = at::empty({}, t.options());
  // The mean of no element is NaN (0 / 0), as torch.mean gives.
  const double divisor = mean ? static_cast<double>(n) : 1.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dense.scalar_type(), "sfrik_legendre_series_reduce_cuda",
                                  [&] {
                                    double* partial_ptr = partials.mutable_data_ptr<double>();
                                    launch<scalar_t>(dense.const_data_ptr<scalar_t>(), nullptr, GradMode::kNone,
                                                     nullptr, partial_ptr, n, blocks, tables, dense);
                                    finish_sum_kernel<scalar_t><<<1, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
                                        partial_ptr, blocks, divisor, total.mutable_data_ptr<scalar_t>());
                                    C10_CUDA_KERNEL_LAUNCH_CHECK();
                                  });
  return total;
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CUDA, m) {
  m.impl("legendre_series", &legendre_series_op<run_elementwise>);
  m.impl("legendre_series_reduce", &legendre_series_reduce_cuda);
  m.impl("legendre_series_backward", &legendre_series_backward_op<run_elementwise>);
}

}  // namespace sfrik
