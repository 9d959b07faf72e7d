// CPU kernel of sfrik::row_stats: per row, the sums x.x (and y.y, x.y) of the exact products
// (a product of two floats is exact in double), accumulated in double in one pass over the row.
// Rows are split across threads; within a row, 4-lane double vectors (AVX2 in the x86-64-v3
// clone) with two independent accumulators per sum hide the FMA latency.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "../operands.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SFRIK_ROW_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SFRIK_ROW_CLONES
#endif

namespace sfrik {
namespace {

constexpr int64_t kRowGrain = 32768;  // elements (rows x q) per parallel task at least

typedef double vdouble4 __attribute__((vector_size(32)));
typedef float vfloat4 __attribute__((vector_size(16)));

// One entry in double: exact for every input type (half types widen through float).
template <typename scalar_t>
inline double widen(scalar_t v) {
  if constexpr (std::is_same<scalar_t, double>::value) {
    return v;
  } else {
    return static_cast<double>(static_cast<float>(v));
  }
}

template <typename scalar_t>
inline vdouble4 load4(const scalar_t* p) {
  if constexpr (std::is_same<scalar_t, float>::value) {
    vfloat4 f;
    std::memcpy(&f, p, sizeof(f));
    return __builtin_convertvector(f, vdouble4);
  } else if constexpr (std::is_same<scalar_t, double>::value) {
    vdouble4 d;
    std::memcpy(&d, p, sizeof(d));
    return d;
  } else {  // float16 / bfloat16: widen lane by lane
    vdouble4 d;
    for (int i = 0; i < 4; ++i) d[i] = widen(p[i]);
    return d;
  }
}

inline double lane_sum(vdouble4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// out[0] = x.x, and with y: out[1] = y.y, out[2] = x.y, over q entries.
template <typename scalar_t, bool kTwo>
inline void row_sums(const scalar_t* x, const scalar_t* y, int64_t q, double* out) {
  vdouble4 xx[2] = {}, yy[2] = {}, xy[2] = {};
  int64_t k = 0;
  for (; k + 8 <= q; k += 8) {
    for (int u = 0; u < 2; ++u) {
      const vdouble4 a = load4(x + k + 4 * u);
      xx[u] += a * a;
      if constexpr (kTwo) {
        const vdouble4 b = load4(y + k + 4 * u);
        yy[u] += b * b;
        xy[u] += a * b;
      }
    }
  }
  double sxx = lane_sum(xx[0] + xx[1]), syy = lane_sum(yy[0] + yy[1]), sxy = lane_sum(xy[0] + xy[1]);
  for (; k < q; ++k) {
    const double a = widen(x[k]);
    sxx += a * a;
    if constexpr (kTwo) {
      const double b = widen(y[k]);
      syy += b * b;
      sxy += a * b;
    }
  }
  out[0] = sxx;
  if constexpr (kTwo) {
    out[1] = syy;
    out[2] = sxy;
  }
}

// The multiversioned entry points (target_clones needs plain functions), one per dtype.
#define SFRIK_DEFINE_ROWS(scalar_t)                                                                           \
  SFRIK_ROW_CLONES void run_rows(const scalar_t* x, const scalar_t* y, int64_t begin, int64_t end, int64_t q, \
                                 double* out, int64_t width) {                                                \
    for (int64_t i = begin; i < end; ++i) {                                                                   \
      if (y == nullptr) {                                                                                     \
        row_sums<scalar_t, false>(x + i * q, nullptr, q, out + i * width);                                    \
      } else {                                                                                                \
        row_sums<scalar_t, true>(x + i * q, y + i * q, q, out + i * width);                                   \
      }                                                                                                       \
    }                                                                                                         \
  }
SFRIK_DEFINE_ROWS(float)
SFRIK_DEFINE_ROWS(double)
SFRIK_DEFINE_ROWS(c10::Half)
SFRIK_DEFINE_ROWS(c10::BFloat16)
#undef SFRIK_DEFINE_ROWS

at::Tensor row_stats_cpu(const at::Tensor& x_in, const std::optional<at::Tensor>& y_in) {
  const at::Tensor* y_ptr = y_in.has_value() ? &*y_in : nullptr;
  check_row_operands(x_in, y_ptr);
  SFRIK_CHECK(x_in.device().is_cpu(), "sfrik: CPU kernel called with a tensor on ", x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor y = y_ptr != nullptr ? y_ptr->contiguous() : at::Tensor();
  const int64_t n = x.size(0), q = x.size(1), width = y_ptr != nullptr ? 3 : 1;
  at::Tensor out = at::empty({n, width}, x.options().dtype(at::kDouble));
  double* out_ptr = out.mutable_data_ptr<double>();
  const int64_t grain = std::max<int64_t>(1, kRowGrain / std::max<int64_t>(q, 1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sfrik_row_stats_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.defined() ? y.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { run_rows(xp, yp, begin, end, q, out_ptr, width); });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CPU, m) { m.impl("row_stats", &row_stats_cpu); }

}  // namespace sfrik
