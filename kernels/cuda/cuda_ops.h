// CUDA backend launchers for the ops in kernels/ops.h, plus the CUDA-only
// entry points the engine uses on the fast paths. Pointers in the parameter
// structs are device pointers; launches are asynchronous on
// stream.cuda_stream (a cudaStream_t, null = legacy default stream). Each
// launcher validates shapes on the host (InvalidArgument) and reports launch
// errors as INTERNAL; it never synchronises and never allocates, so every
// call can be captured into a CUDA graph.
//
//   Stream stream{.cuda_stream = my_cuda_stream};
//   GemmParams p{.x = d_x, .w = d_w, .w_dtype = DType::kQ4_1, .y = d_y,
//                .m = 1, .n = 1536, .k = 576};
//   TPS_RETURN_IF_ERROR(cuda::Gemm(p, stream));
//
// The CPU backend (kernels/cpu/cpu_ops.h) is the reference each launcher is
// tested against (kernels/cuda/*_test.cc).
#ifndef TPSERVE_KERNELS_CUDA_CUDA_OPS_H_
#define TPSERVE_KERNELS_CUDA_CUDA_OPS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

// Whether the current device runs the programmatic launches that
// Stream::programmatic asks for (compute capability 9.0 or later; the CUDA
// emulator emulates them on any device). launch.cuh has the rules.
bool ProgrammaticLaunchSupported();

// ---- Same contract as kernels/cpu/cpu_ops.h, except for GEMM weights.

// Device ranges a kernel prefetches into L2 for a kernel after it (in a
// decode step, the next GEMV's weights: fixed while kernels run, so they may
// be read before the kernel's wait for its predecessor, launch.cuh). The
// kernel's blocks share the bytes out, range after range. A hint: sm_90
// issues cp.async.bulk.prefetch.L2, older parts do nothing; the emulator
// checks each range lies inside one device allocation (kernels/cuda/prefetch.cuh).
struct L2Prefetch {
  static constexpr int kMaxRanges = 4;
  const void* ptr[kMaxRanges] = {};
  int64_t bytes[kMaxRanges] = {};  // multiples of 16
  int ranges = 0;
  // Adds [p, p + bytes) rounded down to whole 16-byte units (p 16-byte
  // aligned); false, adding nothing, when kMaxRanges are taken already or
  // the ranges would pass 2^32 - 1 units (64 GiB) in all.
  bool Add(const void* p, int64_t n) {
    int64_t units = n / 16;
    for (int i = 0; i < ranges; ++i) units += bytes[i] / 16;
    if (ranges == kMaxRanges || units > int64_t{0xffffffff}) return false;
    if (n >= 16) {
      ptr[ranges] = p;
      bytes[ranges++] = n / 16 * 16;
    }
    return true;
  }
};

// Gemm and GemmSwiglu read w in the device layout of weight_layout.h: F32,
// F16 and BF16 rows as in dtype.h; Q8_0/Q4_0/Q4_1 as a 16-byte-aligned
// quant plane and a scale plane (PackDeviceWeight repacks dtype.h rows;
// InvalidArgument if a quantized w is not 16-byte aligned).
// m <= kSkinnyGemmMaxRows (decode): at m = 1, and for F32/F16 weights, the
// skinny GEMM, one warp per weight row dequantised in registers (fused
// Q8_0/Q4_0/Q4_1 decoding), x staged in shared memory, f32 math, up to 16
// activation rows per pass; at 2 <= m with Q8_0/Q4_0/Q4_1/BF16 weights the
// tensor-core decode kernel (gemm_mma.cu: exact weight values, x as two
// bf16 parts, NMSE vs f64 below 1e-9 like the skinny GEMM). Larger m (prefill): the tensor-core
// kernel, with x and the dequantised weights rounded to bf16 on their way into shared memory (f32
// accumulation; NMSE vs f64 ~3e-6, see gemm_test.cc). y_fixed set (any m): gemm_fixed.cu, per-chunk
// f32 partials summed in fixed point. The tensor-core decode kernel (2 <= m
// <= kSkinnyGemmMaxRows, the weight types above) also prefetches `prefetch`
// into L2 before it waits for x; the other paths ignore it (GemmFused's
// m = 1 kernels take it too).
[[nodiscard]] absl::Status Gemm(const GemmParams& p, const Stream& stream,
                                const L2Prefetch& prefetch = {});
// GemmViaBf16's bf16 copy of x (below), written by the kernel that computes
// x: row r at data + r * GemmViaBf16RowElems(dim), each value rounded to
// nearest even as GemmViaBf16 rounds it, the columns past dim zero. With
// `data` as its scratch, GemmViaBf16(x_in_scratch = true) then multiplies
// x without converting it: one launch, and an f32 write and read of x,
// fewer. RmsNorm, AddRmsNorm, Swiglu and PagedAttentionPrefill write their
// output so, instead of f32, when `data` is set (p.y / p.out are then not
// written; null where the op allows it); null data: f32 as usual.
struct Bf16Copy {
  uint16_t* data = nullptr;
};
[[nodiscard]] absl::Status RmsNorm(const RmsNormParams& p, const Stream& stream,
                                   const Bf16Copy& copy = {});
[[nodiscard]] absl::Status Rope(const RopeParams& p, const Stream& stream);
[[nodiscard]] absl::Status Swiglu(const SwigluParams& p, const Stream& stream,
                                  const Bf16Copy& copy = {});
[[nodiscard]] absl::Status Add(const AddParams& p, const Stream& stream);
[[nodiscard]] absl::Status AddFixedPoint(const AddFixedPointParams& p, const Stream& stream);
[[nodiscard]] absl::Status Embedding(const EmbeddingParams& p, const Stream& stream);
[[nodiscard]] absl::Status KvCacheWrite(const KvCacheWriteParams& p, const Stream& stream);
// Any mix of prefill chunks and decode tokens (flash-style, causal, GQA).
[[nodiscard]] absl::Status PagedAttention(const PagedAttentionParams& p, const Stream& stream);

// ---- CUDA-only fast paths.

// Rope followed by KvCacheWrite of the rotated k, in one launch (one block
// per token). `rope.k` must be `kv.k` (same tokens, heads and stride).
// Bit-identical to the two launches.
[[nodiscard]] absl::Status RopeKvWrite(const RopeParams& rope, const KvCacheWriteParams& kv,
                                       const Stream& stream);

// The residual add fused with the RMSNorm after it (one launch instead of
// two): x += residual in place, then y = RmsNorm(x) * weight. Bit-identical
// to Add followed by RmsNorm.
struct AddRmsNormParams {
  float* x = nullptr;               // (rows, dim), updated in place
  const float* residual = nullptr;  // (rows, dim)
  const float* weight = nullptr;    // (dim)
  float* y = nullptr;               // (rows, dim)
  int rows = 0;
  int dim = 0;
  float eps = 1e-5f;
};
[[nodiscard]] absl::Status AddRmsNorm(const AddRmsNormParams& p, const Stream& stream,
                                      const Bf16Copy& copy = {});

// PagedAttention on tensor cores for prefill-heavy batches: Q, K, V and the
// softmax probabilities rounded to bf16 (f32 scores, softmax and
// accumulation; NMSE vs the f32 kernel ~1e-5, attention_test.cc). Head dims
// 32, 64, 80, 96 and 128; any other takes the f32 PagedAttention. With
// `copy`, the output goes there as GemmViaBf16's bf16 copy (Bf16Copy;
// n_heads * head_dim a multiple of 32, so rows have no tail), not to p.out.
[[nodiscard]] absl::Status PagedAttentionPrefill(const PagedAttentionParams& p,
                                                 const Stream& stream, const Bf16Copy& copy = {});

// Activation rows up to which Gemm uses the skinny (GEMV-like) kernel.
inline constexpr int kSkinnyGemmMaxRows = 64;

// The gate/up projection fused with SwiGLU for decode-sized batches
// (m <= kSkinnyGemmMaxRows): w holds n = 2F rows, gate rows first then up
// rows; y (m, F) (row stride y_stride, 0 = F) gets silu(x.gate^T + bias) *
// (x.up^T + bias), bit-identical to Gemm into (m, 2F) followed by Swiglu.
// `prefetch` as Gemm's.
[[nodiscard]] absl::Status GemmSwiglu(const GemmParams& p, const Stream& stream,
                                      const L2Prefetch& prefetch = {});

// Batch-1 fusions of the skinny GEMM, for TP=1 decode (one launch where
// there were two): `norm` set, the GEMM reads RmsNorm(x) * norm (eps) where
// x is the residual stream row (dense, k values); `add_to_y`, it adds to y
// (y += x w^T + bias). Bit-identical (gemm_test: every weight type, k 96-4160,
// both staging paths) to RmsNorm then Gemm (or GemmSwiglu,
// `swiglu`), and to Gemm then Add. m must be 1; exactly one of the two.
struct GemmFusion {
  const float* norm = nullptr;  // (k) RMSNorm weight
  float eps = 1e-5f;
  bool add_to_y = false;
  L2Prefetch prefetch = {};  // issued by the GEMM's blocks before they wait for x
};
[[nodiscard]] absl::Status GemmFused(const GemmParams& p, const GemmFusion& f, bool swiglu,
                                     const Stream& stream);

// Which kernel multiplies GemmViaBf16's copies: GemmBf16 (mma.sync, any
// sm_80+ device) on copies of x and w (kMma); the same kernel on x's copy
// with Q8_0 / Q4_0 / Q4_1 weights read from their device layout and
// dequantised by its loader, without w's copy (kMmaDequant: kMma's bits by
// construction, compared on gemm_test_emu's cases; other weight types as
// kMma); GemmBf16Wgmma or GemmBf16WgmmaTma (sm_90 only; see
// WgmmaSupported; both dequantise Q8_0 / Q4_0 / Q4_1 themselves).
enum class Bf16Gemm { kMma, kMmaDequant, kWgmma, kWgmmaTma };

// y = x w^T (+ bias) through bf16 copies: x and w converted to bf16 rows in
// `scratch` (GemmViaBf16ScratchElems(m, n, k) elements, 16-byte aligned),
// then GemmBf16's cp.async kernel on them (or GemmBf16Wgmma's, `gemm`; the
// emulator gives both the same bits, a GPU need not). The values and the mma order are
// those of Gemm's prefill kernel (same conversions, same tile code), so the
// result should have GemmTensorCore's bits at any m (Gemm's above
// kSkinnyGemmMaxRows): by construction, and compared bit for bit on 24
// emulator cases (gemm_test, ViaBf16CopiesGiveThePrefillKernelsBits), not
// on a GPU. For prefill: on the 2026-12-05 H100 run the cp.async
// kernel ran at 2.0-2.9x the converting kernel's rate on kernel_bench's
// m = 512 and 4096 shapes (gemm mma bf16 vs f32 x Q4_1 rows). y_fixed is
// not supported. `x_in_scratch`: scratch already holds x's copy, from a call
// on the same x, m, k and x_stride (the previous part of one linear) or
// from the kernel that computed x (Bf16Copy), so only w is converted. BF16 weights with k a
// multiple of 32 (and 16-byte aligned) are multiplied in place, without a copy.
[[nodiscard]] absl::Status GemmViaBf16(const GemmParams& p, uint16_t* scratch, const Stream& stream,
                                       Bf16Gemm gemm = Bf16Gemm::kMma, bool x_in_scratch = false);
[[nodiscard]] int64_t GemmViaBf16ScratchElems(int m, int n, int k);
// Elements per row of GemmViaBf16's copies: k rounded up to 32 (the tail zero).
[[nodiscard]] int64_t GemmViaBf16RowElems(int k);

// The skinny GEMM at any m <= kSkinnyGemmMaxRows and any weight type: what
// Gemm runs at m = 1 and for F32/F16 weights, and ran at every decode m
// before the tensor-core decode kernel. kernel_bench's baseline for that
// kernel; y_fixed is not supported.
[[nodiscard]] absl::Status GemmSkinny(const GemmParams& p, const Stream& stream);

// y = x w^T (+ bias) on the tensor-core path at any m: what Gemm runs above
// kSkinnyGemmMaxRows (x and w rounded to bf16, f32 accumulation). Not on the
// engine's path; kernel_bench compares it with the skinny GEMM at decode
// batch sizes. y_fixed is not supported.
[[nodiscard]] absl::Status GemmTensorCore(const GemmParams& p, const Stream& stream);

// Tensor-core GEMM: c (m, n) f32 = a (m, k) bf16 . b (n, k)^T bf16, f32
// accumulation (mma.sync m16n8k16; runs on sm_80 and sm_90). k % 8 == 0.
// Not on the engine's path (Gemm's m > kSkinnyGemmMaxRows path runs the same
// tile code with converting loaders, gemm_tc.cu): GemmBf16 and ToBf16 stay
// for kernel_bench's bf16-in comparison with cuBLAS (scripts/gpu_check.sh)
// and gemm_bf16_test, which check the tile code on plain bf16 inputs.
struct GemmBf16Params {
  const uint16_t* a = nullptr;  // (m, k) bf16 bits, dense
  const uint16_t* b = nullptr;  // (n, k) bf16 bits, dense
  const float* bias = nullptr;  // (n) or null
  float* c = nullptr;           // (m, n); row i at c + i * c_stride
  int m = 0;
  int n = 0;
  int k = 0;
  int64_t c_stride = 0;  // 0 = n
};
[[nodiscard]] absl::Status GemmBf16(const GemmBf16Params& p, const Stream& stream);
// The same on Hopper with wgmma (gemm_wgmma.cu). EXPERIMENTAL: its first
// version passed gemm_wgmma_test on an H100 (2026-12-05) at 0.20-0.79 of
// cuBLAS's speed; this one (two warpgroups, wgmmas overlapped with the next
// k tile's) has run only under the emulator, so the engine takes it only
// when asked (EngineOptions::cuda_prefill_gemm). FAILED_PRECONDITION on anything
// but an sm_90 device.
[[nodiscard]] absl::Status GemmBf16Wgmma(const GemmBf16Params& p, const Stream& stream);
// The same, warp-specialised: TMA tile loads by a producer warpgroup feeding
// two consumer warpgroups through mbarriers (gemm_wgmma.cu). EXPERIMENTAL:
// checked only under the emulator (gemm_wgmma_test_emu), so the engine
// takes it only when asked (EngineOptions::cuda_prefill_gemm "wgmma_tma");
// kernel_bench's `gemm wgmma tma` rows measure it against cuBLAS and
// GemmBf16Wgmma. FAILED_PRECONDITION on anything but sm_90.
[[nodiscard]] absl::Status GemmBf16WgmmaTma(const GemmBf16Params& p, const Stream& stream);
// Whether the current device runs GemmBf16Wgmma (compute capability 9.x).
[[nodiscard]] bool WgmmaSupported();

// Converts `rows` rows of `cols` values in `dtype` (row r at
// src + r * src_row_bytes, 0 = RowBytes(dtype, cols)) to dense bf16 bits:
// activations before GemmBf16, and weights (dequantised once) for prefill.
struct ToBf16Params {
  const void* src = nullptr;
  DType dtype = DType::kF32;
  uint16_t* dst = nullptr;  // (rows, cols) bf16 bits
  int rows = 0;
  int cols = 0;  // a multiple of 32 for quantized dtype
  int64_t src_row_bytes = 0;
};
[[nodiscard]] absl::Status ToBf16(const ToBf16Params& p, const Stream& stream);

// Split-KV decode attention for a batch where every sequence has exactly one
// query (cu_q_lens[s+1] - cu_q_lens[s] == 1) and no context exceeds
// `max_context_len` (= start_pos[s] + 1). The context is cut into
// partitions of DecodePartitionTokens(num_seqs, max_context_len) tokens
// processed by separate blocks and merged by a second kernel; `workspace`
// holds the partial results. `partition_tokens` (1 to
// kDecodePartitionTokens; 0 keeps DecodePartitionTokens's) overrides that
// length, for benchmarks and tests.
inline constexpr int kDecodePartitionTokens = 256;
// kDecodePartitionTokens, except for one sequence whose context spans more
// than one such partition: there, the power of two from 64 to
// kDecodePartitionTokens that cuts it into at most 64 partitions (so 64
// tokens up to 4096, 128 up to 8192). A lone sequence's attention otherwise
// runs on a block per 256 tokens and KV head (8 blocks of 132 SMs for 4 KV
// heads at 512 tokens), each walking its keys in sequence; in shorter
// partitions more blocks share the walk. Depends on the batch and context
// only, never on the heads, so tensor-parallel ranks cut alike.
inline int DecodePartitionTokens(int num_seqs, int max_context_len) {
  if (num_seqs != 1 || max_context_len <= kDecodePartitionTokens) return kDecodePartitionTokens;
  int tokens = 64;
  while (tokens < kDecodePartitionTokens && (max_context_len + tokens - 1) / tokens > 64) {
    tokens *= 2;
  }
  return tokens;
}
int64_t DecodeAttentionWorkspaceFloats(int num_seqs, int n_heads, int head_dim, int max_context_len,
                                       int partition_tokens = 0);
[[nodiscard]] absl::Status PagedAttentionDecode(const PagedAttentionParams& p, int max_context_len,
                                                float* workspace, int64_t workspace_floats,
                                                const Stream& stream, int partition_tokens = 0);
// The same with the step's RoPE and KV-cache write fused in, in place of a
// RopeKvWrite launch before it: p.q (= fuse.rope.q) and fuse.kv.k hold the
// unrotated rows, one token per sequence. Each block rotates its q heads
// and, in the partition holding the new key, that key's k; the first block
// of each KV head stores k and v in the token's slot; the new key is read
// from shared memory, rounded as the cache holds it. The outputs and cache
// had RopeKvWrite + PagedAttentionDecode's bits in all 12 cases of
// attention_test's FusedRopeGivesTheUnfusedBits (emulator, 2026-12-06);
// q and k are left unrotated in their buffers.
struct DecodeRopeKvWrite {
  RopeParams rope;
  KvCacheWriteParams kv;
};
[[nodiscard]] absl::Status PagedAttentionDecode(const PagedAttentionParams& p, int max_context_len,
                                                float* workspace, int64_t workspace_floats,
                                                const DecodeRopeKvWrite& fuse,
                                                const Stream& stream);

// One layer of a batch-1 decode step for DecodeStepPersistent: device
// pointers to its weights in weight_layout.h's layout (biases may be null),
// its norms and its KV cache. The kernel reads the norms with 16-byte loads:
// they must be 16-byte aligned (cudaMalloc'd buffers are).
struct DecodeLayerPointers {
  const void* qkv = nullptr;
  const float* qkv_bias = nullptr;
  const void* o = nullptr;
  const float* o_bias = nullptr;
  const void* gate_up = nullptr;  // gate rows, then up rows
  const float* gate_up_bias = nullptr;
  const void* down = nullptr;
  const float* down_bias = nullptr;
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  // The weights' bytes, multiples of 16 (PersistentDecodeParams::l2_prefetch).
  int64_t qkv_bytes = 0, o_bytes = 0, gate_up_bytes = 0, down_bytes = 0;
};

// Every layer of a one-sequence, one-token decode step on one rank in one
// cooperative launch (cooperative.cuh): per layer, QKV with the attention
// norm inside, attention with RoPE and the KV write inside (and its merge
// when the context spans several partitions), O with the residual add,
// gate/up with the FFN norm and SwiGLU, down with the add, each a phase
// ending at a grid barrier instead of a kernel boundary. The blocks loop
// over the blocks the per-kernel launches would have (skinny_gemm.cuh,
// decode_attention.cuh: the same code), so the result has the per-kernel
// step's bits by construction. Which is faster, a grid barrier or a kernel
// boundary, is what fusion_bench and decode_bench measure on a device.
struct PersistentDecodeParams {
  const DecodeLayerPointers* layers = nullptr;  // device array of num_layers
  int num_layers = 0;
  DType w_dtype = DType::kQ4_1;  // every layer's four linears
  int hidden = 0, q_dim = 0, qkv_dim = 0, ffn = 0;
  float eps = 1e-5f;      // RMSNorm
  float* x = nullptr;     // (hidden) the residual stream: the step's input and output
  float* qkv = nullptr;   // (qkv_dim)
  float* attn = nullptr;  // (q_dim)
  float* act = nullptr;   // (ffn)
  // The first layer's attention as PagedAttentionDecode would take it (q in
  // qkv, out = attn, one sequence), with its fused RoPE and KV write; each
  // layer's k_cache and v_cache come from `layers` instead.
  PagedAttentionParams attention = {};
  DecodeRopeKvWrite rope_kv = {};
  int max_context = 0;
  float* workspace = nullptr;  // DecodeAttentionWorkspaceFloats(1, ...)
  int64_t workspace_floats = 0;
  // Each GEMV phase also prefetches the next GEMV's weights into L2 (O in
  // QKV's, gate/up in O's, down in gate/up's, the next layer's QKV in
  // down's; prefetch.cuh, sm_90 only), as the per-kernel step's GEMVs do
  // with the same flag (EngineOptions::cuda_l2_prefetch).
  bool l2_prefetch = false;
};
// Whether DecodeStepPersistent runs these: Q8_0, Q4_0 or Q4_1 weights,
// head_dim <= 128, an f32 or bf16 KV cache, on a device with cooperative
// launches (false without a device).
[[nodiscard]] bool PersistentDecodeSupports(DType w_dtype, int head_dim, DType kv_dtype);
[[nodiscard]] absl::Status DecodeStepPersistent(const PersistentDecodeParams& p,
                                                const Stream& stream);

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_CUDA_OPS_H_
