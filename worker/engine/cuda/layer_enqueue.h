// One transformer layer of the CUDA backend's forward pass, enqueued on the
// step's stream: QKV, RoPE + KV-cache write and paged attention (one launch
// when every sequence decodes one token), O projection
// and its all-reduce, the fused residual add + FFN norm, SwiGLU FFN and its
// all-reduce, then the residual add fused with the next layer's attention
// norm (tp_invariant: fixed-point O and down, an int64 all-reduce, then the
// add and the norm as two launches). Nothing here allocates or synchronises,
// so a CUDA graph may capture it.
//
//   const LayerStep step{.config = &c, .dims = d, .shape = sh, .arrays = a, ...};
//   for (size_t li = 0; li < layers.size(); ++li) {
//     const DeviceLayer* next = li + 1 < layers.size() ? &layers[li + 1] : nullptr;
//     TPS_RETURN_IF_ERROR(EnqueueLayer(step, layers[li], next));
//   }
#ifndef TPSERVE_WORKER_ENGINE_CUDA_LAYER_ENQUEUE_H_
#define TPSERVE_WORKER_ENGINE_CUDA_LAYER_ENQUEUE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "worker/engine/cuda/device_weights.h"
#include "worker/engine/forward_common.h"
#include "worker/model/model_config.h"

namespace tpserve {

// The shapes one step's launches depend on; a graph fixes all of them.
struct StepShape {
  int num_seqs = 0;    // S
  int num_tokens = 0;  // T
  int max_blocks = 1;
  int max_context = 1;
  bool all_decode = false;
};

// Device activations of one step, each grown for its T tokens.
struct LayerScratch {
  float* x = nullptr;     // (T, H) residual stream
  float* h = nullptr;     // (T, H) normalised input of the next projection
  float* qkv = nullptr;   // (T, qkv_dim)
  float* attn = nullptr;  // (T, q_dim)
  float* proj = nullptr;  // (T, H) partial sums of a row-parallel projection
  float* gu = nullptr;    // (T, 2F) gate | up
  float* act = nullptr;   // (T, F) silu(gate) * up
  float* ws = nullptr;    // split-KV decode workspace (all-decode steps)
  int64_t ws_floats = 0;
  int64_t* fixed = nullptr;  // (T, H) fixed-point partials (tp_invariant)
  Bf16Scratch bf16;          // prefill GEMMs' bf16 copies (RunLinear), or none
};

// What every layer of one step shares.
struct LayerStep {
  const ModelConfig* config = nullptr;
  RankDims dims;
  StepShape shape;
  StepArrays arrays;  // the staged step metadata on the device
  LayerScratch scratch;
  int block_size = 0;  // KV cache
  int num_blocks = 0;
  DType kv_dtype = DType::kF32;  // kF32 or kBF16 (DeviceLayer::k_cache's elements)
  kernels::Stream stream;
  // Sums `count` floats at `buf` across the ranks (a no-op on one rank).
  std::function<absl::Status(float* buf, size_t count)> all_reduce;
  // Tensor-parallel invariance (EngineOptions::tp_invariant): O and down
  // write fixed point into scratch.fixed, summed by all_reduce_fixed (int64)
  // and added to x rounded once; `chunks` as forward_common.h.
  bool tp_invariant = false;
  RowParallelChunks chunks;
  std::function<absl::Status(int64_t* buf, size_t count)> all_reduce_fixed;
  // One token, one rank, not tp_invariant: each RMSNorm runs inside the GEMM
  // after it and each residual add inside the GEMM before it
  // (kernels::cuda::GemmFused), 5 launches per layer instead of 7
  // (cuda_engine_parity_test_emu counts them). x is the layer's input and
  // output; h is not used.
  bool fuse_norms = false;
  // Prefill through bf16 copies (UsesBf16Copies(scratch.bf16, T)): the norms
  // write h, and SwiGLU act and prefill attention attn (unless tp_invariant,
  // whose O and down GEMMs read f32; attention also not in all-decode steps
  // or where q_dim is not a multiple of 32), as the next GEMM's bf16 copy of
  // x in scratch.bf16 (kernels/cuda/cuda_ops.h Bf16Copy), not as f32: x.h,
  // x.act and x.attn are then not written. The same bits as the f32 round
  // trip by construction (compared under the emulator: elementwise_test,
  // attention_test, cuda_engine_prefill_test), one launch fewer per GEMM.
  // The step's first norm (before EnqueueLayer) must do the same.
  bool producers_write_bf16 = false;
  // EngineOptions::cuda_l2_prefetch: each GEMM also prefetches the next
  // GEMM's weights into L2 (QKV the O projection's, O gate/up's, gate/up
  // down's, down the next layer's QKV), before its wait for the kernel
  // before it (kernels/cuda/prefetch.cuh). Only the decode kernels do (the
  // fused batch-1 GEMVs and the tensor-core decode GEMM, 2-64 rows); the
  // others ignore it. A hint: the same bits by construction (compared
  // under the emulator on cuda_engine_parity_test's GraphSteps).
  bool l2_prefetch = false;
};

// What a GEMM of the step prefetches into L2 for `next`, the GEMM after it
// (LayerStep::l2_prefetch; nothing when that is off or `next` is null).
[[nodiscard]] kernels::cuda::L2Prefetch PrefetchNext(const LayerStep& step,
                                                     const DeviceLinear* next);

// The activations of a layer step that stay f32. The others go straight
// into the next GEMM's bf16 copy (LayerStep::producers_write_bf16) and are
// never written as f32, so CudaForward::GrowScratch sizes only these for
// the step's rows. tp_invariant: O and down read f32 (fixed-point GEMMs);
// attention: only the prefill kernels (not all-decode steps), on rows
// without a tail (q_dim a multiple of 32).
struct F32Activations {
  bool h = true, attn = true, act = true;
};
F32Activations KeptInF32(bool producers_write_bf16, bool tp_invariant, bool all_decode, int q_dim);

// Enqueues layer `l` over step.scratch.h (the layer's normalised input) and
// leaves step.scratch.x updated and step.scratch.h normalised with `next`'s
// attention norm; for the last layer (`next` null) only x. With
// step.fuse_norms, over step.scratch.x alone (`next` only for
// LayerStep::l2_prefetch).
[[nodiscard]] absl::Status EnqueueLayer(const LayerStep& step, const DeviceLayer& l,
                                        const DeviceLayer* next);

// EngineOptions::cuda_persistent_decode: the device pointers of every
// layer for kernels::cuda::DecodeStepPersistent, with their common weight
// type in *w_dtype; empty where it does not run these layers (a linear in
// several parts or of another type, a head_dim or KV dtype it lacks, no
// cooperative launch on this device).
[[nodiscard]] std::vector<kernels::cuda::DecodeLayerPointers> PersistentLayerTable(
    const std::vector<DeviceLayer>& layers, int head_dim, DType kv_dtype, DType* w_dtype);

// A one-sequence decode step's layers (step.fuse_norms and
// step.shape.all_decode) as one cooperative launch over `table` (a device
// copy of PersistentLayerTable's entries; `first` is layers[0]): what
// EnqueueLayer does for each layer, with the per-kernel step's bits.
[[nodiscard]] absl::Status EnqueuePersistentLayers(const LayerStep& step, const DeviceLayer& first,
                                                   const kernels::cuda::DecodeLayerPointers* table,
                                                   int num_layers, DType w_dtype);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_LAYER_ENQUEUE_H_
