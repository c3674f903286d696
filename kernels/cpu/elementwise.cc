// Launchers for RmsNorm, Rope, Swiglu, Add and Embedding: validation, ISA
// dispatch, threading. Bodies live in ops_impl.inc.
#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/op_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

bool UseAvx2() { return ActiveIsa() >= Isa::kAvx2; }

// Rows per ParallelFor chunk so that a chunk is ~16K floats of work.
int64_t RowGrain(int64_t dim) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, dim)); }

// inv_freq(i) for pair i, with the scaling of ops.h RopeParams.
double InvFreq(const RopeParams& p, int i) {
  double inv = std::pow(static_cast<double>(p.theta), -2.0 * i / p.head_dim);
  switch (p.scaling.type) {
    case RopeScaling::Type::kNone:
      break;
    case RopeScaling::Type::kLinear:
      inv /= p.scaling.factor;
      break;
    case RopeScaling::Type::kLlama3: {
      const double wavelen = 2.0 * std::numbers::pi / inv;
      const double orig = p.scaling.original_max_position;
      const double low_wavelen = orig / p.scaling.low_freq_factor;
      const double high_wavelen = orig / p.scaling.high_freq_factor;
      if (wavelen > low_wavelen) {
        inv /= p.scaling.factor;
      } else if (wavelen >= high_wavelen) {
        const double s = (orig / wavelen - p.scaling.low_freq_factor) /
                         (p.scaling.high_freq_factor - p.scaling.low_freq_factor);
        inv = (1.0 - s) * inv / p.scaling.factor + s * inv;
      }
      break;
    }
  }
  return inv;
}

}  // namespace

absl::Status RmsNorm(const RmsNormParams& p, const Stream& stream) {
  if (p.x == nullptr || p.weight == nullptr || p.y == nullptr || p.rows < 0 || p.dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNorm: bad params rows=", p.rows, " dim=", p.dim));
  }
  const bool avx2 = UseAvx2();
  ParallelFor(stream.pool, p.rows, RowGrain(p.dim), [&](int64_t b, int64_t e) {
    avx2 ? avx2::RmsNormRows(p, b, e) : portable::RmsNormRows(p, b, e);
  });
  return absl::OkStatus();
}

absl::Status Rope(const RopeParams& p, const Stream& stream) {
  if (p.q == nullptr || p.positions == nullptr || p.tokens < 0 || p.n_heads <= 0 ||
      p.head_dim <= 0 || p.head_dim % 2 != 0 || (p.k != nullptr && p.n_kv_heads <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("Rope: bad params tokens=", p.tokens,
                                                   " heads=", p.n_heads, "/", p.n_kv_heads,
                                                   " head_dim=", p.head_dim));
  }
  if (p.scaling.type != RopeScaling::Type::kNone && !(p.scaling.factor > 0.0f)) {
    return absl::InvalidArgumentError("Rope: scaling factor must be > 0");
  }
  if (p.scaling.type == RopeScaling::Type::kLlama3 &&
      (!(p.scaling.high_freq_factor > p.scaling.low_freq_factor) ||
       p.scaling.low_freq_factor <= 0.0f || p.scaling.original_max_position <= 0)) {
    return absl::InvalidArgumentError("Rope: llama3 scaling needs 0 < low < high freq factors");
  }
  const int half = p.head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = InvFreq(p, i);
  // (tokens, half, 2) cos/sin, angles in double.
  std::vector<float> cos_sin(static_cast<size_t>(p.tokens) * p.head_dim);
  for (int t = 0; t < p.tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p.positions[t]) * inv_freq[i];
      cos_sin[static_cast<size_t>(t) * p.head_dim + 2 * i] = static_cast<float>(std::cos(angle));
      cos_sin[static_cast<size_t>(t) * p.head_dim + 2 * i + 1] =
          static_cast<float>(std::sin(angle));
    }
  }
  const bool avx2 = UseAvx2();
  const int64_t grain = RowGrain(int64_t{p.n_heads + p.n_kv_heads} * p.head_dim);
  ParallelFor(stream.pool, p.tokens, grain, [&](int64_t b, int64_t e) {
    avx2 ? avx2::RopeTokens(p, cos_sin.data(), b, e)
         : portable::RopeTokens(p, cos_sin.data(), b, e);
  });
  return absl::OkStatus();
}

absl::Status Swiglu(const SwigluParams& p, const Stream& stream) {
  if (p.gate == nullptr || p.up == nullptr || p.out == nullptr || p.rows < 0 || p.dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Swiglu: bad params rows=", p.rows, " dim=", p.dim));
  }
  const bool avx2 = UseAvx2();
  ParallelFor(stream.pool, p.rows, RowGrain(p.dim), [&](int64_t b, int64_t e) {
    avx2 ? avx2::SwigluRows(p, b, e) : portable::SwigluRows(p, b, e);
  });
  return absl::OkStatus();
}

absl::Status Add(const AddParams& p, const Stream& stream) {
  if (p.a == nullptr || p.b == nullptr || p.y == nullptr || p.n < 0) {
    return absl::InvalidArgumentError("Add: bad params");
  }
  const bool avx2 = UseAvx2();
  ParallelFor(stream.pool, p.n, 16384, [&](int64_t b, int64_t e) {
    avx2 ? avx2::AddRange(p, b, e) : portable::AddRange(p, b, e);
  });
  return absl::OkStatus();
}

absl::Status AddFixedPoint(const AddFixedPointParams& p, const Stream& stream) {
  if (p.a == nullptr || p.b == nullptr || p.y == nullptr || p.n < 0) {
    return absl::InvalidArgumentError("AddFixedPoint: bad params");
  }
  constexpr double kUnit = 1.0 / static_cast<double>(int64_t{1} << kFixedPointShift);
  ParallelFor(stream.pool, p.n, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      p.y[i] =
          static_cast<float>(static_cast<double>(p.a[i]) + static_cast<double>(p.b[i]) * kUnit);
    }
  });
  return absl::OkStatus();
}

absl::Status Embedding(const EmbeddingParams& p, const Stream& stream) {
  if (p.table == nullptr || p.tokens == nullptr || p.out == nullptr || p.num_tokens < 0 ||
      p.dim <= 0 || p.rows < 0) {
    return absl::InvalidArgumentError("Embedding: bad params");
  }
  const int64_t row_bytes = RowBytes(p.dtype, p.dim);
  if (row_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Embedding: dim ", p.dim, " does not fit ", DTypeName(p.dtype), " blocks"));
  }
  const uint8_t* table = static_cast<const uint8_t*>(p.table);
  ParallelFor(stream.pool, p.num_tokens, 8, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* out = p.out + t * p.dim;
      const int64_t r = int64_t{p.tokens[t]} - p.row_offset;
      if (r < 0 || r >= p.rows) {
        std::memset(out, 0, sizeof(float) * p.dim);
      } else {
        DequantizeRow(p.dtype, table + r * row_bytes, out, p.dim);
        // -0 becomes +0: a vocabulary-parallel all-reduce adds the other
        // ranks' +0 rows, so this keeps TP=1 bit-identical to TP > 1.
        for (int i = 0; i < p.dim; ++i) out[i] += 0.0f;
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tpserve::kernels::cpu
