// CPU kernels of the sfrik:: operators. One pass over t, register-blocked: each group of
// kUnroll SIMD vectors runs the whole recurrence in registers (no intermediate arrays), is
// scaled by grad, then stored or added to vector partial sums that are flushed into a double
// every kFlushGroups groups (float partial sums over millions of elements would lose digits).
// SIMD through GCC/Clang vector extensions, so the hot function is compiled three times: for
// x86-64-v4 (AVX-512) with 64-byte vectors, for x86-64-v3 (AVX2+FMA) and the baseline with 32-byte
// ones, and the first call picks the one the processor supports: one binary runs everywhere. Why
// AVX-512 too: on a Xeon whose L3 holds the whole matrix, the elementwise backward (read t and
// grad, write the result) is bound by the core's loads and stores, not by DRAM, and 64-byte
// vectors halve them (torch.compile's code for the same recurrence uses them).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <type_traits>

#include "../elementwise_ops.h"
#include "../legendre_recurrence.h"
#include "../operands.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SFRIK_CPU_LEVELS 1
#else
#define SFRIK_CPU_LEVELS 0
#endif

namespace sfrik {
namespace {

constexpr int64_t kChunk = 32768;  // elements per parallel task (~30-100 us of work)
constexpr int kUnroll = 4;         // independent vectors in flight (hides FMA latency)
constexpr int kFlushGroups = 64;   // groups summed in the compute type before a flush to double

// kBytes-byte vectors of the compute type: 64 (AVX-512 registers) in the x86-64-v4 version, 32 (AVX2
// registers, or pairs of SSE registers in the baseline) in the others.
template <typename opmath_t, int kBytes>
struct Simd {
  typedef opmath_t type __attribute__((vector_size(kBytes)));
};

template <typename opmath_t>
struct CpuTables {
  const opmath_t* coeff;  // degree + 1
  const opmath_t* alpha;  // degree - 1
  const opmath_t* beta;   // degree - 1
  int64_t degree;
};

// A copy of the table for a degree known at compile time: the recurrence unrolls and its
// constants stay in registers for the whole chunk (the small degrees SFRIK uses, L = 2..4).
template <typename opmath_t, int kDegree>
struct FixedTables {
  static constexpr int64_t degree = kDegree;
  opmath_t coeff[kDegree + 1];
  opmath_t alpha[kDegree > 1 ? kDegree - 1 : 1];
  opmath_t beta[kDegree > 1 ? kDegree - 1 : 1];
  explicit FixedTables(const CpuTables<opmath_t>& tab) {
    for (int k = 0; k <= kDegree; ++k) coeff[k] = tab.coeff[k];
    for (int k = 0; k + 1 < kDegree; ++k) {
      alpha[k] = tab.alpha[k];
      beta[k] = tab.beta[k];
    }
  }
};

template <typename scalar_t, typename opmath_t, typename V>
C10_ALWAYS_INLINE V load(const scalar_t* p) {
  V v;
  if constexpr (std::is_same<scalar_t, opmath_t>::value) {
    std::memcpy(&v, p, sizeof(V));
  } else {  // float16 / bfloat16: widen lane by lane
    constexpr int lanes = sizeof(V) / sizeof(opmath_t);
    for (int i = 0; i < lanes; ++i) v[i] = static_cast<opmath_t>(p[i]);
  }
  return v;
}

template <typename scalar_t, typename opmath_t, typename V>
C10_ALWAYS_INLINE void store(scalar_t* p, V v) {
  if constexpr (std::is_same<scalar_t, opmath_t>::value) {
    std::memcpy(p, &v, sizeof(V));
  } else {
    constexpr int lanes = sizeof(V) / sizeof(opmath_t);
    for (int i = 0; i < lanes; ++i) p[i] = static_cast<scalar_t>(v[i]);
  }
}

// sum_k coeff[k] P_k(x) for one value or one vector (the same code for both).
template <typename T, typename Tables>
C10_ALWAYS_INLINE T eval_series(T x, const Tables& tab) {
  using opmath_t = typename std::remove_cv<typename std::remove_reference<decltype(tab.coeff[0])>::type>::type;
  T acc = T{} + tab.coeff[0];  // (T{} + s broadcasts s to every lane of a vector)
  if (tab.degree == 0) return acc;
  T prev = T{} + opmath_t(1);  // P_{l-1}
  T cur = x;                   // P_l
  acc += tab.coeff[1] * x;
  for (int64_t l = 1; l < tab.degree; ++l) {
    const T next = tab.alpha[l - 1] * x * cur - tab.beta[l - 1] * prev;
    prev = cur;
    cur = next;
    acc += tab.coeff[l + 1] * next;
  }
  return acc;
}

// Processes t[0..n): out[i] = g_i * psi(t[i]) when out is given, else returns sum_i g_i psi(t[i]).
template <int kBytes, typename scalar_t, typename opmath_t, typename Tables>
C10_ALWAYS_INLINE double series_chunk(const scalar_t* __restrict__ t, const scalar_t* __restrict__ grad, GradMode mode,
                                      opmath_t grad_scalar, scalar_t* __restrict__ out, int64_t n, const Tables& tab) {
  using V = typename Simd<opmath_t, kBytes>::type;
  constexpr int64_t lanes = sizeof(V) / sizeof(opmath_t);
  constexpr int64_t group = lanes * kUnroll;
  double total = 0.0;
  V partial[kUnroll] = {};
  int64_t i = 0;
  for (int64_t since_flush = 0; i + group <= n; i += group) {
    V acc[kUnroll];
    for (int u = 0; u < kUnroll; ++u) acc[u] = eval_series<V>(load<scalar_t, opmath_t, V>(t + i + u * lanes), tab);
    if (mode == GradMode::kScalar) {
      for (int u = 0; u < kUnroll; ++u) acc[u] *= grad_scalar;
    } else if (mode == GradMode::kElementwise) {
      for (int u = 0; u < kUnroll; ++u) acc[u] *= load<scalar_t, opmath_t, V>(grad + i + u * lanes);
    }
    if (out != nullptr) {
      for (int u = 0; u < kUnroll; ++u) store<scalar_t, opmath_t, V>(out + i + u * lanes, acc[u]);
    } else {
      for (int u = 0; u < kUnroll; ++u) partial[u] += acc[u];
      if (++since_flush == kFlushGroups) {
        for (int u = 0; u < kUnroll; ++u) {
          for (int k = 0; k < lanes; ++k) total += partial[u][k];
          partial[u] = V{};
        }
        since_flush = 0;
      }
    }
  }
  for (int u = 0; u < kUnroll; ++u) {
    for (int k = 0; k < lanes; ++k) total += partial[u][k];
  }
  for (; i < n; ++i) {  // the tail, one value at a time
    opmath_t v = eval_series<opmath_t>(static_cast<opmath_t>(t[i]), tab);
    if (mode == GradMode::kScalar) {
      v *= grad_scalar;
    } else if (mode == GradMode::kElementwise) {
      v *= static_cast<opmath_t>(grad[i]);
    }
    if (out != nullptr) {
      out[i] = static_cast<scalar_t>(v);
    } else {
      total += v;
    }
  }
  return total;
}

// Dispatches a chunk to the kernel specialised for its degree (FixedTables for 0..4).
template <int kBytes, typename scalar_t, typename opmath_t = at::opmath_type<scalar_t>>
C10_ALWAYS_INLINE double series_chunk_any_degree(const scalar_t* t, const scalar_t* grad, GradMode mode,
                                                 opmath_t grad_scalar, scalar_t* out, int64_t n,
                                                 const CpuTables<opmath_t>& tab) {
  switch (tab.degree) {
#define SFRIK_FIXED_DEGREE(D) \
  case D:                     \
    return series_chunk<kBytes>(t, grad, mode, grad_scalar, out, n, FixedTables<opmath_t, D>(tab));
    SFRIK_FIXED_DEGREE(0)
    SFRIK_FIXED_DEGREE(1)
    SFRIK_FIXED_DEGREE(2)
    SFRIK_FIXED_DEGREE(3)
    SFRIK_FIXED_DEGREE(4)
#undef SFRIK_FIXED_DEGREE
    default:
      return series_chunk<kBytes>(t, grad, mode, grad_scalar, out, n, tab);
  }
}

// The versions of the hot function, one per dtype and instruction set level, and the one the
// processor supports (chosen once: __builtin_cpu_supports reads what the loader detected).
enum class CpuLevel : int { kBaseline = 0, kV3 = 1, kV4 = 2 };

CpuLevel cpu_level() {
#if SFRIK_CPU_LEVELS
  static const CpuLevel level = __builtin_cpu_supports("x86-64-v4")   ? CpuLevel::kV4
                                : __builtin_cpu_supports("x86-64-v3") ? CpuLevel::kV3
                                                                      : CpuLevel::kBaseline;
  return level;
#else
  return CpuLevel::kBaseline;
#endif
}

#if SFRIK_CPU_LEVELS
#define SFRIK_LEVEL_VERSION(name, isa, bytes, scalar_t)                                                     \
  __attribute__((target(isa))) double name(const scalar_t* t, const scalar_t* grad, GradMode mode,          \
                                           at::opmath_type<scalar_t> grad_scalar, scalar_t* out, int64_t n, \
                                           const CpuTables<at::opmath_type<scalar_t>>& tab) {               \
    return series_chunk_any_degree<bytes, scalar_t>(t, grad, mode, grad_scalar, out, n, tab);               \
  }
#define SFRIK_DEFINE_CHUNK(scalar_t)                                                                              \
  SFRIK_LEVEL_VERSION(run_chunk_v4, "arch=x86-64-v4", 64, scalar_t)                                               \
  SFRIK_LEVEL_VERSION(run_chunk_v3, "arch=x86-64-v3", 32, scalar_t)                                               \
  double run_chunk(const scalar_t* t, const scalar_t* grad, GradMode mode, at::opmath_type<scalar_t> grad_scalar, \
                   scalar_t* out, int64_t n, const CpuTables<at::opmath_type<scalar_t>>& tab) {                   \
    switch (cpu_level()) {                                                                                        \
      case CpuLevel::kV4:                                                                                         \
        return run_chunk_v4(t, grad, mode, grad_scalar, out, n, tab);                                             \
      case CpuLevel::kV3:                                                                                         \
        return run_chunk_v3(t, grad, mode, grad_scalar, out, n, tab);                                             \
      default:                                                                                                    \
        return series_chunk_any_degree<32, scalar_t>(t, grad, mode, grad_scalar, out, n, tab);                    \
    }                                                                                                             \
  }
#else
#define SFRIK_DEFINE_CHUNK(scalar_t)                                                                              \
  double run_chunk(const scalar_t* t, const scalar_t* grad, GradMode mode, at::opmath_type<scalar_t> grad_scalar, \
                   scalar_t* out, int64_t n, const CpuTables<at::opmath_type<scalar_t>>& tab) {                   \
    return series_chunk_any_degree<32, scalar_t>(t, grad, mode, grad_scalar, out, n, tab);                        \
  }
#endif
SFRIK_DEFINE_CHUNK(float)
SFRIK_DEFINE_CHUNK(double)
SFRIK_DEFINE_CHUNK(c10::Half)
SFRIK_DEFINE_CHUNK(c10::BFloat16)
#undef SFRIK_DEFINE_CHUNK
#undef SFRIK_LEVEL_VERSION

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
    return run_chunk(t + begin, g, mode, grad_scalar, out != nullptr ? out + begin : nullptr, end - begin, tab);
  };
  // Each thread owns a contiguous share of the chunks and walks it from the front: the streams of a
  // static split, as torch's own kernels and torch.compile's code walk them (issue 32: a shared
  // counter interleaved the threads' chunks, and the elementwise backward, which reads two
  // matrices and writes a third, took 1.4x the compiled code's time with twice its spread). A
  // thread done with its share then takes chunks from the back of the others' shares, so that when
  // a core is shared (data-loader workers, another process) the thread that keeps its core takes
  // the work the other cannot, instead of waiting for the slowed thread's whole share (issue 19).
  // A chunk is claimed by an atomic flag, so each runs once (an owner stops at the first chunk a
  // thief took, a thief at the first one the owner or an earlier thief took: no gap is left), and
  // the sums are kept per chunk and added in chunk order: the same bits whatever the thread count
  // or the scheduling.
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> sums(out != nullptr ? 0 : static_cast<size_t>(chunks), 0.0);
  auto run_one = [&](int64_t c) {
    const int64_t begin = c * kChunk;
    const double sum = chunk(begin, std::min(n, begin + kChunk));
    if (out == nullptr) sums[static_cast<size_t>(c)] = sum;
  };
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), chunks);
  if (threads <= 1 || at::in_parallel_region()) {
    for (int64_t c = 0; c < chunks; ++c) run_one(c);
  } else {
    std::unique_ptr<std::atomic<bool>[]> claimed(new std::atomic<bool>[static_cast<size_t>(chunks)]);
    for (int64_t c = 0; c < chunks; ++c) claimed[c].store(false, std::memory_order_relaxed);
    auto claim = [&](int64_t c) { return !claimed[c].exchange(true, std::memory_order_relaxed); };
    auto share = [&](int64_t t) { return chunks * t / threads; };  // thread t owns [share(t), share(t + 1))
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        for (int64_t c = share(t); c < share(t + 1) && claim(c); ++c) run_one(c);
        for (int64_t k = 1; k < threads; ++k) {
          const int64_t other = (t + k) % threads;
          for (int64_t c = share(other + 1) - 1; c >= share(other) && claim(c); --c) run_one(c);
        }
      }
    });
  }
  double total = 0.0;
  for (const double s : sums) total += s;
  return total;
}

void check_cpu(const at::Tensor& t) {
  SFRIK_CHECK(t.device().is_cpu(), "sfrik: CPU kernel called with a tensor on ", t.device());
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

at::Tensor legendre_series_reduce_cpu(const at::Tensor& t, at::ArrayRef<double> coeffs, int64_t q, bool mean) {
  check_input(t, "t");
  check_cpu(t);
  const SeriesTables tables = make_tables(coeffs, q, 0);
  const at::Tensor dense = dense_view(t);
  const int64_t n = dense.numel();
  double total = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dense.scalar_type(), "sfrik_legendre_series_reduce_cpu", [&] {
        total = run_series<scalar_t>(dense.const_data_ptr<scalar_t>(), nullptr, GradMode::kNone, nullptr, n, tables);
      });
  // The mean of no element is NaN, as torch.mean gives.
  const double value = mean ? total / static_cast<double>(n) : total;
  return at::scalar_tensor(value, t.options());
}

// Two passes on the CPU (the reduction, then the derivative times 1 or 1/n): a second read of t
// costs little next to the recurrence here.
std::tuple<at::Tensor, at::Tensor> legendre_series_value_and_grad_cpu(const at::Tensor& t, at::ArrayRef<double> coeffs,
                                                                      int64_t q, bool mean) {
  const at::Tensor total = legendre_series_reduce_cpu(t, coeffs, q, mean);
  const double scale = mean ? 1.0 / static_cast<double>(std::max<int64_t>(t.numel(), 1)) : 1.0;
  const at::Tensor slope = run_elementwise(t, nullptr, make_tables(coeffs, q, 1));
  if (scale != 1.0) slope.mul_(scale);
  return {total, slope};
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CPU, m) {
  m.impl("legendre_series", &legendre_series_op<run_elementwise>);
  m.impl("legendre_series_reduce", &legendre_series_reduce_cpu);
  m.impl("legendre_series_backward", &legendre_series_backward_op<run_elementwise>);
  m.impl("legendre_series_value_and_grad", &legendre_series_value_and_grad_cpu);
}

}  // namespace sfrik
