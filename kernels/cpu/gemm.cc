// cpu::Gemm: validation, activation quantization, ISA dispatch and threading
// around the tile kernels in gemm_portable.cc / gemm_avx2.cc.
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gemm_kernels.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

absl::Status Validate(const GemmParams& p) {
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("Gemm: x, w and y must be set");
  }
  if (p.m < 0 || p.n < 0 || p.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: bad shape m=", p.m, " n=", p.n, " k=", p.k));
  }
  if (IsQuantized(p.w_dtype) && p.k % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Gemm: k=", p.k, " is not a multiple of 32 for ", DTypeName(p.w_dtype), " weights"));
  }
  if ((p.x_stride != 0 && p.x_stride < p.k) || (p.y_stride != 0 && p.y_stride < p.n)) {
    return absl::InvalidArgumentError("Gemm: row stride shorter than the row");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Gemm(const GemmParams& p, const Stream& stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  const Isa isa = ActiveIsa();

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

  if (p.exact && IsQuantized(p.w_dtype)) {
    // Reference mode: dequantise each weight row once (dtype.h), then the
    // f32 kernel takes it against all m activation rows.
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
        if (isa >= Isa::kAvx2) {
          avx2::GemmTile(one, 0, 1);
        } else {
          portable::GemmTile(one, 0, 1);
        }
      }
    });
    return absl::OkStatus();
  }

  // Per-thread scratch for the quantized activations, grown once and reused:
  // launches come from the engine's one step thread.
  thread_local std::vector<ActBlock> xq;
  if (IsQuantized(p.w_dtype)) {
    const int nb = p.k / 32;
    if (xq.size() < static_cast<size_t>(p.m) * nb) xq.resize(static_cast<size_t>(p.m) * nb);
    ActBlock* out = xq.data();
    ParallelFor(stream.pool, p.m, 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (isa >= Isa::kAvx2) {
          avx2::QuantizeRow(a.x + i * a.x_stride, p.k, out + i * nb);
        } else {
          portable::QuantizeRow(a.x + i * a.x_stride, p.k, out + i * nb);
        }
      }
    });
    a.xq = out;
  }

  // Split output features; each chunk streams its weight rows once and
  // reuses them across all m activation rows. Grain 16 rows keeps chunks
  // above ~5 KB of Q4_1 weights at k=576.
  ParallelFor(stream.pool, p.n, 16, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case Isa::kAvxVnni: avxvnni::GemmTile(a, begin, end); break;
      case Isa::kAvx2: avx2::GemmTile(a, begin, end); break;
      case Isa::kPortable: portable::GemmTile(a, begin, end); break;
    }
  });
  return absl::OkStatus();
}

}  // namespace tpserve::kernels::cpu
