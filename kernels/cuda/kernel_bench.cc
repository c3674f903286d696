// GPU kernel benchmarks, one results-table row each, every number divided by
// a baseline measured in the same run:
//   - GEMM TFLOP/s vs cuBLAS (reference only; dlopen'ed, "n/a" where absent)
//     on LLM shapes, m = 1, 16, 64 (skinny path, bf16 and Q4_1 weights) and
//     512, 4096 (tensor-core path); skinny rows also report HBM bandwidth vs
//     the measured copy bandwidth;
//   - Q4_1 at m = 16, 32, 64: the tensor-core path vs the skinny path;
//   - decode attention bandwidth (KV bytes read / s) vs D2D copy bandwidth,
//     and its batch-1 short-context latency vs an elementwise Add launch;
//   - prefill attention TFLOP/s (f32 and tensor-core kernels) vs the cuBLAS
//     (else our) bf16 GEMM at 4096^3.
//
//   bazel run //kernels/cuda:kernel_bench             # all rows
//   kernel_bench --quick                              # fewer shapes (smoke)
//   kernel_bench --only=prefill                       # the families whose name has "prefill"
//                                                     # (gemm, wgmma, decode attention,
//                                                     # prefill attention)
//   scripts/gpu_model.sh --kernels                    # every row's MODELLED H100 figure
//                                                     # (bench_util.h's model mode)
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "kernels/cuda/bench_util.h"
#include "kernels/cuda/cublas_reference.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/weight_layout.h"

namespace tpserve::kernels::cuda {
namespace {

template <typename T>
DeviceBuffer<T> Alloc(size_t n) {
  absl::StatusOr<DeviceBuffer<T>> b = DeviceBuffer<T>::Allocate(n);
  if (!b.ok()) {
    std::fprintf(stderr, "allocation of %zu elements failed: %s\n", n,
                 b.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(b);
}

// Fills `bytes` of device memory by tiling a random host chunk of `host`.
void FillTiled(void* dst, size_t bytes, const std::vector<uint8_t>& host) {
  for (size_t off = 0; off < bytes; off += host.size()) {
    cudaMemcpy(static_cast<char*>(dst) + off, host.data(), std::min(host.size(), bytes - off),
               cudaMemcpyHostToDevice);
  }
}

std::vector<uint8_t> RandomBf16Bytes(std::mt19937& rng, size_t values) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint8_t> out(values * 2);
  for (size_t i = 0; i < values; ++i) {
    const uint16_t h = F32ToBF16(u(rng));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

std::vector<uint8_t> RandomF32Bytes(std::mt19937& rng, size_t values) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint8_t> out(values * 4);
  for (size_t i = 0; i < values; ++i) {
    const float f = u(rng);
    std::memcpy(out.data() + 4 * i, &f, 4);
  }
  return out;
}

std::vector<uint8_t> RandomQ4_1Bytes(std::mt19937& rng, size_t blocks) {
  std::vector<uint8_t> out(blocks * sizeof(BlockQ4_1));
  for (size_t b = 0; b < blocks; ++b) {
    BlockQ4_1 blk;
    blk.d = F32ToF16(0.01f);
    blk.m = F32ToF16(-0.08f);
    for (uint8_t& q : blk.qs) q = static_cast<uint8_t>(rng());
    std::memcpy(out.data() + b * sizeof(blk), &blk, sizeof(blk));
  }
  return out;
}

double Nmse(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0.0 ? num / den : num;
}

// First `n` floats of a device buffer.
std::vector<float> Head(const float* d, size_t n) {
  std::vector<float> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
  return h;
}

struct Context {
  cudaStream_t stream;
  Stream s;
  CublasReference* cublas;
  double copy_bw;  // bytes/s, read + write
  std::mt19937 rng{123};
};

// n x k Q4_1 weights in the device layout (weight_layout.h): block bytes
// tiled over it, so the values are arbitrary and the bytes read the layout's.
DeviceBuffer<uint8_t> RandomQ4_1Weights(Context& ctx, int n, int k) {
  DeviceBuffer<uint8_t> w =
      Alloc<uint8_t>(static_cast<size_t>(DeviceWeightBytes(DType::kQ4_1, n, k)));
  FillTiled(w.data(), w.bytes(), RandomQ4_1Bytes(ctx.rng, 1 << 16));
  return w;
}

// The kernel Gemm runs at decode sizes (m <= kSkinnyGemmMaxRows) for
// weights of `dtype` in 32-value blocks: the row names say which.
const char* DecodePath(int m, DType dtype) {
  const bool mma = m >= 2 && dtype != DType::kF32 && dtype != DType::kF16;
  return mma ? "decode mma" : "skinny";
}

void BenchGemm(Context& ctx, int m, int n, int k) {
  const double flops = 2.0 * m * n * k;
  const bool skinny = m <= kSkinnyGemmMaxRows;
  // f32 x and y; bf16 a (tensor-core path) and b.
  const double xy_bytes = (skinny ? 4.0 * m * k : 2.0 * m * k) + 4.0 * m * n;
  const Work work{.bytes = xy_bytes + 2.0 * n * k,
                  .flops = flops,
                  .peak_flops = m == 1 ? kH100CudaCoreFlops : kH100TensorCoreFlops};
  DeviceBuffer<uint16_t> a = Alloc<uint16_t>(static_cast<size_t>(m) * k);
  DeviceBuffer<uint16_t> b = Alloc<uint16_t>(static_cast<size_t>(n) * k);
  DeviceBuffer<float> x = Alloc<float>(static_cast<size_t>(m) * k);
  DeviceBuffer<float> c = Alloc<float>(static_cast<size_t>(m) * n);
  DeviceBuffer<float> c_ref = Alloc<float>(static_cast<size_t>(m) * n);
  FillTiled(b.data(), b.bytes(), RandomBf16Bytes(ctx.rng, 1 << 20));
  FillTiled(x.data(), x.bytes(), RandomF32Bytes(ctx.rng, 1 << 20));
  // a = bf16(x): both sides multiply the same activations.
  ToBf16Params cv{.src = x.data(), .dtype = DType::kF32, .dst = a.data(), .rows = m, .cols = k};
  (void)ToBf16(cv, ctx.s);

  double ref_ms = -1.0;
  if (ctx.cublas->available()) {
    ref_ms = TimeMs(ctx.stream, work, [&] {
      ctx.cublas->GemmBf16(a.data(), b.data(), c_ref.data(), m, n, k, ctx.stream);
    });
  }
  double ms;
  if (skinny) {
    GemmParams p{.x = x.data(),
                 .w = b.data(),
                 .w_dtype = DType::kBF16,
                 .y = c.data(),
                 .m = m,
                 .n = n,
                 .k = k};
    ms = TimeMs(ctx.stream, work, [&] { (void)Gemm(p, ctx.s); });
  } else {
    GemmBf16Params p{.a = a.data(), .b = b.data(), .c = c.data(), .m = m, .n = n, .k = k};
    ms = TimeMs(ctx.stream, work, [&] { (void)GemmBf16(p, ctx.s); });
  }
  std::string status = cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR";
  if (ref_ms > 0) {
    const size_t check = std::min<size_t>(static_cast<size_t>(m) * n, 1 << 20);
    const double err = Nmse(Head(c.data(), check), Head(c_ref.data(), check));
    if (!(err < 1e-4)) status = Fmt("MISMATCH nmse=%.1e", err);
  }
  const double tflops = flops / (ms * 1e-3) / 1e12;
  const std::string what =
      Fmt("gemm %s bf16 m=%d n=%d k=%d", skinny ? DecodePath(m, DType::kBF16) : "mma", m, n, k);
  if (ref_ms > 0) {
    const double ref = flops / (ref_ms * 1e-3) / 1e12;
    PrintRow(what, status, Fmt("%.2f TFLOP/s", tflops), Fmt("cuBLAS %.2f TFLOP/s", ref),
             tflops / ref);
  } else {
    PrintRow(what, status, Fmt("%.2f TFLOP/s", tflops), "cuBLAS n/a: " + ctx.cublas->error(), -1.0);
  }
  if (!skinny) {
    // Gemm's prefill kernel: f32 activations, Q4_1 weights dequantised on
    // the way into shared memory (the engine's prefill path until 2026-12-06).
    DeviceBuffer<uint8_t> wq = RandomQ4_1Weights(ctx, n, k);
    GemmParams p{.x = x.data(),
                 .w = wq.data(),
                 .w_dtype = DType::kQ4_1,
                 .y = c.data(),
                 .m = m,
                 .n = n,
                 .k = k};
    const Work qwork{.bytes = 4.0 * m * k + static_cast<double>(wq.bytes()) + 4.0 * m * n,
                     .flops = flops,
                     .peak_flops = kH100TensorCoreFlops};
    const double qms = TimeMs(ctx.stream, qwork, [&] { (void)Gemm(p, ctx.s); });
    const double q_tflops = flops / (qms * 1e-3) / 1e12;
    const std::string qwhat = Fmt("gemm mma f32 x Q4_1 (fused dequant) m=%d n=%d k=%d", m, n, k);
    const std::string qstatus = cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR";
    if (ref_ms > 0) {
      const double ref = flops / (ref_ms * 1e-3) / 1e12;
      PrintRow(qwhat, qstatus, Fmt("%.2f TFLOP/s", q_tflops), Fmt("cuBLAS bf16 %.2f TFLOP/s", ref),
               q_tflops / ref);
    } else {
      PrintRow(qwhat, qstatus, Fmt("%.2f TFLOP/s", q_tflops), "cuBLAS n/a", -1.0);
    }
    // The engine's prefill path since: the same product through bf16 copies
    // of x and w (GemmViaBf16: two conversion launches, then the cp.async kernel).
    DeviceBuffer<uint16_t> scratch =
        Alloc<uint16_t>(static_cast<size_t>(GemmViaBf16ScratchElems(m, n, k)));
    const Work vwork{.bytes = qwork.bytes + 2.0 * 2.0 * (static_cast<double>(m) + n) * k,
                     .flops = flops,
                     .peak_flops = kH100TensorCoreFlops};
    const double vms =
        TimeMs(ctx.stream, vwork, [&] { (void)GemmViaBf16(p, scratch.data(), ctx.s); });
    const double v_tflops = flops / (vms * 1e-3) / 1e12;
    PrintRow(Fmt("gemm f32 x Q4_1 via bf16 copies m=%d n=%d k=%d", m, n, k),
             cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR", Fmt("%.2f TFLOP/s", v_tflops),
             Fmt("fused dequant %.2f TFLOP/s", q_tflops), v_tflops / q_tflops);
    // --cuda_prefill_gemm=mma_dequant: x's copy, the weights dequantised by
    // the same kernel's loader (no copy of w); the same bits as the copies.
    DeviceBuffer<float> y = Alloc<float>(static_cast<size_t>(m) * n);
    p.y = y.data();
    absl::Status launched;
    const Work dwork{.bytes = qwork.bytes + 2.0 * 2.0 * m * k,
                     .flops = flops,
                     .peak_flops = kH100TensorCoreFlops};
    const double dms = TimeMs(ctx.stream, dwork, [&] {
      launched = GemmViaBf16(p, scratch.data(), ctx.s, Bf16Gemm::kMmaDequant);
    });
    std::string dstatus = !launched.ok()                      ? "FAIL: " + launched.ToString()
                          : cudaGetLastError() == cudaSuccess ? "ok"
                                                              : "CUDA ERROR";
    if (dstatus == "ok") {
      p.y = c.data();  // the copies again, for the bits to compare
      (void)GemmViaBf16(p, scratch.data(), ctx.s);
      const size_t check = std::min<size_t>(static_cast<size_t>(m) * n, 1 << 20);
      if (Head(y.data(), check) != Head(c.data(), check))
        dstatus = "MISMATCH: not the copies' bits";
    }
    PrintRow(Fmt("gemm f32 x Q4_1 via mma, dequantised in the kernel m=%d n=%d k=%d", m, n, k),
             dstatus, Fmt("%.2f TFLOP/s", flops / (dms * 1e-3) / 1e12),
             Fmt("via bf16 copies %.2f TFLOP/s", v_tflops), vms / dms);
  }
  if (skinny) {
    const double bw = static_cast<double>(b.bytes()) / (ms * 1e-3);
    PrintRow(what + " (weight bandwidth)", status, Fmt("%.0f GB/s", bw / 1e9),
             Fmt("copy %.0f GB/s", ctx.copy_bw / 1e9), bw / ctx.copy_bw);
  }
}

// The experimental Hopper kernels vs cuBLAS. Run last: a fault in one would
// poison the CUDA context for every later row.
void BenchWgmma(Context& ctx, int m, int n, int k) {
  const double flops = 2.0 * m * n * k;
  DeviceBuffer<uint16_t> a = Alloc<uint16_t>(static_cast<size_t>(m) * k);
  DeviceBuffer<uint16_t> b = Alloc<uint16_t>(static_cast<size_t>(n) * k);
  DeviceBuffer<float> c = Alloc<float>(static_cast<size_t>(m) * n);
  DeviceBuffer<float> c_ref = Alloc<float>(static_cast<size_t>(m) * n);
  FillTiled(a.data(), a.bytes(), RandomBf16Bytes(ctx.rng, 1 << 20));
  FillTiled(b.data(), b.bytes(), RandomBf16Bytes(ctx.rng, 1 << 20));
  const Work work{.bytes = 2.0 * m * k + 2.0 * n * k + 4.0 * m * n,
                  .flops = flops,
                  .peak_flops = kH100TensorCoreFlops};
  double ref_ms = -1.0;
  if (ctx.cublas->available()) {
    ref_ms = TimeMs(ctx.stream, work, [&] {
      ctx.cublas->GemmBf16(a.data(), b.data(), c_ref.data(), m, n, k, ctx.stream);
    });
  }
  GemmBf16Params p{.a = a.data(), .b = b.data(), .c = c.data(), .m = m, .n = n, .k = k};
  const double ref = ref_ms > 0 ? flops / (ref_ms * 1e-3) / 1e12 : -1.0;
  // cp.async loads (GemmBf16Wgmma), then TMA loads in a warp-specialised
  // kernel (GemmBf16WgmmaTma), each against cuBLAS.
  for (const bool tma : {false, true}) {
    cudaMemsetAsync(c.data(), 0, c.bytes(), ctx.stream);
    absl::Status launched;
    const double ms = TimeMs(ctx.stream, work, [&] {
      launched = tma ? GemmBf16WgmmaTma(p, ctx.s) : GemmBf16Wgmma(p, ctx.s);
    });
    std::string status = !launched.ok()                      ? "FAIL: " + launched.ToString()
                         : cudaGetLastError() == cudaSuccess ? "ok"
                                                             : "CUDA ERROR";
    if (ref_ms > 0 && status == "ok") {
      const size_t check = std::min<size_t>(static_cast<size_t>(m) * n, 1 << 20);
      const double err = Nmse(Head(c.data(), check), Head(c_ref.data(), check));
      if (!(err < 1e-4)) status = Fmt("MISMATCH nmse=%.1e", err);
    }
    const double tflops = flops / (ms * 1e-3) / 1e12;
    PrintRow(Fmt("gemm wgmma%s (experimental) bf16 m=%d n=%d k=%d", tma ? " tma" : "", m, n, k),
             status, Fmt("%.2f TFLOP/s", tflops),
             ref > 0 ? Fmt("cuBLAS %.2f TFLOP/s", ref) : "cuBLAS n/a",
             ref > 0 ? tflops / ref : -1.0);
  }
  // The engine's Q4_1 prefill GEMM with --cuda_prefill_gemm=wgmma or
  // wgmma_tma (x's bf16 copy, the weights dequantised inside the kernel)
  // against the default (bf16 copies of x and w, the mma.sync kernel).
  DeviceBuffer<float> x = Alloc<float>(static_cast<size_t>(m) * k);
  FillTiled(x.data(), x.bytes(), RandomF32Bytes(ctx.rng, 1 << 20));
  DeviceBuffer<uint8_t> wq = RandomQ4_1Weights(ctx, n, k);
  DeviceBuffer<uint16_t> scratch =
      Alloc<uint16_t>(static_cast<size_t>(GemmViaBf16ScratchElems(m, n, k)));
  GemmParams q{.x = x.data(), .w = wq.data(), .w_dtype = DType::kQ4_1, .m = m, .n = n, .k = k};
  const Work qwork{.bytes = 4.0 * m * k + static_cast<double>(wq.bytes()) + 4.0 * m * n,
                   .flops = flops,
                   .peak_flops = kH100TensorCoreFlops};
  q.y = c_ref.data();
  const double base_ms =
      TimeMs(ctx.stream, qwork, [&] { (void)GemmViaBf16(q, scratch.data(), ctx.s); });
  for (const Bf16Gemm gemm : {Bf16Gemm::kWgmma, Bf16Gemm::kWgmmaTma}) {
    cudaMemsetAsync(c.data(), 0, c.bytes(), ctx.stream);
    q.y = c.data();
    absl::Status launched;
    const double ms =
        TimeMs(ctx.stream, qwork, [&] { launched = GemmViaBf16(q, scratch.data(), ctx.s, gemm); });
    std::string status = !launched.ok()                      ? "FAIL: " + launched.ToString()
                         : cudaGetLastError() == cudaSuccess ? "ok"
                                                             : "CUDA ERROR";
    if (status == "ok") {
      const size_t check = std::min<size_t>(static_cast<size_t>(m) * n, 1 << 20);
      const double err = Nmse(Head(c.data(), check), Head(c_ref.data(), check));
      if (!(err < 1e-6)) status = Fmt("MISMATCH nmse=%.1e", err);
    }
    PrintRow(Fmt("gemm f32 x Q4_1 via wgmma%s, dequantised in the kernel m=%d n=%d k=%d",
                 gemm == Bf16Gemm::kWgmmaTma ? " tma" : "", m, n, k),
             status, Fmt("%.2f TFLOP/s", flops / (ms * 1e-3) / 1e12),
             Fmt("via bf16 copies %.2f TFLOP/s", flops / (base_ms * 1e-3) / 1e12), base_ms / ms);
  }
}

// Batched decode on Q4_1 weights, three kernels on the same f32 x: the
// tensor-core decode kernel that Gemm runs (gemm_mma.cu), the skinny GEMM
// it replaced there (GemmSkinny, the baseline), and the prefill tensor-core
// path (GemmTensorCore), which says whether kSkinnyGemmMaxRows should move.
void BenchDecodeBatchPaths(Context& ctx, int m, int n, int k) {
  DeviceBuffer<uint8_t> w = RandomQ4_1Weights(ctx, n, k);
  DeviceBuffer<float> x = Alloc<float>(static_cast<size_t>(m) * k);
  DeviceBuffer<float> y = Alloc<float>(static_cast<size_t>(m) * n);
  DeviceBuffer<float> y_skinny = Alloc<float>(static_cast<size_t>(m) * n);
  DeviceBuffer<float> y_tc = Alloc<float>(static_cast<size_t>(m) * n);
  FillTiled(x.data(), x.bytes(), RandomF32Bytes(ctx.rng, 1 << 16));
  GemmParams p{
      .x = x.data(), .w = w.data(), .w_dtype = DType::kQ4_1, .y = y.data(), .m = m, .n = n, .k = k};
  const double flops = 2.0 * m * n * k;
  const Work work{.bytes = static_cast<double>(w.bytes() + x.bytes() + y.bytes()),
                  .flops = flops,
                  .peak_flops = kH100TensorCoreFlops};
  const double ms = TimeMs(ctx.stream, work, [&] { (void)Gemm(p, ctx.s); });
  GemmParams skinny = p;
  skinny.y = y_skinny.data();
  const double skinny_ms = TimeMs(ctx.stream, work, [&] { (void)GemmSkinny(skinny, ctx.s); });
  GemmParams tc = p;
  tc.y = y_tc.data();
  const double tc_ms = TimeMs(ctx.stream, work, [&] { (void)GemmTensorCore(tc, ctx.s); });
  std::string status = cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR";
  const size_t check = std::min<size_t>(static_cast<size_t>(m) * n, 1 << 20);
  // The decode kernel against the f32 skinny GEMM: both near f32 (gemm_test).
  std::string decode_status = status;
  const double decode_err = Nmse(Head(y.data(), check), Head(y_skinny.data(), check));
  if (!(decode_err < 1e-8)) decode_status = Fmt("MISMATCH nmse=%.1e", decode_err);
  // The tensor-core path rounds x and w to bf16.
  const double err = Nmse(Head(y_tc.data(), check), Head(y.data(), check));
  if (!(err < 1e-4)) status = Fmt("MISMATCH nmse=%.1e", err);
  const auto tflops = [&](double t) { return flops / (t * 1e-3) / 1e12; };
  PrintRow(Fmt("gemm Q4_1 %s m=%d n=%d k=%d", DecodePath(m, DType::kQ4_1), m, n, k), decode_status,
           Fmt("%.2f TFLOP/s", tflops(ms)), Fmt("skinny %.2f TFLOP/s", tflops(skinny_ms)),
           skinny_ms / ms);
  PrintRow(Fmt("gemm Q4_1 tensor-core path m=%d n=%d k=%d", m, n, k), status,
           Fmt("%.2f TFLOP/s", tflops(tc_ms)),
           Fmt("%s %.2f TFLOP/s", DecodePath(m, DType::kQ4_1), tflops(ms)), ms / tc_ms);
}

// Decode with Q4_1 weights: weight bytes streamed per second vs copy bandwidth.
void BenchQuantGemv(Context& ctx, int m, int n, int k) {
  DeviceBuffer<uint8_t> w = RandomQ4_1Weights(ctx, n, k);
  DeviceBuffer<float> x = Alloc<float>(static_cast<size_t>(m) * k);
  DeviceBuffer<float> y = Alloc<float>(static_cast<size_t>(m) * n);
  FillTiled(x.data(), x.bytes(), RandomF32Bytes(ctx.rng, 1 << 16));
  GemmParams p{
      .x = x.data(), .w = w.data(), .w_dtype = DType::kQ4_1, .y = y.data(), .m = m, .n = n, .k = k};
  const Work work{.bytes = static_cast<double>(w.bytes() + x.bytes() + y.bytes()),
                  .flops = 2.0 * m * n * k,
                  .peak_flops = m == 1 ? kH100CudaCoreFlops : kH100TensorCoreFlops};
  const double ms = TimeMs(ctx.stream, work, [&] { (void)Gemm(p, ctx.s); });
  const double bw = static_cast<double>(w.bytes()) / (ms * 1e-3);
  PrintRow(
      Fmt("gemm %s Q4_1 m=%d n=%d k=%d (weight bandwidth)", DecodePath(m, DType::kQ4_1), m, n, k),
      cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR", Fmt("%.0f GB/s", bw / 1e9),
      Fmt("copy %.0f GB/s", ctx.copy_bw / 1e9), bw / ctx.copy_bw);
}

struct AttentionShape {
  int num_seqs, q_len, context, n_heads, n_kv_heads, head_dim;
  DType kv = DType::kF32;  // the cache's element type: kF32 or kBF16 (the engine's default)
};

// " bf16 KV" for rows on a bf16 cache (rows without a suffix have an f32 cache).
const char* KvSuffix(const AttentionShape& sh) { return sh.kv == DType::kBF16 ? " bf16 KV" : ""; }

// Builds a batch where sequence s owns blocks [s * blocks_per_seq, ...).
struct AttentionBatch {
  DeviceBuffer<float> q, out, k_cache, v_cache, workspace;
  DeviceBuffer<int32_t> tables, cu, start;
  PagedAttentionParams p;
};

AttentionBatch MakeAttention(Context& ctx, const AttentionShape& sh) {
  constexpr int kBlock = 16;
  AttentionBatch b;
  const int blocks_per_seq = (sh.context + kBlock - 1) / kBlock;
  const size_t cache =
      static_cast<size_t>(sh.num_seqs) * blocks_per_seq * kBlock * sh.n_kv_heads * sh.head_dim;
  const size_t qn = static_cast<size_t>(sh.num_seqs) * sh.q_len * sh.n_heads * sh.head_dim;
  b.q = Alloc<float>(qn);
  b.out = Alloc<float>(qn);
  const bool bf16 = sh.kv == DType::kBF16;
  // A bf16 cache's elements in float buffers of half as many (its bytes).
  b.k_cache = Alloc<float>(bf16 ? (cache + 1) / 2 : cache);
  b.v_cache = Alloc<float>(bf16 ? (cache + 1) / 2 : cache);
  const std::vector<uint8_t> chunk = RandomF32Bytes(ctx.rng, 1 << 20);
  const std::vector<uint8_t> kv_chunk = bf16 ? RandomBf16Bytes(ctx.rng, 1 << 20) : chunk;
  FillTiled(b.q.data(), b.q.bytes(), chunk);
  FillTiled(b.k_cache.data(), b.k_cache.bytes(), kv_chunk);
  FillTiled(b.v_cache.data(), b.v_cache.bytes(), kv_chunk);
  std::vector<int32_t> tables(static_cast<size_t>(sh.num_seqs) * blocks_per_seq),
      cu(sh.num_seqs + 1), start(sh.num_seqs);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
  for (int s = 0; s <= sh.num_seqs; ++s) cu[s] = s * sh.q_len;
  for (int s = 0; s < sh.num_seqs; ++s) start[s] = sh.context - sh.q_len;
  b.tables = *DeviceBuffer<int32_t>::FromHost(tables);
  b.cu = *DeviceBuffer<int32_t>::FromHost(cu);
  b.start = *DeviceBuffer<int32_t>::FromHost(start);
  b.p = PagedAttentionParams{.q = b.q.data(),
                             .k_cache = b.k_cache.data(),
                             .v_cache = b.v_cache.data(),
                             .kv_dtype = sh.kv,
                             .out = b.out.data(),
                             .block_tables = b.tables.data(),
                             .cu_q_lens = b.cu.data(),
                             .start_pos = b.start.data(),
                             .num_seqs = sh.num_seqs,
                             .max_blocks_per_seq = blocks_per_seq,
                             .n_heads = sh.n_heads,
                             .n_kv_heads = sh.n_kv_heads,
                             .head_dim = sh.head_dim,
                             .block_size = kBlock,
                             .num_blocks = sh.num_seqs * blocks_per_seq,
                             .scale = 1.0f / std::sqrt(static_cast<float>(sh.head_dim))};
  return b;
}

// Milliseconds per PagedAttentionDecode call on `sh` (`partition_tokens`:
// its override, 0 for its own cut); *kv_bytes: the K and V bytes one call reads.
double TimeDecodeAttention(Context& ctx, const AttentionShape& sh, double* kv_bytes,
                           int partition_tokens = 0) {
  AttentionBatch b = MakeAttention(ctx, sh);
  const int64_t ws = DecodeAttentionWorkspaceFloats(sh.num_seqs, sh.n_heads, sh.head_dim,
                                                    sh.context, partition_tokens);
  b.workspace = Alloc<float>(static_cast<size_t>(std::max<int64_t>(ws, 1)));
  *kv_bytes = 2.0 * sh.num_seqs * sh.context * sh.n_kv_heads * sh.head_dim *
              (sh.kv == DType::kBF16 ? 2 : 4);
  // QK^T and PV: 4 d flops per (query head, key).
  const Work work{.bytes = *kv_bytes + static_cast<double>(b.q.bytes() + b.out.bytes()),
                  .flops = 4.0 * sh.num_seqs * sh.n_heads * sh.context * sh.head_dim};
  return TimeMs(ctx.stream, work, [&] {
    (void)PagedAttentionDecode(b.p, sh.context, b.workspace.data(), ws, ctx.s, partition_tokens);
  });
}

std::string DecodeAttentionName(const char* what, const AttentionShape& sh) {
  return Fmt("decode attention %sseqs=%d ctx=%d heads=%d/%d d=%d%s", what, sh.num_seqs, sh.context,
             sh.n_heads, sh.n_kv_heads, sh.head_dim, KvSuffix(sh));
}

void BenchDecodeAttention(Context& ctx, const AttentionShape& sh) {
  double kv_bytes = 0.0;
  const double ms = TimeDecodeAttention(ctx, sh, &kv_bytes);
  const double bw = kv_bytes / (ms * 1e-3);
  PrintRow(DecodeAttentionName("", sh), cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR",
           Fmt("%.0f GB/s", bw / 1e9), Fmt("copy %.0f GB/s", ctx.copy_bw / 1e9), bw / ctx.copy_bw);
}

// Batch-1 decode attention at a short context, where a launch is a few
// blocks and its time is latency, not bandwidth: microseconds per call
// against an elementwise launch (cuda::Add of `hidden` floats) timed the
// same way: about the floor any kernel of a decode step pays here.
void BenchDecodeAttentionLatency(Context& ctx, const AttentionShape& sh, int hidden) {
  double kv_bytes = 0.0;
  const double ms = TimeDecodeAttention(ctx, sh, &kv_bytes);
  DeviceBuffer<float> x = Alloc<float>(static_cast<size_t>(hidden));
  DeviceBuffer<float> y = Alloc<float>(static_cast<size_t>(hidden));
  cudaMemsetAsync(x.data(), 0, x.bytes(), ctx.stream);
  const Work add_work{.bytes = 3.0 * x.bytes()};
  const double floor_ms = TimeMs(ctx.stream, add_work, [&] {
    (void)Add({.a = x.data(), .b = x.data(), .y = y.data(), .n = hidden}, ctx.s);
  });
  PrintRow(DecodeAttentionName("latency ", sh),
           cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR", Fmt("%.2f us", ms * 1e3),
           Fmt("Add of %d floats %.2f us", hidden, floor_ms * 1e3), ms / floor_ms);
}

// One sequence at a long context, where the partition length decides how many
// blocks share its keys: microseconds per call in DecodePartitionTokens's
// partitions (64 tokens up to 4096) against the same call in 256-token ones
// (every context's cut before 2026-12-07). < 1: the shorter partitions win.
void BenchDecodeAttentionPartitions(Context& ctx, const AttentionShape& sh) {
  double kv_bytes = 0.0;
  const double ms = TimeDecodeAttention(ctx, sh, &kv_bytes);
  const double whole_ms = TimeDecodeAttention(ctx, sh, &kv_bytes, kDecodePartitionTokens);
  PrintRow(DecodeAttentionName("partitions ", sh),
           cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR",
           Fmt("%.2f us in %d-token partitions", ms * 1e3,
               DecodePartitionTokens(sh.num_seqs, sh.context)),
           Fmt("%d-token partitions %.2f us", kDecodePartitionTokens, whole_ms * 1e3),
           ms / whole_ms);
}

// Both prefill kernels: the f32 flash kernel and the tensor-core one.
void BenchPrefillAttention(Context& ctx, const AttentionShape& sh, double gemm_tflops,
                           const std::string& gemm_name) {
  AttentionBatch b = MakeAttention(ctx, sh);
  // QK^T and PV over the causal triangle: 4 * d flops per (query, visible key) pair per head.
  const double pairs = static_cast<double>(sh.q_len) * (sh.q_len + 1) / 2.0 +
                       static_cast<double>(sh.q_len) * (sh.context - sh.q_len);
  const double flops = 4.0 * sh.head_dim * sh.n_heads * pairs * sh.num_seqs;
  const double bytes =
      static_cast<double>(b.q.bytes() + b.out.bytes() + b.k_cache.bytes() + b.v_cache.bytes());
  for (bool tensor_cores : {false, true}) {
    const Work work{.bytes = bytes,
                    .flops = flops,
                    .peak_flops = tensor_cores ? kH100TensorCoreFlops : kH100CudaCoreFlops};
    const double ms = TimeMs(
        ctx.stream, work,
        [&] {
          (void)(tensor_cores ? PagedAttentionPrefill(b.p, ctx.s) : PagedAttention(b.p, ctx.s));
        },
        3, 10.0);
    const double tflops = flops / (ms * 1e-3) / 1e12;
    PrintRow(Fmt("prefill attention %s seqs=%d len=%d heads=%d/%d d=%d%s",
                 tensor_cores ? "tensor-core bf16" : "f32", sh.num_seqs, sh.q_len, sh.n_heads,
                 sh.n_kv_heads, sh.head_dim, KvSuffix(sh)),
             cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR", Fmt("%.2f TFLOP/s", tflops),
             Fmt("%s %.2f TFLOP/s", gemm_name.c_str(), gemm_tflops), tflops / gemm_tflops);
  }
}

// Dense bf16 GEMM rate at 4096^3: cuBLAS where present, else our mma kernel.
double DenseGemmTflops(Context& ctx, std::string* name) {
  const int n = 4096;
  DeviceBuffer<uint16_t> a = Alloc<uint16_t>(static_cast<size_t>(n) * n);
  DeviceBuffer<float> c = Alloc<float>(static_cast<size_t>(n) * n);
  FillTiled(a.data(), a.bytes(), RandomBf16Bytes(ctx.rng, 1 << 20));
  const Work work{.bytes = 8.0 * n * n,
                  .flops = 2.0 * n * n * static_cast<double>(n),
                  .peak_flops = kH100TensorCoreFlops};
  double ms;
  if (ctx.cublas->available()) {
    *name = "cuBLAS bf16 GEMM 4096^3";
    ms = TimeMs(ctx.stream, work,
                [&] { ctx.cublas->GemmBf16(a.data(), a.data(), c.data(), n, n, n, ctx.stream); });
  } else {
    *name = "our bf16 GEMM 4096^3";
    GemmBf16Params p{.a = a.data(), .b = a.data(), .c = c.data(), .m = n, .n = n, .k = n};
    ms = TimeMs(ctx.stream, work, [&] { (void)GemmBf16(p, ctx.s); });
  }
  return 2.0 * n * n * static_cast<double>(n) / (ms * 1e-3) / 1e12;
}

// `only`: run the benchmark families whose name contains it ("" = all).
int Main(bool quick, const std::string& only) {
  auto want = [&](const char* family) { return std::strstr(family, only.c_str()) != nullptr; };
  if (tpserve::kernels::cuda::DeviceCount() == 0) {
    std::printf("| bench: kernels | skipped: no CUDA device | | | n/a |\n");
    return 0;
  }
  std::fprintf(stderr, "device: %s\n", tpserve::kernels::cuda::DeviceDescription(0).c_str());
  CublasReference cublas;
  Context ctx{};
  cudaStreamCreate(&ctx.stream);
  ctx.s = Stream{.cuda_stream = ctx.stream};
  ctx.cublas = &cublas;
  ctx.copy_bw = MeasureCopyBandwidth(ctx.stream, size_t{1} << 30);
  PrintRow("copy bandwidth (D2D cudaMemcpy, 1 GiB)", "ok", Fmt("%.0f GB/s", ctx.copy_bw / 1e9), "-",
           1.0);

  const std::vector<int> ms =
      quick ? std::vector<int>{1, 64, 512} : std::vector<int>{1, 16, 64, 512, 4096};
  const std::vector<std::pair<int, int>> nks =
      quick ? std::vector<std::pair<int, int>>{{1536, 576}, {4096, 4096}}
            : std::vector<std::pair<int, int>>{{576, 576},   {1536, 576},   {576, 1536},
                                               {4096, 4096}, {14336, 4096}, {4096, 14336}};
  if (want("gemm")) {
    for (int m : ms) {
      for (auto [n, k] : nks) BenchGemm(ctx, m, n, k);
    }
    BenchQuantGemv(ctx, 1, 4096, 4096);
    BenchQuantGemv(ctx, 1, 14336, 4096);
    BenchQuantGemv(ctx, 16, 14336, 4096);
    BenchQuantGemv(ctx, 64, 14336, 4096);
    for (int m : {16, 32, 64}) {
      for (auto [n, k] : {std::pair{4096, 4096}, std::pair{14336, 4096}}) {
        BenchDecodeBatchPaths(ctx, m, n, k);
      }
    }
  }

  if (want("decode attention")) {
    BenchDecodeAttention(ctx, {64, 1, 2048, 32, 8, 128});
    BenchDecodeAttention(ctx, {1, 1, 16384, 32, 8, 128});
    BenchDecodeAttention(ctx, {16, 1, 1024, 9, 3, 64});
    // The 0.1B model of the 2026-12-05 Nsight Compute profile (docs/benchmarks.md,
    // "GPU"), at its 40-token context, and SmolLM2-135M's heads.
    BenchDecodeAttentionLatency(ctx, {1, 1, 40, 12, 4, 64}, 768);
    BenchDecodeAttentionLatency(ctx, {1, 1, 40, 9, 3, 64}, 576);
    // decode_bench's generated 1.1B model's heads, one sequence, bf16 cache
    // (the engine's default).
    for (int context : {1024, 4096}) {
      BenchDecodeAttentionPartitions(ctx, {1, 1, context, 32, 8, 64, DType::kBF16});
    }
  }

  if (want("prefill attention")) {
    std::string gemm_name;
    const double dense = DenseGemmTflops(ctx, &gemm_name);
    const int len = quick ? 1024 : 4096;
    BenchPrefillAttention(ctx, {1, len, len, 32, 8, 128}, dense, gemm_name);
    BenchPrefillAttention(ctx, {4, 512, 512, 9, 3, 64}, dense, gemm_name);
    // The same on a bf16 cache, the engine's default (--kv_dtype=auto).
    BenchPrefillAttention(ctx, {1, len, len, 32, 8, 128, DType::kBF16}, dense, gemm_name);
    BenchPrefillAttention(ctx, {4, 512, 512, 9, 3, 64, DType::kBF16}, dense, gemm_name);
  }

  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major == 9 && want("wgmma")) {
    for (int m : {512, 4096}) {
      for (auto [n, k] : nks) BenchWgmma(ctx, m, n, k);
    }
  }
  cudaStreamDestroy(ctx.stream);
  return 0;
}

}  // namespace
}  // namespace tpserve::kernels::cuda

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strncmp(argv[i], "--only=", 7) == 0) {
      only = argv[i] + 7;
    } else {
      std::fprintf(stderr, "kernel_bench: unknown argument %s (--quick, --only=FAMILY)\n", argv[i]);
      return 2;
    }
  }
  return tpserve::kernels::cuda::Main(quick, only);
}
