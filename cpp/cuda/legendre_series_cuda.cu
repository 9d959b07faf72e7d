// CUDA kernels of the sfrik:: operators. One thread per element (grid-stride loop) runs the
// recurrence in registers. The recurrence table goes in as a kernel argument (a fixed-size struct
// passed by value, read through the constant cache) for degrees up to kArgDegree, so a call does
// no host-to-device copy and no host synchronisation, and can be captured in a CUDA graph; larger
// tables are copied to the device once per distinct table and cached (staged in shared memory).
// The reduction accumulates in double, as the CPU kernel does, over a grid whose size depends on
// n only (never on the GPU's SM count), writes one partial sum per block and adds the partials in
// a second single-block kernel in a fixed order: no atomics, the same bits on every GPU.
// Launched on the current stream of t's device.
//
// The fast path (FastKernel below) covers what training runs: float32, bfloat16 and float16, a
// degree known at compile time (1-3: SFRIK's kernel, its derivative and the double backward's),
// operands aligned to 16 bytes. It is templated on the degree and on what it computes (series,
// sum, times a broadcast grad, times an elementwise grad, sum and derivative at once) so that the
// recurrence unrolls with its constants in registers and no per-element branch is left, and each
// thread moves 16 bytes per load (4 float32 or 8 half values). Everything else takes the generic
// kernel (runtime degree, any alignment, double). Both accumulate sums in double, per element.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
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

// sum_k coeff[k] P_k(x) by the recurrence, for a table with a runtime degree (PointerSeries) or
// one known at compile time (RegisterSeries below: the loop unrolls, the constants stay in registers).
template <typename opmath_t, typename Tables>
__device__ __forceinline__ opmath_t eval_series(opmath_t x, const Tables& tab) {
  opmath_t acc = tab.coeff[0];
  if (tab.degree == 0) return acc;
  opmath_t prev = opmath_t(1);  // P_{l-1}
  opmath_t cur = x;             // P_l
  acc += tab.coeff[1] * x;
#pragma unroll
  for (int64_t l = 1; l < tab.degree; ++l) {
    const opmath_t next = tab.alpha[l - 1] * x * cur - tab.beta[l - 1] * prev;
    prev = cur;
    cur = next;
    acc += tab.coeff[l + 1] * next;
  }
  return acc;
}

// A table in memory (kernel argument, shared or global), layout of SeriesTables::packed.
template <typename opmath_t>
struct PointerSeries {
  const opmath_t* __restrict__ coeff;
  const opmath_t* __restrict__ alpha;
  const opmath_t* __restrict__ beta;
  int64_t degree;
};

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
  const opmath_t* alpha = tab + degree + 1;
  const PointerSeries<opmath_t> series{tab, alpha, alpha + (degree > 0 ? degree - 1 : 0), degree};
  const opmath_t g_scalar =
      grad_mode == static_cast<int>(GradMode::kScalar) ? static_cast<opmath_t>(grad[0]) : opmath_t(1);

  double local = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    opmath_t v = eval_series<opmath_t>(static_cast<opmath_t>(t[i]), series);
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

// ---------------------------------------------------------------------------------------------
// The fast path.

enum class FastMode : int { kSeries = 0, kSum = 1, kScalarGrad = 2, kElementwiseGrad = 3, kValueAndGrad = 4 };
constexpr int kMaxFastDegree = 3;

// A series of degree kDegree with its constants in registers (the table layout of
// SeriesTables::packed); evaluated by eval_series like a PointerSeries. The arrays have room for
// the entries eval_series names in its branches that a small degree never takes.
template <typename opmath_t, int kDegree>
struct RegisterSeries {
  static constexpr int64_t degree = kDegree;
  opmath_t coeff[kDegree + 2];
  opmath_t alpha[kDegree > 1 ? kDegree - 1 : 1];
  opmath_t beta[kDegree > 1 ? kDegree - 1 : 1];

  __device__ __forceinline__ explicit RegisterSeries(const opmath_t* tab) {
#pragma unroll
    for (int k = 0; k <= kDegree; ++k) coeff[k] = tab[k];
    coeff[kDegree + 1] = opmath_t(0);
#pragma unroll
    for (int k = 0; k + 1 < kDegree; ++k) {
      alpha[k] = tab[kDegree + 1 + k];
      beta[k] = tab[kDegree + 1 + (kDegree - 1) + k];
    }
  }

  __device__ __forceinline__ opmath_t operator()(opmath_t x) const { return eval_series<opmath_t>(x, *this); }
};

template <typename scalar_t>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(scalar_t);
  scalar_t value[kSize];
};

// Both tables of a fast launch: the series' (psi, or its derivative for the grad modes) and, for
// kValueAndGrad, the derivative's (degree kDegree - 1) after it.
template <typename opmath_t>
struct FastTables {
  opmath_t value[6 * kMaxFastDegree];
};

// One thread per 16-byte pack (grid-stride), the < kSize trailing elements by the first threads.
// out: the elementwise result (series, grad modes) or the derivative (kValueAndGrad); partials: one
// double sum per block (kSum, kValueAndGrad).
template <typename scalar_t, int kDegree, FastMode kMode>
__global__ void __launch_bounds__(kThreads)
    fast_series_kernel(const scalar_t* __restrict__ t, const scalar_t* __restrict__ grad, scalar_t* __restrict__ out,
                       double* __restrict__ partials, int64_t n, at::opmath_type<scalar_t> grad_scale,
                       const __grid_constant__ FastTables<at::opmath_type<scalar_t>> tables) {
  using opmath_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t>;
  constexpr int kDerivative = kMode == FastMode::kValueAndGrad ? (kDegree > 0 ? kDegree - 1 : 0) : 0;
  const RegisterSeries<opmath_t, kDegree> psi(tables.value);
  const RegisterSeries<opmath_t, kDerivative> dpsi(tables.value + 3 * kDegree);
  opmath_t g_scalar = grad_scale;
  if constexpr (kMode == FastMode::kScalarGrad) g_scalar = static_cast<opmath_t>(grad[0]);

  // The value of one element; for kValueAndGrad, its derivative goes to *slope.
  auto one = [&](opmath_t x, opmath_t g, opmath_t* slope) -> opmath_t {
    if constexpr (kMode == FastMode::kValueAndGrad) *slope = dpsi(x) * g_scalar;
    opmath_t v = psi(x);
    if constexpr (kMode == FastMode::kScalarGrad) v *= g_scalar;
    if constexpr (kMode == FastMode::kElementwiseGrad) v *= g;
    return v;
  };

  double local = 0.0;
  const int64_t packs = n / P::kSize;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = first; p < packs; p += stride) {
    const P tp = reinterpret_cast<const P*>(t)[p];
    P gp;
    if constexpr (kMode == FastMode::kElementwiseGrad) gp = reinterpret_cast<const P*>(grad)[p];
    P op;
#pragma unroll
    for (int k = 0; k < P::kSize; ++k) {
      opmath_t g = opmath_t(1);
      if constexpr (kMode == FastMode::kElementwiseGrad) g = static_cast<opmath_t>(gp.value[k]);
      opmath_t slope = opmath_t(0);
      const opmath_t v = one(static_cast<opmath_t>(tp.value[k]), g, &slope);
      if constexpr (kMode == FastMode::kSum || kMode == FastMode::kValueAndGrad) local += static_cast<double>(v);
      if constexpr (kMode == FastMode::kValueAndGrad) {
        op.value[k] = static_cast<scalar_t>(slope);
      } else if constexpr (kMode != FastMode::kSum) {
        op.value[k] = static_cast<scalar_t>(v);
      }
    }
    if constexpr (kMode != FastMode::kSum) reinterpret_cast<P*>(out)[p] = op;
  }
  const int64_t i = packs * P::kSize + first;  // the trailing elements
  if (i < n) {
    opmath_t g = opmath_t(1);
    if constexpr (kMode == FastMode::kElementwiseGrad) g = static_cast<opmath_t>(grad[i]);
    opmath_t slope = opmath_t(0);
    const opmath_t v = one(static_cast<opmath_t>(t[i]), g, &slope);
    if constexpr (kMode == FastMode::kSum || kMode == FastMode::kValueAndGrad) local += static_cast<double>(v);
    if constexpr (kMode == FastMode::kValueAndGrad) {
      out[i] = static_cast<scalar_t>(slope);
    } else if constexpr (kMode != FastMode::kSum) {
      out[i] = static_cast<scalar_t>(v);
    }
  }
  if constexpr (kMode == FastMode::kSum || kMode == FastMode::kValueAndGrad) {
    local = block_sum(local);
    if (threadIdx.x == 0) partials[blockIdx.x] = local;
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether a launch can take the fast path: a fast dtype, degrees (of psi and, for kValueAndGrad,
// of its derivative table) within kMaxFastDegree, 16-byte aligned operands.
bool fast_path(at::ScalarType dtype, int64_t degree, std::initializer_list<const void*> pointers) {
  if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf) return false;
  if (degree < 1 || degree > kMaxFastDegree) return false;
  for (const void* p : pointers) {
    if (!aligned16(p)) return false;
  }
  return true;
}

// Packs of n elements of scalar_t, and the blocks of a fast launch: a function of n and the dtype
// alone (never of the GPU), so that a reduction's partial sums are the same on every GPU.
template <typename scalar_t>
int64_t fast_blocks(int64_t n, int64_t max_blocks) {
  const int64_t packs = std::max<int64_t>(n / Pack<scalar_t>::kSize, 1);
  return std::max<int64_t>(1, std::min<int64_t>((packs + kThreads - 1) / kThreads, max_blocks));
}

template <typename opmath_t>
FastTables<opmath_t> fast_tables(const SeriesTables& first, const SeriesTables* second) {
  FastTables<opmath_t> tab{};
  const std::vector<double> a = first.packed();
  for (size_t k = 0; k < a.size(); ++k) tab.value[k] = static_cast<opmath_t>(a[k]);
  if (second != nullptr) {
    const std::vector<double> b = second->packed();
    // the derivative's table starts after 3 * degree entries (room for degree + 1 + 2 (degree - 1))
    for (size_t k = 0; k < b.size(); ++k) tab.value[3 * first.degree + k] = static_cast<opmath_t>(b[k]);
  }
  return tab;
}

template <typename scalar_t, FastMode kMode>
void launch_fast(const scalar_t* t, const scalar_t* grad, scalar_t* out, double* partials, int64_t n, int64_t blocks,
                 const SeriesTables& tables, const SeriesTables* derivative, double grad_scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const FastTables<opmath_t> tab = fast_tables<opmath_t>(tables, derivative);
  const auto stream = at::cuda::getCurrentCUDAStream();
  const auto scale = static_cast<opmath_t>(grad_scale);
  switch (tables.degree) {
#define SFRIK_FAST_DEGREE(D)                                                                             \
  case D:                                                                                                \
    fast_series_kernel<scalar_t, D, kMode>                                                               \
        <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(t, grad, out, partials, n, scale, tab); \
    break;
    SFRIK_FAST_DEGREE(1)
    SFRIK_FAST_DEGREE(2)
    SFRIK_FAST_DEGREE(3)
#undef SFRIK_FAST_DEGREE
    default:
      SFRIK_CHECK(false, "sfrik: internal error: no fast kernel for degree ", tables.degree);
  }
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
    const scalar_t* t_ptr = ops.t.const_data_ptr<scalar_t>();
    const scalar_t* g = ops.mode == GradMode::kNone ? nullptr : ops.grad.const_data_ptr<scalar_t>();
    scalar_t* out = ops.out.mutable_data_ptr<scalar_t>();
    const bool elementwise_grad = ops.mode == GradMode::kElementwise;
    if (fast_path(ops.t.scalar_type(), tables.degree, {t_ptr, out, elementwise_grad ? g : nullptr})) {
      const int64_t blocks = fast_blocks<scalar_t>(n, kElementwiseBlocks);
      if (ops.mode == GradMode::kNone) {
        launch_fast<scalar_t, FastMode::kSeries>(t_ptr, g, out, nullptr, n, blocks, tables, nullptr, 1.0);
      } else if (ops.mode == GradMode::kScalar) {
        launch_fast<scalar_t, FastMode::kScalarGrad>(t_ptr, g, out, nullptr, n, blocks, tables, nullptr, 1.0);
      } else {
        launch_fast<scalar_t, FastMode::kElementwiseGrad>(t_ptr, g, out, nullptr, n, blocks, tables, nullptr, 1.0);
      }
      return;
    }
    launch<scalar_t>(t_ptr, g, ops.mode, out, nullptr, n, blocks_for(n, kElementwiseBlocks), tables, ops.t);
  });
  return ops.out;
}

// The sum (mean: divided by n) of the series over t, and with derivative given, the derivative
// times derivative_scale written to slope: one pass over t (the fast path) or two (generic).
void reduce_into(const at::Tensor& dense, const SeriesTables& tables, const SeriesTables* derivative,
                 double derivative_scale, bool mean, const at::Tensor& total, const at::Tensor& slope) {
  const int64_t n = dense.numel();
  // The mean of no element is NaN (0 / 0), as torch.mean gives.
  const double divisor = mean ? static_cast<double>(n) : 1.0;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dense.scalar_type(), "sfrik_legendre_series_reduce_cuda", [&] {
        const scalar_t* t_ptr = dense.const_data_ptr<scalar_t>();
        scalar_t* slope_ptr = derivative != nullptr ? slope.mutable_data_ptr<scalar_t>() : nullptr;
        const bool fast = fast_path(dense.scalar_type(), tables.degree, {t_ptr, slope_ptr});
        const int64_t blocks = fast ? fast_blocks<scalar_t>(n, kReduceBlocks) : blocks_for(n, kReduceBlocks);
        at::Tensor partials = at::empty({blocks}, dense.options().dtype(at::kDouble));
        double* partial_ptr = partials.mutable_data_ptr<double>();
        if (fast && derivative != nullptr) {
          launch_fast<scalar_t, FastMode::kValueAndGrad>(t_ptr, nullptr, slope_ptr, partial_ptr, n, blocks, tables,
                                                         derivative, derivative_scale);
        } else if (fast) {
          launch_fast<scalar_t, FastMode::kSum>(t_ptr, nullptr, nullptr, partial_ptr, n, blocks, tables, nullptr, 1.0);
        } else {
          launch<scalar_t>(t_ptr, nullptr, GradMode::kNone, nullptr, partial_ptr, n, blocks, tables, dense);
          if (derivative != nullptr) {
            // psi'(t), then the scale in double (a 16-bit grad would round 1/n before it is applied)
            launch<scalar_t>(t_ptr, nullptr, GradMode::kNone, slope_ptr, nullptr, n, blocks_for(n, kElementwiseBlocks),
                             *derivative, dense);
            if (derivative_scale != 1.0) slope.mul_(derivative_scale);
          }
        }
        finish_sum_kernel<scalar_t>
            <<<1, kThreads, 0, stream>>>(partial_ptr, blocks, divisor, total.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

at::Tensor legendre_series_reduce_cuda(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t q, bool mean) {
  check_input(t, "t");
  check_cuda(t);
  const c10::cuda::CUDAGuard guard(t.device());
  const SeriesTables tables = make_tables(coeffs, q, 0);
  const at::Tensor dense = dense_view(t);
  at::Tensor total = at::empty({}, t.options());
  reduce_into(dense, tables, nullptr, 1.0, mean, total, at::Tensor());
  return total;
}

std::tuple<at::Tensor, at::Tensor> legendre_series_value_and_grad_cuda(const at::Tensor& t, at::ArrayRef<double> coeffs,
                                                                       int64_t q, bool mean) {
  check_input(t, "t");
  check_cuda(t);
  const c10::cuda::CUDAGuard guard(t.device());
  const SeriesTables tables = make_tables(coeffs, q, 0);
  const SeriesTables derivative = make_tables(coeffs, q, 1);
  const at::Tensor dense = dense_view(t);
  at::Tensor total = at::empty({}, t.options());
  at::Tensor slope = at::empty_like(dense);
  // d/dt of the mean is psi' / n; the degree-0 series has a zero derivative of degree 0.
  const double scale = mean ? 1.0 / static_cast<double>(dense.numel()) : 1.0;
  reduce_into(dense, tables, &derivative, scale, mean, total, slope);
  return {total, slope};
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CUDA, m) {
  m.impl("legendre_series", &legendre_series_op<run_elementwise>);
  m.impl("legendre_series_reduce", &legendre_series_reduce_cuda);
  m.impl("legendre_series_backward", &legendre_series_backward_op<run_elementwise>);
  m.impl("legendre_series_value_and_grad", &legendre_series_value_and_grad_cuda);
}

}  // namespace sfrik
