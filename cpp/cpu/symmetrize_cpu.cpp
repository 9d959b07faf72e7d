// CPU kernel of sfrik::symmetrize: a square matrix made exactly symmetric from its upper triangle
// (add = false: out[i][j] = g[min(i,j)][max(i,j)]) or as g + g^T (add = true), in square tiles.
// Why a kernel: torch.where(mask, g, g.mT) and g + g.mT read g.mT column by column, a cache miss
// per element; on a 2-core CPU at n = 2048 that pass cost 10-20x a contiguous copy, as much as a
// good part of the GEMM work that the symmetric Gram product saves (sfrik_plugin/gram.py). Here
// each pair of 8 x 8 blocks (I, J), (J, I) is read and written in contiguous row pieces, and each
// value is computed once and stored at (i, j) and (j, i): the result is symmetric to the bit.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "../operands.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SFRIK_SYM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SFRIK_SYM_CLONES
#endif

namespace sfrik {
namespace {

constexpr int64_t kTile = 64;   // rows and columns of a parallel task's block pair
constexpr int64_t kMicro = 16;  // each value block is read and written as kMicro-wide row pieces

// The micro-block at (i, j), i <= j, and its mirror at (j, i), rows x cols values (kMicro x kMicro
// but at the matrix's edge). Every access is a contiguous piece of a row: a matrix with a
// power-of-two row length read down a column maps each row to the same cache set, and 64 such rows
// would not fit its ways.
template <typename scalar_t, int64_t kRows, int64_t kCols>
C10_ALWAYS_INLINE void symmetrize_micro(const scalar_t* g, scalar_t* out, int64_t n, int64_t i, int64_t j, bool add,
                                        int64_t rows = kRows, int64_t cols = kCols) {
  scalar_t v[kMicro][kMicro];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) v[r][c] = g[(i + r) * n + j + c];
  }
  if (add) {  // + g^T, read as rows j + c; on the diagonal v stays symmetric (a + b == b + a in IEEE)
    scalar_t t[kMicro][kMicro];
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = 0; r < rows; ++r) t[c][r] = g[(j + c) * n + i + r];
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) v[r][c] = static_cast<scalar_t>(v[r][c] + t[c][r]);
    }
  } else if (i == j) {  // the diagonal block's lower half from its upper half
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < r; ++c) v[r][c] = v[c][r];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[(i + r) * n + j + c] = v[r][c];
  }
  if (i == j) return;
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) out[(j + c) * n + i + r] = v[r][c];
  }
}

template <typename scalar_t>
C10_ALWAYS_INLINE void symmetrize_tile(const scalar_t* g, scalar_t* out, int64_t n, int64_t i0, int64_t j0, bool add) {
  const int64_t i1 = std::min(i0 + kTile, n), j1 = std::min(j0 + kTile, n);
  for (int64_t i = i0; i < i1; i += kMicro) {
    for (int64_t j = std::max(j0, i); j < j1; j += kMicro) {
      if (i + kMicro <= n && j + kMicro <= n) {  // sizes known at compile time: the loops vectorise
        symmetrize_micro<scalar_t, kMicro, kMicro>(g, out, n, i, j, add);
      } else {
        symmetrize_micro<scalar_t, kMicro, kMicro>(g, out, n, i, j, add, std::min(kMicro, n - i),
                                                   std::min(kMicro, n - j));
      }
    }
  }
}

// The multiversioned entry points (target_clones needs plain functions), one per dtype.
#define SFRIK_DEFINE_TILE(scalar_t)                                                                               \
  SFRIK_SYM_CLONES void run_tile(const scalar_t* g, scalar_t* out, int64_t n, int64_t i0, int64_t j0, bool add) { \
    symmetrize_tile<scalar_t>(g, out, n, i0, j0, add);                                                            \
  }
SFRIK_DEFINE_TILE(float)
SFRIK_DEFINE_TILE(double)
SFRIK_DEFINE_TILE(c10::Half)
SFRIK_DEFINE_TILE(c10::BFloat16)
#undef SFRIK_DEFINE_TILE

at::Tensor symmetrize_cpu(const at::Tensor& g_in, bool add) {
  check_input(g_in, "g");
  SFRIK_CHECK_VALUE(g_in.dim() == 2 && g_in.size(0) == g_in.size(1), "sfrik: g must be a square matrix, got shape ",
                    g_in.sizes());
  SFRIK_CHECK(g_in.device().is_cpu(), "sfrik: CPU kernel called with a tensor on ", g_in.device());
  const at::Tensor g = g_in.contiguous();
  const int64_t n = g.size(0), tiles = (n + kTile - 1) / kTile;
  at::Tensor out = at::empty({n, n}, g.options());
  std::vector<std::pair<int64_t, int64_t>> pairs;  // tiles (I, J), I <= J: the upper triangle
  pairs.reserve(static_cast<size_t>(tiles * (tiles + 1) / 2));
  for (int64_t i = 0; i < tiles; ++i) {
    for (int64_t j = i; j < tiles; ++j) pairs.emplace_back(i * kTile, j * kTile);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "sfrik_symmetrize_cpu", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, static_cast<int64_t>(pairs.size()), 4, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const auto& [i0, j0] = pairs[static_cast<size_t>(p)];
        run_tile(gp, op, n, i0, j0, add);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sfrik, CPU, m) { m.impl("symmetrize", &symmetrize_cpu); }

}  // namespace sfrik
