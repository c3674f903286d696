// cuda::DecodeStepPersistent: a batch-1 decode step's layers in one
// cooperative launch (cuda_ops.h). Each of a layer's five kernels of the
// per-kernel step (layer_enqueue.cc's fused batch-1 path) becomes a phase:
// the grid's blocks loop over the blocks that kernel would have launched,
// running the same block code (skinny_gemm.cuh, decode_attention.cuh), and
// the phase ends at a grid barrier where the kernel would have ended. So a
// step is 5 (6 when the context spans several attention partitions) grid
// barriers per layer and one launch, instead of 5-6 launches per layer,
// with the per-kernel step's bits by construction (cuda_engine_parity_test
// compares them under the emulator).
//
// Whether a grid barrier costs less than a kernel boundary with programmatic
// dependent launch on an H100 is not known here: fusion_bench measures the
// two on the same GEMVs, decode_bench this kernel against the per-kernel
// step (docs/benchmarks.md). Not measured on a GPU yet.
//
// Instantiated for Q8_0, Q4_0 and Q4_1 weights, head_dim <= 128 and an f32
// or bf16 KV cache (12 kernels); the heads a block scores together (1, 2, 4
// or 8) are a switch inside. Other shapes take the per-kernel step.
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cooperative.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/decode_attention.cuh"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/skinny_gemm.cuh"

namespace tpserve::kernels::cuda {
namespace {

namespace da = decode_attention;

constexpr int kThreads = kWarpsPerBlock<1> * 32;
static_assert(kThreads == da::kThreads, "the GEMV and attention blocks have the same threads");

template <typename KvT>
struct PersistentArgs {
  const DecodeLayerPointers* layers;
  int num_layers;
  int hidden, q_dim, qkv_dim, ffn;
  float eps;
  float* x;
  float* qkv;
  float* attn;
  float* act;
  da::DecodeArgs<KvT> attention;  // its kv caches unused: each layer's from `layers`
  int heads_per_block;            // rounded up to 1, 2, 4 or 8 (kGroup)
  bool l2_prefetch;
};

// [p, p + bytes) as a prefetch for the next phase, or nothing when `on` is false.
__device__ __forceinline__ L2Prefetch NextWeights(bool on, const void* p, int64_t bytes) {
  L2Prefetch r;
  if (on && p != nullptr && bytes >= 16) {
    r.ptr[0] = p;
    r.bytes[0] = bytes;
    r.ranges = 1;
  }
  return r;
}

template <DType kW>
constexpr bool kPersistentWeight = kW == DType::kQ8_0 || kW == DType::kQ4_0 || kW == DType::kQ4_1;

// y (n) = x (k) w^T (+ bias) with kFusion, as GemmFused launches it at
// m = 1 with 16-byte aligned rows; kSwiglu: n = 2 x the outputs. The blocks
// share `next` out among themselves as the launch's blocks would.
template <DType kW, bool kSwiglu, Fusion kFusion>
__device__ __noinline__ void GemvPhase(const float* x, const void* w, const float* bias, float* y,
                                       int n, int k, const float* norm, float eps,
                                       const L2Prefetch& next) {
  constexpr int kWarps = kWarpsPerBlock<1>;
  const int cols = kSwiglu ? n / 2 : n;
  const int blocks = (cols + kWarps - 1) / kWarps;
  // x in one tile: staged (and normalised) once per thread block and phase,
  // not once per block of the per-kernel launch; longer rows are staged
  // tile by tile, each time.
  const bool one_tile = k <= kTileValues<1>;
  for (int b = blockIdx.x; b < blocks; b += gridDim.x) {
    SkinnyGemmBlock<kW, 1, true, kSwiglu, kFusion, XWriter::kSameLaunch>(
        x, w, bias, y, 1, n, k, k, cols, norm, eps, next, b, 0, b, blocks,
        one_tile && b != static_cast<int>(blockIdx.x));
    __syncthreads();  // the next block may restage shared memory
  }
}

// Attention over the step's one sequence: the partitions, then (several
// partitions) a grid barrier and their merge.
template <int kDimsPerLane, int kGroup, typename KvT>
__device__ __noinline__ void AttentionPhase(const da::DecodeArgs<KvT>& a, KvT* k_cache,
                                            KvT* v_cache) {
  const int group_blocks = a.n_heads / a.group * da::GroupChunks(a.group);
  const int blocks = group_blocks * a.num_parts;
  for (int b = blockIdx.x; b < blocks; b += gridDim.x) {
    da::DecodePartitionBlock<kDimsPerLane, kGroup>(a, k_cache, v_cache, b % group_blocks, 0,
                                                   b / group_blocks);
    __syncthreads();
  }
  if (a.partial == nullptr) return;  // grid-uniform
  GridSync();
  for (int head = blockIdx.x; head < a.n_heads; head += gridDim.x) da::DecodeMergeBlock(a, 0, head);
}

template <DType kW, int kDimsPerLane, typename KvT>
__global__ void __launch_bounds__(kThreads, 2) PersistentDecodeKernel(PersistentArgs<KvT> a) {
  for (int l = 0; l < a.num_layers; ++l) {
    const DecodeLayerPointers& w = a.layers[l];  // read where used: nothing held across phases
    const bool pf = a.l2_prefetch;
    GemvPhase<kW, false, Fusion::kNormX>(a.x, w.qkv, w.qkv_bias, a.qkv, a.qkv_dim, a.hidden,
                                         w.attn_norm, a.eps, NextWeights(pf, w.o, w.o_bytes));
    GridSync();
    KvT* k_cache = static_cast<KvT*>(w.k_cache);
    KvT* v_cache = static_cast<KvT*>(w.v_cache);
    switch (a.heads_per_block) {
      case 1:
        AttentionPhase<kDimsPerLane, 1>(a.attention, k_cache, v_cache);
        break;
      case 2:
        AttentionPhase<kDimsPerLane, 2>(a.attention, k_cache, v_cache);
        break;
      case 4:
        AttentionPhase<kDimsPerLane, 4>(a.attention, k_cache, v_cache);
        break;
      default:
        AttentionPhase<kDimsPerLane, 8>(a.attention, k_cache, v_cache);
        break;
    }
    GridSync();
    GemvPhase<kW, false, Fusion::kAddToY>(a.attn, w.o, w.o_bias, a.x, a.hidden, a.q_dim, nullptr,
                                          a.eps, NextWeights(pf, w.gate_up, w.gate_up_bytes));
    GridSync();
    GemvPhase<kW, true, Fusion::kNormX>(a.x, w.gate_up, w.gate_up_bias, a.act, 2 * a.ffn, a.hidden,
                                        w.ffn_norm, a.eps, NextWeights(pf, w.down, w.down_bytes));
    GridSync();
    const bool last = l + 1 == a.num_layers;
    GemvPhase<kW, false, Fusion::kAddToY>(
        a.act, w.down, w.down_bias, a.x, a.hidden, a.ffn, nullptr, a.eps,
        NextWeights(pf && !last, last ? nullptr : a.layers[l + 1].qkv,
                    last ? 0 : a.layers[l + 1].qkv_bytes));
    GridSync();
  }
}

template <int kDimsPerLane>
constexpr size_t PersistentSharedBytes() {
  const size_t gemv = SkinnyGemmSharedBytes<1, Fusion::kNormX>();
  const size_t attention = da::PartitionSharedBytes<kDimsPerLane>();
  return gemv > attention ? gemv : attention;
}
static_assert(PersistentSharedBytes<4>() <= 48 * 1024, "above 48 KiB would need an opt-in");

// kGroup for a GQA group of `group` query heads (LaunchPartitionsForGroup's choice).
int HeadsPerBlock(int group) {
  const int heads = group < da::kMaxGroup ? group : da::kMaxGroup;
  return heads <= 2 ? heads : heads <= 4 ? 4 : da::kMaxGroup;
}

template <DType kW, int kDimsPerLane, typename KvT>
absl::Status Launch(const PersistentDecodeParams& p, const da::DecodeArgs<KvT>& attention,
                    cudaStream_t stream) {
  constexpr size_t kShared = PersistentSharedBytes<kDimsPerLane>();
  const int blocks =
      CooperativeBlocks(PersistentDecodeKernel<kW, kDimsPerLane, KvT>, kThreads, kShared);
  if (blocks == 0) {
    return absl::FailedPreconditionError(
        "DecodeStepPersistent: this device runs no cooperative launch of the kernel");
  }
  const PersistentArgs<KvT> a{p.layers,
                              p.num_layers,
                              p.hidden,
                              p.q_dim,
                              p.qkv_dim,
                              p.ffn,
                              p.eps,
                              p.x,
                              p.qkv,
                              p.attn,
                              p.act,
                              attention,
                              HeadsPerBlock(attention.group),
                              p.l2_prefetch};
  LaunchCooperative("PersistentDecodeKernel", PersistentDecodeKernel<kW, kDimsPerLane, KvT>, blocks,
                    kThreads, kShared, stream, a);
  return LaunchStatus("PersistentDecodeKernel");
}

// The weight types, head dims and KV dtypes the kernel is instantiated for.
bool Instantiated(DType w_dtype, int head_dim, DType kv_dtype) {
  return (w_dtype == DType::kQ8_0 || w_dtype == DType::kQ4_0 || w_dtype == DType::kQ4_1) &&
         head_dim > 0 && head_dim <= 128 && (kv_dtype == DType::kF32 || kv_dtype == DType::kBF16);
}

bool CooperativeDevice() {
  int device = 0, cooperative = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return cooperative != 0;
}

absl::Status Unsupported(const PersistentDecodeParams& p) {
  return absl::InvalidArgumentError(absl::StrCat(
      "DecodeStepPersistent: needs Q8_0, Q4_0 or Q4_1 weights, head_dim <= 128 and an f32 or "
      "bf16 KV cache; got ",
      DTypeName(p.w_dtype), " weights, head_dim ", p.attention.head_dim, ", ",
      DTypeName(p.attention.kv_dtype), " KV cache"));
}

// Everything but the device: checked first, so that bad arguments are named
// as such on any machine.
absl::Status CheckParams(const PersistentDecodeParams& p) {
  if (!Instantiated(p.w_dtype, p.attention.head_dim, p.attention.kv_dtype)) return Unsupported(p);
  if (p.layers == nullptr || p.num_layers <= 0 || p.hidden <= 0 || p.q_dim <= 0 ||
      p.qkv_dim < p.q_dim || p.ffn <= 0) {
    return absl::InvalidArgumentError("DecodeStepPersistent: bad shape or no layers");
  }
  if (p.hidden % 32 != 0 || p.q_dim % 32 != 0 || p.ffn % 32 != 0) {
    return absl::InvalidArgumentError(
        "DecodeStepPersistent: hidden, q_dim and ffn must be multiples of 32 (quantized rows)");
  }
  for (const void* ptr : {static_cast<const void*>(p.x), static_cast<const void*>(p.qkv),
                          static_cast<const void*>(p.attn), static_cast<const void*>(p.act)}) {
    if (ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 != 0) {
      return absl::InvalidArgumentError(
          "DecodeStepPersistent: x, qkv, attn and act must be non-null and 16-byte aligned");
    }
  }
  if (p.attention.num_seqs != 1 || p.attention.q != p.qkv || p.attention.out != p.attn ||
      p.attention.n_heads * p.attention.head_dim != p.q_dim) {
    return absl::InvalidArgumentError(
        "DecodeStepPersistent: the attention must be one sequence's, from qkv into attn");
  }
  return absl::OkStatus();
}

}  // namespace

bool PersistentDecodeSupports(DType w_dtype, int head_dim, DType kv_dtype) {
  return Instantiated(w_dtype, head_dim, kv_dtype) && CooperativeDevice();
}

absl::Status DecodeStepPersistent(const PersistentDecodeParams& p, const Stream& stream) {
  if (absl::Status st = CheckParams(p); !st.ok()) return st;
  if (!CooperativeDevice()) {
    return absl::FailedPreconditionError(
        "DecodeStepPersistent: no device with cooperative launches (cudaDevAttrCooperativeLaunch)");
  }
  float* partial = nullptr;
  if (absl::Status st = da::CheckDecode(p.attention, p.max_context, p.workspace, p.workspace_floats,
                                        &p.rope_kv, /*partition_tokens=*/0, &partial);
      !st.ok()) {
    return st;
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_KV_DTYPE_SWITCH(p.attention.kv_dtype, KvT, {
    const da::DecodeArgs<KvT> attention =
        da::MakeDecodeArgs<KvT>(p.attention, p.max_context, partial, &p.rope_kv);
    TPS_HEAD_DIM_SWITCH(p.attention.head_dim, kDimsPerLane, {
      if constexpr (kDimsPerLane > 4) {
        return Unsupported(p);
      } else {
        TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
          if constexpr (kPersistentWeight<kW>) {
            return Launch<kW, kDimsPerLane, KvT>(p, attention, s);
          } else {
            return Unsupported(p);
          }
        });
      }
    });
  });
}

}  // namespace tpserve::kernels::cuda
