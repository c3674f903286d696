// Kernel API shared by every backend: one plain parameter struct per op, every
// field commented with its shape. Backends implement a launcher per struct
// with the same name and signature in their own namespace:
//
//   absl::Status tpserve::kernels::cpu::Gemm(const GemmParams&, const Stream&);
//   absl::Status tpserve::kernels::cuda::Gemm(const GemmParams&, const Stream&);
//
// (see kernels/cpu/cpu_ops.h). Launchers validate shapes and return
// InvalidArgument for inconsistent parameters; they never allocate the
// tensors they are given. Pointers are host pointers for the CPU backend and
// device pointers for CUDA. Everything is row-major and densely packed unless
// a `*_stride` field says otherwise (a stride of 0 means "dense").
//
// Example, one decode GEMV y = W x for a Q4_1 (1536, 576) weight:
//
//   GemmParams p;
//   p.x = x; p.w = w_up; p.w_dtype = DType::kQ4_1; p.y = y;
//   p.m = 1; p.n = 1536; p.k = 576;
//   TPS_RETURN_IF_ERROR(cpu::Gemm(p, stream));
//
// This header is dependency-free (only formats/dtype.h and
// formats/rope_scaling.h, themselves dependency-free).
#ifndef TPSERVE_KERNELS_OPS_H_
#define TPSERVE_KERNELS_OPS_H_

#include <cstdint>

#include "formats/dtype.h"
#include "formats/rope_scaling.h"

namespace tpserve::kernels {

class ThreadPool;  // kernels/cpu/thread_pool.h

// Where a launch runs. CPU: `pool` splits the work (null runs on the calling
// thread). CUDA: `cuda_stream` is the cudaStream_t (null = legacy default);
// `programmatic`: the decode-path kernels launch with programmatic dependent
// launch where the device has it (kernels/cuda/launch.cuh), so each may
// start while the kernel before it on the stream finishes.
struct Stream {
  ThreadPool* pool = nullptr;
  void* cuda_stream = nullptr;
  bool programmatic = false;
};

// y = x W^T (+ bias): a linear layer. m = 1..few is a GEMV (decode), large m
// is prefill. Quantized weights are multiplied as quantized blocks: the CPU
// backend quantizes each activation row to 8-bit blocks of 32 (per block
// d = amax / 127 in f32, q = round-half-even(x * (1 / d))) and takes integer
// dot products, so for Q8_0/Q4_0/Q4_1 weights results differ from f32 math
// by that activation rounding (NMSE ~1e-5 on random data; gemm_test.cc).
// F32/F16/BF16 weights are converted to f32 and use f32 FMA. `exact` makes
// quantized weights dequantise-then-multiply in f32 too: slower, meant as
// the reference other backends are compared against.
//
// Partition-invariant output (`y_fixed` set; y is then not written): the
// reduction over k is cut into fixed chunks of columns (one quantization
// block of 32 for quantized w_dtype, `fixed_chunk` columns for F32/F16/BF16),
// each chunk's partial dot product becomes an integer, round(partial *
// 2^kFixedPointShift) (clamped to +-2^51), and the integers are summed (mod
// 2^64). A chunk's partial depends only on its own columns, and integer sums
// do not depend on their order, so splitting k among tensor-parallel ranks
// (at chunk boundaries) and summing the ranks' y_fixed with an int64
// all-reduce gives the same bits as one rank doing all of k. AddFixedPoint
// turns the sum back into floats. Bias must be null (a row-parallel layer
// adds its bias once, after the reduction).
struct GemmParams {
  const float* x = nullptr;  // (m, k) activations; row i at x + i * x_stride
  const void* w = nullptr;   // (n, k) weights in w_dtype; row j at w + j * RowBytes(w_dtype, k)
  DType w_dtype = DType::kF32;
  const float* bias = nullptr;  // (n) added to every output row, or null
  float* y = nullptr;           // (m, n) output; row i at y + i * y_stride. Must not alias x.
  int m = 0;                    // activation rows (tokens)
  int n = 0;                    // output features (weight rows)
  int k = 0;                    // input features; a multiple of 32 for quantized w_dtype
  int64_t x_stride = 0;         // floats between rows of x; 0 = k
  int64_t y_stride = 0;         // floats between rows of y; 0 = n
  bool exact = false;           // quantized w_dtype: f32 activations, no 8-bit rounding
  int64_t* y_fixed = nullptr;   // (m, n) partition-invariant output at y_stride, or null
  int fixed_chunk = 32;         // y_fixed, F32/F16/BF16 w_dtype: columns per chunk; divides k
};

// Fractional bits of GemmParams::y_fixed: resolution 2^-32 (2.3e-10), chunk
// partials exact up to |2^51 / 2^32| = 2^19, sums up to 2^31.
constexpr int kFixedPointShift = 32;

// y = float(double(a) + double(b) * 2^-kFixedPointShift): the residual add of
// a partition-invariant row-parallel output (GemmParams::y_fixed), rounded
// once. y may equal a.
struct AddFixedPointParams {
  const float* a = nullptr;    // (n)
  const int64_t* b = nullptr;  // (n) fixed-point values
  float* y = nullptr;          // (n)
  int64_t n = 0;
};

// y = x / sqrt(mean(x^2) + eps) * weight, per row. In place (y == x) is fine.
struct RmsNormParams {
  const float* x = nullptr;       // (rows, dim)
  const float* weight = nullptr;  // (dim) f32 gain
  float* y = nullptr;             // (rows, dim); may equal x
  int rows = 0;
  int dim = 0;
  float eps = 1e-5f;
};

// Rotary position embedding, applied in place to q and k. Pair i of a head
// (i in [0, head_dim/2)) rotates by angle pos * inv_freq(i) where
//   inv_freq(i) = theta^(-2i/head_dim), then rescaled:
//   kLinear: inv_freq / factor
//   kLlama3: wavelen = 2*pi/inv_freq; wavelen > orig/low_freq_factor -> /factor;
//            wavelen < orig/high_freq_factor -> unchanged; else smoothly mixed
//            with s = (orig/wavelen - low) / (high - low):
//            (1 - s) * inv_freq / factor + s * inv_freq.
// Pairs: neox=false -> (x[2i], x[2i+1]) (llama.cpp "llama" GGUF layout);
//        neox=true  -> (x[i], x[i + head_dim/2]) (Hugging Face rotate_half).
// The CPU backend evaluates angles in double precision.
struct RopeParams {
  float* q = nullptr;  // (tokens, n_heads, head_dim); token t at q + t * q_stride
  float* k = nullptr;  // (tokens, n_kv_heads, head_dim) at k + t * k_stride, or null
  const int32_t* positions = nullptr;  // (tokens) absolute position of each token
  int tokens = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;          // even
  int64_t q_stride = 0;      // floats between tokens of q; 0 = n_heads * head_dim
  int64_t k_stride = 0;      // floats between tokens of k; 0 = n_kv_heads * head_dim
  float theta = 10000.0f;    // rope_freq_base
  bool neox = false;         // pairing, see above
  RopeScaling scaling = {};  // formats/rope_scaling.h; kNone ignores its factors
};

// out = silu(gate) * up, elementwise; silu(g) = g / (1 + exp(-g)).
// out may equal gate or up.
struct SwigluParams {
  const float* gate = nullptr;  // (rows, dim); row r at gate + r * gate_stride
  const float* up = nullptr;    // (rows, dim); row r at up + r * up_stride
  float* out = nullptr;         // (rows, dim) dense
  int rows = 0;
  int dim = 0;
  int64_t gate_stride = 0;  // 0 = dim
  int64_t up_stride = 0;    // 0 = dim
};

// y = a + b elementwise (the residual add). y may equal a or b.
struct AddParams {
  const float* a = nullptr;  // (n)
  const float* b = nullptr;  // (n)
  float* y = nullptr;        // (n)
  int64_t n = 0;
};

// out[t] = dequantised table row tokens[t] - row_offset. For a
// vocabulary-parallel shard holding rows [row_offset, row_offset + rows),
// tokens outside that range produce a zero row (the all-reduce sums shards).
// A -0 in the table comes out as +0, as it would after that all-reduce.
struct EmbeddingParams {
  const void* table = nullptr;  // (rows, dim) in dtype; row r at table + r * RowBytes(dtype, dim)
  DType dtype = DType::kF32;
  const int32_t* tokens = nullptr;  // (num_tokens) token ids
  float* out = nullptr;             // (num_tokens, dim)
  int num_tokens = 0;
  int dim = 0;         // a multiple of 32 for quantized dtype
  int rows = 0;        // rows held in this table
  int row_offset = 0;  // global id of table row 0
};

// ---- Paged KV cache.
//
// Per layer, K and V each live in their own pool of fixed-size blocks:
//   cache[num_blocks][block_size][n_kv_heads][head_dim]  in kv_dtype
// kv_dtype is kF32 (float elements) or kBF16 (uint16_t bf16 bit patterns,
// half the bytes per token); nothing else. Token slot s = block_id *
// block_size + offset holds one token's K (or V) for all KV heads at element
// s * n_kv_heads * head_dim. A sequence's block table lists its block ids in
// position order: position p lives in block block_table[p / block_size] at
// offset p % block_size. Both backends take both dtypes and write the same
// bits (InvalidArgument for any other dtype).

// Stores new K/V rows into their slots: cache[slot_mapping[t]] = k[t] (same
// for v), rounded to nearest even for kBF16 (formats/dtype.h F32ToBF16).
// slot_mapping[t] < 0 skips token t (padding).
struct KvCacheWriteParams {
  const float* k = nullptr;      // (tokens, n_kv_heads, head_dim); token t at k + t * k_stride
  const float* v = nullptr;      // (tokens, n_kv_heads, head_dim); token t at v + t * v_stride
  void* k_cache = nullptr;       // (num_blocks, block_size, n_kv_heads, head_dim) in kv_dtype
  void* v_cache = nullptr;       // (num_blocks, block_size, n_kv_heads, head_dim) in kv_dtype
  DType kv_dtype = DType::kF32;  // kF32 or kBF16
  const int64_t* slot_mapping = nullptr;  // (tokens) block_id * block_size + offset, or < 0
  int tokens = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  int num_blocks = 0;
  int64_t k_stride = 0;  // floats between tokens of k; 0 = n_kv_heads * head_dim
  int64_t v_stride = 0;  // 0 = n_kv_heads * head_dim
};

// Causal attention over the paged cache for a ragged batch of sequences,
// prefill chunks and decode tokens mixed. Sequence s owns query rows
// [cu_q_lens[s], cu_q_lens[s+1]) at positions start_pos[s] + 0, 1, ...; its
// query at position p attends to cached positions [0, p] (the new tokens'
// K/V must already be written with KvCacheWrite). Query head h reads KV head
// h / (n_heads / n_kv_heads) (GQA). out = softmax(scale * q k^T) v, in f32
// whatever kv_dtype holds (bf16 K/V are widened exactly to f32 as loaded).
struct PagedAttentionParams {
  const float* q = nullptr;       // (total_q, n_heads, head_dim); row t at q + t * q_stride
  const void* k_cache = nullptr;  // (num_blocks, block_size, n_kv_heads, head_dim) in kv_dtype
  const void* v_cache = nullptr;  // (num_blocks, block_size, n_kv_heads, head_dim) in kv_dtype
  DType kv_dtype = DType::kF32;   // kF32 or kBF16
  float* out = nullptr;           // (total_q, n_heads, head_dim) dense; must not alias q
  const int32_t* block_tables = nullptr;  // (num_seqs, max_blocks_per_seq) block ids
  const int32_t* cu_q_lens = nullptr;     // (num_seqs + 1) prefix sums of query lengths, [0] = 0
  const int32_t* start_pos = nullptr;     // (num_seqs) position of each sequence's first query
  int num_seqs = 0;
  int max_blocks_per_seq = 0;  // row length of block_tables
  int n_heads = 0;             // query heads; a multiple of n_kv_heads
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;    // tokens per block
  int num_blocks = 0;    // blocks in the pool (ids are checked against it)
  int64_t q_stride = 0;  // floats between rows of q; 0 = n_heads * head_dim
  float scale = 0.0f;    // softmax scale, usually 1 / sqrt(head_dim)
};

}  // namespace tpserve::kernels

#endif  // TPSERVE_KERNELS_OPS_H_
