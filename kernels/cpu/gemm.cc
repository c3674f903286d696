// cpu::Gemm / cpu::GemmMulti: validation, activation quantization, ISA
// dispatch and threading around the tile kernels (gemm_portable.cc,
// gemm_x86_impl.inc, gemm_amx.cc, gemm_float_avx512.cc, gemm_quant_avx512.cc;
// partition-invariant y_fixed output:
// gemm_fixed_portable.cc, gemm_fixed_x86_impl.inc).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gemm_kernels.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

absl::Status Validate(const GemmParams& p) {
  if (p.x == nullptr || p.w == nullptr || (p.y == nullptr && p.y_fixed == nullptr)) {
    return absl::InvalidArgumentError("Gemm: x, w and y (or y_fixed) must be set");
  }
  if (p.m < 0 || p.n < 0 || p.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: bad shape m=", p.m, " n=", p.n, " k=", p.k));
  }
  if (IsQuantized(p.w_dtype) && p.k % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("Gemm: k=", p.k, " is not a multiple of 32 for ",
                                                   DTypeName(p.w_dtype), " weights"));
  }
  if ((p.x_stride != 0 && p.x_stride < p.k) || (p.y_stride != 0 && p.y_stride < p.n)) {
    return absl::InvalidArgumentError("Gemm: row stride shorter than the row");
  }
  if (p.y_fixed != nullptr) {
    if (p.bias != nullptr || p.exact) {
      return absl::InvalidArgumentError("Gemm: y_fixed takes no bias and no exact mode");
    }
    if (!IsQuantized(p.w_dtype) && (p.fixed_chunk <= 0 || p.k % p.fixed_chunk != 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Gemm: fixed_chunk ", p.fixed_chunk, " does not divide k=", p.k));
    }
  }
  return absl::OkStatus();
}

GemmArgs ToArgs(const GemmParams& p) {
  GemmArgs a;
  a.x = p.x;
  a.x_stride = p.x_stride != 0 ? p.x_stride : p.k;
  a.w = static_cast<const uint8_t*>(p.w);
  a.row_bytes = RowBytes(p.w_dtype, p.k);
  a.w_dtype = p.w_dtype;
  a.bias = p.bias;
  a.y = p.y;
  a.y_stride = p.y_stride != 0 ? p.y_stride : p.n;
  a.m = p.m;
  a.k = p.k;
  a.y_fixed = p.y_fixed;
  a.chunk = IsQuantized(p.w_dtype) ? 32 : p.fixed_chunk;
  return a;
}

void RunTile(Isa isa, const GemmArgs& a, int64_t begin, int64_t end) {
  if (a.y_fixed != nullptr) {
    switch (isa) {
      case Isa::kAmx:  // the fixed-point output has no AMX variant
      case Isa::kAvxVnni:
        avxvnni::GemmTileFixed(a, begin, end);
        break;
      case Isa::kAvx2:
        avx2::GemmTileFixed(a, begin, end);
        break;
      case Isa::kPortable:
        portable::GemmTileFixed(a, begin, end);
        break;
    }
    return;
  }
  if (isa == Isa::kAvxVnni && IsQuantized(a.w_dtype) && HasAvx512Vnni()) {
    avx512::GemmTileQuant(a, begin, end);
    return;
  }
  if (isa >= Isa::kAvxVnni && !IsQuantized(a.w_dtype) && HasAvx512()) {
    avx512::GemmTileFloat(a, begin, end);
    return;
  }
  switch (isa) {
    case Isa::kAmx:
      amx::GemmTile(a, begin, end);
      break;
    case Isa::kAvxVnni:
      avxvnni::GemmTile(a, begin, end);
      break;
    case Isa::kAvx2:
      avx2::GemmTile(a, begin, end);
      break;
    case Isa::kPortable:
      portable::GemmTile(a, begin, end);
      break;
  }
}

// Reference mode: dequantise each weight row once (dtype.h), then the f32
// kernel takes it against all m activation rows.
void RunExact(Isa isa, const GemmParams& p, const Stream& stream) {
  const GemmArgs a = ToArgs(p);
  ParallelFor(stream.pool, p.n, 16, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(p.k));
    for (int64_t j = begin; j < end; ++j) {
      DequantizeRow(p.w_dtype, a.w + j * a.row_bytes, row.data(), p.k);
      GemmArgs one = a;
      one.w = reinterpret_cast<const uint8_t*>(row.data());
      one.row_bytes = int64_t{4} * p.k;
      one.w_dtype = DType::kF32;
      one.bias = a.bias != nullptr ? a.bias + j : nullptr;
      one.y = a.y + j;
      RunTile(isa == Isa::kPortable ? Isa::kPortable : Isa::kAvx2, one, 0, 1);
    }
  });
}

}  // namespace

absl::Status Gemm(const GemmParams& p, const Stream& stream) {
  return GemmMulti(absl::MakeConstSpan(&p, 1), stream);
}

absl::Status GemmMulti(absl::Span<const GemmParams> parts, const Stream& stream) {
  if (parts.empty()) return absl::OkStatus();
  const GemmParams& first = parts[0];
  for (const GemmParams& p : parts) {
    if (absl::Status s = Validate(p); !s.ok()) return s;
    if (p.x != first.x || p.m != first.m || p.k != first.k ||
        (p.x_stride != 0 ? p.x_stride : p.k) != (first.x_stride != 0 ? first.x_stride : first.k)) {
      return absl::InvalidArgumentError("GemmMulti: parts must share x, m, k and x_stride");
    }
  }
  if (first.m == 0) return absl::OkStatus();
  const Isa isa = ActiveIsa();

  // Parts on the fast path, with their first output feature in the
  // concatenated range that the thread pool splits.
  absl::InlinedVector<GemmArgs, 4> args;
  absl::InlinedVector<int64_t, 5> starts = {0};
  bool any_quantized = false;
  for (const GemmParams& p : parts) {
    if (p.n == 0) continue;
    if (p.exact && IsQuantized(p.w_dtype)) {
      RunExact(isa, p, stream);
      continue;
    }
    args.push_back(ToArgs(p));
    starts.push_back(starts.back() + p.n);
    any_quantized |= IsQuantized(p.w_dtype);
  }
  if (args.empty()) return absl::OkStatus();

  // Quantize the activations once for all parts. Per-thread scratch, grown
  // once and reused: launches come from the engine's one step thread.
  thread_local std::vector<ActBlock> xq;
  if (any_quantized) {
    const int nb = first.k / 32;
    const int64_t x_stride = args[0].x_stride;
    // The AMX tiles read whole 16-row panels: pad with zero rows (d = 0).
    const int64_t rows = isa == Isa::kAmx && first.m > 1 ? (first.m + 15) / 16 * 16 : first.m;
    if (xq.size() < static_cast<size_t>(rows) * nb) xq.resize(static_cast<size_t>(rows) * nb);
    ActBlock* out = xq.data();
    std::fill(out + int64_t{first.m} * nb, out + rows * nb, ActBlock{});
    ParallelFor(stream.pool, first.m, 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (isa >= Isa::kAvx2) {
          avx2::QuantizeRow(first.x + i * x_stride, first.k, out + i * nb);
        } else {
          portable::QuantizeRow(first.x + i * x_stride, first.k, out + i * nb);
        }
      }
    });
    for (GemmArgs& a : args) a.xq = out;
  }

  // Split output features; each chunk streams its weight rows once and
  // reuses them across all m activation rows. Grain 16 rows keeps chunks
  // above ~5 KB of Q4_1 weights at k=576.
  ParallelFor(stream.pool, starts.back(), 16, [&](int64_t begin, int64_t end) {
    for (size_t i = 0; i < args.size(); ++i) {
      const int64_t lo = std::max(begin, starts[i]);
      const int64_t hi = std::min(end, starts[i + 1]);
      if (lo < hi) RunTile(isa, args[i], lo - starts[i], hi - starts[i]);
    }
  });
  return absl::OkStatus();
}

}  // namespace tpserve::kernels::cpu
