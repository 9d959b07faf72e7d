// CPU kernels of the sfrik:: operators. One pass over t: values are loaded in blocks of
// kBlock, the recurrence runs degree by degree over the block (an inner loop over elements
// that the compiler vectorises), and the block is then scaled by grad, stored or summed.
// The hot function is compiled twice (x86-64-v3, i.e. AVX2+FMA, and the baseline) and the
// loader picks the clone the processor supports, so one binary runs everywhere.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>

#include "../legendre_recurrence.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SFRIK_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SFRIK_CPU_CLONES
#endif

namespace sfrik {
namespace {

constexpr int64_t kBlock = 256;
constexpr int64_t kGrain = 16 * kBlock;  // elements per parallel task at least
constexpr int kLanes = 8;                // partial sums kept apart so the sum vectorises

template <typename opmath_t>
struct CpuTables {
  const opmath_t* coeff;  // degree + 1
  const opmath_t* alpha;  // degree - 1
  const opmath_t* beta;   // degree - 1
  int64_t degree;
};

// acc[i] = sum_k coeff[k] P_k(x[i]) for i < m.
template <typename opmath_t>
C10_ALWAYS_INLINE void series_block(const opmath_t* __restrict__ x, opmath_t* __restrict__ acc,
                                    int64_t m, const CpuTables<opmath_t>& tab) {
  const opmath_t c0 = tab.coeff[0];
  if (tab.degree == 0) {
    for (int64_t i = 0; i < m; ++i) acc[i] = c0;
    return;
  }
  alignas(64) opmath_t buf_a[kBlock];
  alignas(64) opmath_t buf_b[kBlock];
  const opmath_t c1 = tab.coeff[1];
  for (int64_t i = 0; i < m; ++i) {
    buf_a[i] = opmath_t(1);
    buf_b[i] = x[i];
    acc[i] = c0 + c1 * x[i];
  }
  opmath_t* prev = buf_a;  // P_{l-1}
  opmath_t* cur = buf_b;   // P_l
  for (int64_t l = 1; l < tab.degree; ++l) {
    const opmath_t a = tab.alpha[l - 1];
    const opmath_t b = tab.beta[l - 1];
    const opmath_t c = tab.coeff[l + 1];
    opmath_t* __restrict__ p_prev = prev;
    const opmath_t* __restrict__ p_cur = cur;
    for (int64_t i = 0; i < m; ++i) {
      const opmath_t next = a * x[i] * p_cur[i] - b * p_prev[i];
      p_prev[i] = next;  // P_{l-1} is not needed any more: it becomes P_{l+1}
      acc[i] += c * next;
    }
    std::swap(prev, cur);
  }
}

// Processes t[0..n): out[i] = g_i * psi(t[i]) when out is given, else returns sum_i g_i psi(t[i]).
template <typename scalar_t, typename opmath_t>
C10_ALWAYS_INLINE double series_chunk(const scalar_t* __restrict__ t, const scalar_t* __restrict__ grad,
                                      GradMode mode, opmath_t grad_scalar, scalar_t* __restrict__ out,
                                      int64_t n, const CpuTables<opmath_t>& tab) {
  alignas(64) opmath_t x[kBlock];
  alignas(64) opmath_t acc[kBlock];
  double total = 0.0;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t m = std::min(kBlock, n - start);
    for (int64_t i = 0; i < m; ++i) x[i] = static_cast<opmath_t>(t[start + i]);
    series_block(x, acc, m, tab);
    if (mode == GradMode::kScalar) {
      for (int64_t i = 0; i < m; ++i) acc[i] *= grad_scalar;
    } else if (mode == GradMode::kElementwise) {
      for (int64_t i = 0; i < m; ++i) acc[i] *= static_cast<opmath_t>(grad[start + i]);
    }
    if (out != nullptr) {
      for (int64_t i = 0; i < m; ++i) out[start + i] = static_cast<scalar_t>(acc[i]);
    } else {
      opmath_t lanes[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= m; i += kLanes) {
        for (int j = 0; j < kLanes; ++j) lanes[j] += acc[i + j];
      }
      double block_sum = 0.0;
      for (; i < m; ++i) block_sum += acc[i];
      for (int j = 0; j < kLanes; ++j) block_sum += lanes[j];
      total += block_sum;
    }
  }
  return total;
}

// The multiversioned entry points, one per dtype (target_clones needs plain functions).
#define SFRIK_DEFINE_CHUNK(scalar_t)                                                               \
  SFRIK_CPU_CLONES double run_chunk(const scalar_t* t, const scalar_t* grad, GradMode mode,         \
                                    at::opmath_type<scalar_t> grad_scalar, scalar_t* out, int64_t n, \
                                    const CpuTables<at::opmath_type<scalar_t>>& tab) {              \
    return series_chunk<scalar_t, at::opmath_type<scalar_t>>(t, grad, mode, grad_scalar, out, n, tab); \
  }
SFRIK_DEFINE_CHUNK(float)
SFRIK_DEFINE_CHUNK(double)
SFRIK_DEFINE_CHUNK(c10::Half)
SFRIK_DEFINE_CHUNK(c10::BFloat16)
#undef SFRIK_DEFINE_CHUNK

// Runs the series over the n elements at t (memory order), in parallel. Writes out when
// out is given and returns 0; otherwise returns the sum.
template <typename scalar_t>
double run_series(const scalar_t* t, const scalar_t* grad, GradMode mode, scalar_t* out, int64_t n,
                  const SeriesTables& tables) {
  using opmath_t = at::opmath_type<scalar_t>;
  const std::vector<double> packed = tables.packed();
  const std::vector<opmath_t> table(packed.begin(), packed.end());
  const int64_t degree = tables.degree;
  const CpuTables<opmath_t> tab{table.data(), table.data() + degree + 1,
                                table.data() + degree + 1 + std::max<int64_t>(degree - 1, 0), degree};
  const opmath_t grad_scalar = mode == GradMode::kScalar ? static_cast<opmath_t>(*grad) : opmath_t(1);
  auto chunk = [&](int64_t begin, int64_t end) {
    const scalar_t* g = mode == GradMode::kElementwise ? grad + begin : nullptr;
    return run_chunk(t + begin, g, mode, grad_scalar, out != nullptr ? out + begin : nullptr,
                     end - begin, tab);
  };
  if (out != nullptr) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { chunk(begin, end); });
    return 0.0;
  }
  return at::parallel_reduce(
      0, n, kGrain, 0.0, [&](int64_t begin, int64_t end, double ident) { return ident + chunk(begin, end); },
      std::plus<double>());
}

void check_cpu(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), "sfrik: CPU kernel called with a tensor on ", t.device());
}

at::Tensor run_elementwise(const at::Tensor& t, const at::Tensor* grad, const SeriesTables& tables) {
  check_cpu(t);
  ElementwiseOperands ops = prepare_elementwise(t, grad);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ops.t.scalar_type(), "sfrik_legendre_series_cpu", [&] {
    const scalar_t* g = ops.mode == GradMode::kNone ? nullptr : ops.grad.const_data_ptr<scalar_t>();
    run_series<scalar_t>(ops.t.const_data_ptr<scalar_t>(), g, ops.mode, ops.out.mutable_data_ptr<scalar_t>(),
                         ops.t.numel(), tables);
  });
  return ops.out;
}

at::Tensor legendre_series_cpu(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t dim) {
  return run_elementwise(t, nullptr, make_tables(coeffs, dim, 0));
}

at::Tensor legendre_series_backward_cpu(const at::Tensor& grad, const at::Tensor& t, at::ArrayRef<double> coeffs,
                                        int64_t dim, int64_t order) {
  return run_elementwise(t, &grad, make_tables(coeffs, dim, order));
}

at::Tensor legendre_series_reduce_cpu(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t dim, bool mean) {
  check_input(t, "t");
  check_cpu(t);
  const SeriesTables tables = make_tables(coeffs, dim, 0);
  const at::Tensor dense = dense_view(t);
  const int64_t n = dense.numel();
  double total = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dense.scalar_type(), "sfrik_legendre_series_reduce_cpu", [&] {
    total = run_series<scalar_t>(dense.const_data_ptr<scalar_t>(), nullptr, GradMode::kNone, nullptr, n, tables);
  });
  // The mean of no element is NaN, as torch.mean gives.
  const double value = mean ? total / static_cast<double>(n) : total;
  return at::scalar_tensor(value, t.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CPU, m) {
  m.impl("legendre_series", &legendre_series_cpu);
  m.impl("legendre_series_reduce", &legendre_series_reduce_cpu);
  m.impl("legendre_series_backward", &legendre_series_backward_cpu);
}

}  // namespace sfrik
