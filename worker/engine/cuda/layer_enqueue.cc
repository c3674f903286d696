#include "worker/engine/cuda/layer_enqueue.h"

#include "common/status.h"
#include "kernels/cuda/cuda_ops.h"

namespace tpserve {

namespace kc = kernels::cuda;

namespace {

// The step's RoPE and KV-cache write over x.qkv into `cache`.
kc::DecodeRopeKvWrite RopeKvWriteOf(const LayerStep& step, const LayerKvCache& cache) {
  float* qkv = step.scratch.qkv;
  return {.rope = MakeRopeParams(*step.config, step.dims, step.arrays, qkv),
          .kv = MakeKvCacheWriteParams(step.dims, step.arrays, qkv, cache)};
}

// Layer l's KV cache in the step's pool.
LayerKvCache CacheOf(const LayerStep& step, const DeviceLayer& l) {
  return {.k = l.k_cache.data(),
          .v = l.v_cache.data(),
          .block_size = step.block_size,
          .num_blocks = step.num_blocks,
          .dtype = step.kv_dtype};
}

// Where a norm (h), SwiGLU (act) or prefill attention (attn) writes its
// output when `bf16`: the next GEMM's bf16 copy of x
// (LayerStep::producers_write_bf16); else f32, as usual.
kc::Bf16Copy CopyOut(const LayerStep& step, bool bf16) {
  return bf16 ? kc::Bf16Copy{.data = step.scratch.bf16.data} : kc::Bf16Copy{};
}

// The bf16 scratch of the GEMM over that output.
Bf16Scratch CopyIn(const LayerStep& step, bool bf16) {
  Bf16Scratch b = step.scratch.bf16;
  b.x_ready = bf16;
  return b;
}

// x += all-reduce(in W^T) in fixed point, then h = RmsNorm(x) * norm when
// `norm` is set: the partition-invariant residual branch.
absl::Status ResidualFixed(const LayerStep& step, const DeviceLinear& w, const float* in, int chunk,
                           const float* norm) {
  const LayerScratch& x = step.scratch;
  const int H = step.dims.hidden;
  const int T = step.shape.num_tokens;
  const kernels::Stream& s = step.stream;
  TPS_RETURN_IF_ERROR(RunLinear(w, in, T, nullptr, H, s, {}, {}, x.fixed, chunk));  // (T, H)
  TPS_RETURN_IF_ERROR(step.all_reduce_fixed(x.fixed, size_t{1} * T * H));
  TPS_RETURN_IF_ERROR(
      kc::AddFixedPoint({.a = x.x, .b = x.fixed, .y = x.x, .n = int64_t{T} * H}, s));
  if (norm == nullptr) return absl::OkStatus();
  return kc::RmsNorm(
      {.x = x.x, .weight = norm, .y = x.h, .rows = T, .dim = H, .eps = step.config->rms_norm_eps},
      s, CopyOut(step, step.producers_write_bf16));
}

// RoPE with the KV-cache write, then attention over x.qkv into x.attn.
// Decode: split-KV, with the RoPE and KV-cache write inside it (one launch
// fewer per layer). Prefill-heavy batches (the bf16 tensor-core GEMM range):
// tensor-core attention, into the O projection's bf16 copy when `attn_bf16`.
// Small mixed batches: f32 flash kernel.
absl::Status EnqueueAttention(const LayerStep& step, const LayerKvCache& cache, bool attn_bf16) {
  const LayerScratch& x = step.scratch;
  const StepShape& sh = step.shape;
  const kernels::Stream& s = step.stream;
  const kc::DecodeRopeKvWrite rope_kv = RopeKvWriteOf(step, cache);
  const kernels::PagedAttentionParams ap =
      MakeAttentionParams(step.dims, step.arrays, x.qkv, cache, x.attn);
  if (sh.all_decode) {
    return kc::PagedAttentionDecode(ap, sh.max_context, x.ws, x.ws_floats, rope_kv, s);
  }
  TPS_RETURN_IF_ERROR(kc::RopeKvWrite(rope_kv.rope, rope_kv.kv, s));
  if (sh.num_tokens > kc::kSkinnyGemmMaxRows) {
    return kc::PagedAttentionPrefill(ap, s, CopyOut(step, attn_bf16));
  }
  return kc::PagedAttention(ap, s);
}

// The one-part gate/up GEMM over x (m rows) with the SwiGLU epilogue into act.
kernels::GemmParams GateUpParams(const DeviceLinear& gate_up, const float* x, float* act, int m,
                                 const RankDims& d) {
  const DeviceLinear::Part& gu = gate_up.parts[0];
  return {.x = x,
          .w = gu.weight.data(),
          .w_dtype = gu.dtype,
          .bias = gu.bias.size() > 0 ? gu.bias.data() : nullptr,
          .y = act,
          .m = m,
          .n = 2 * d.ffn,
          .k = d.hidden};
}

// SwiGLU over x.gu (rows of gate | up, from a gate/up GEMM of several parts) into x.act.
kernels::SwigluParams GateUpSwiglu(const LayerScratch& x, int rows, const RankDims& d) {
  return {.gate = x.gu,
          .up = x.gu + d.ffn,
          .out = x.act,
          .rows = rows,
          .dim = d.ffn,
          .gate_stride = 2 * d.ffn,
          .up_stride = 2 * d.ffn};
}

// EnqueueLayer with step.fuse_norms (one token): the norms and residual
// adds inside the GEMMs, the same bits as the unfused launches.
absl::Status EnqueueFusedLayer(const LayerStep& step, const DeviceLayer& l,
                               const LayerKvCache& cache, const DeviceLayer* next) {
  const ModelConfig& c = *step.config;
  const RankDims& d = step.dims;
  const LayerScratch& x = step.scratch;
  const kernels::Stream& s = step.stream;
  const float eps = c.rms_norm_eps;
  TPS_RETURN_IF_ERROR(RunLinearFused(l.qkv, x.x, x.qkv, l.attn_norm.data(), eps, false, s,
                                     PrefetchNext(step, &l.o)));
  TPS_RETURN_IF_ERROR(EnqueueAttention(step, cache, /*attn_bf16=*/false));
  TPS_RETURN_IF_ERROR(RunLinearFused(l.o, x.attn, x.x, nullptr, eps, true, s,
                                     PrefetchNext(step, &l.gate_up)));  // x += O attn
  if (l.gate_up.parts.size() == 1) {
    TPS_RETURN_IF_ERROR(kc::GemmFused(
        GateUpParams(l.gate_up, x.x, x.act, 1, d),
        {.norm = l.ffn_norm.data(), .eps = eps, .prefetch = PrefetchNext(step, &l.down)},
        /*swiglu=*/true, s));
  } else {
    TPS_RETURN_IF_ERROR(RunLinearFused(l.gate_up, x.x, x.gu, l.ffn_norm.data(), eps, false, s,
                                       PrefetchNext(step, &l.down)));
    TPS_RETURN_IF_ERROR(kc::Swiglu(GateUpSwiglu(x, 1, d), s));
  }
  return RunLinearFused(
      l.down, x.act, x.x, nullptr, eps, true, s,
      PrefetchNext(step, next != nullptr ? &next->qkv : nullptr));  // x += down act
}

}  // namespace

kc::L2Prefetch PrefetchNext(const LayerStep& step, const DeviceLinear* next) {
  return step.l2_prefetch && next != nullptr ? WeightsToPrefetch(*next) : kc::L2Prefetch{};
}

F32Activations KeptInF32(bool producers_write_bf16, bool tp_invariant, bool all_decode, int q_dim) {
  const bool act_bf16 = producers_write_bf16 && !tp_invariant;
  const bool attn_bf16 =
      act_bf16 && !all_decode && kc::GemmViaBf16RowElems(q_dim) == int64_t{q_dim};
  return {.h = !producers_write_bf16, .attn = !attn_bf16, .act = !act_bf16};
}

absl::Status EnqueueLayer(const LayerStep& step, const DeviceLayer& l, const DeviceLayer* next) {
  const ModelConfig& c = *step.config;
  const RankDims& d = step.dims;
  const StepShape& sh = step.shape;
  const LayerScratch& x = step.scratch;
  const kernels::Stream& s = step.stream;
  const int H = d.hidden;
  const int F = d.ffn;
  const int T = sh.num_tokens;
  const LayerKvCache cache = CacheOf(step, l);
  if (step.fuse_norms) return EnqueueFusedLayer(step, l, cache, next);
  const float* next_attn_norm = next != nullptr ? next->attn_norm.data() : nullptr;
  // What writes the next GEMM's bf16 copy itself (LayerStep::producers_write_bf16).
  const F32Activations f32 =
      KeptInF32(step.producers_write_bf16, step.tp_invariant, sh.all_decode, d.q_dim);
  const bool h_bf16 = !f32.h, attn_bf16 = !f32.attn, act_bf16 = !f32.act;

  TPS_RETURN_IF_ERROR(RunLinear(l.qkv, x.h, T, x.qkv, d.qkv_dim, s, CopyIn(step, h_bf16),
                                PrefetchNext(step, &l.o)));  // (T, qkv_dim)
  TPS_RETURN_IF_ERROR(EnqueueAttention(step, cache, attn_bf16));
  if (step.tp_invariant) {
    TPS_RETURN_IF_ERROR(ResidualFixed(step, l.o, x.attn, step.chunks.o, l.ffn_norm.data()));
  } else {
    TPS_RETURN_IF_ERROR(RunLinear(l.o, x.attn, T, x.proj, H, s, CopyIn(step, attn_bf16),
                                  PrefetchNext(step, &l.gate_up)));  // (T, H) partial
    TPS_RETURN_IF_ERROR(step.all_reduce(x.proj, size_t{1} * T * H));
    TPS_RETURN_IF_ERROR(kc::AddRmsNorm({.x = x.x,
                                        .residual = x.proj,
                                        .weight = l.ffn_norm.data(),
                                        .y = x.h,
                                        .rows = T,
                                        .dim = H,
                                        .eps = c.rms_norm_eps},
                                       s, CopyOut(step, h_bf16)));
  }
  if (T <= kc::kSkinnyGemmMaxRows && l.gate_up.parts.size() == 1) {
    // Decode-sized: the gate/up GEMM writes silu(gate) * up directly.
    TPS_RETURN_IF_ERROR(
        kc::GemmSwiglu(GateUpParams(l.gate_up, x.h, x.act, T, d), s, PrefetchNext(step, &l.down)));
  } else {
    TPS_RETURN_IF_ERROR(RunLinear(l.gate_up, x.h, T, x.gu, 2 * F, s, CopyIn(step, h_bf16),
                                  PrefetchNext(step, &l.down)));  // (T, 2F)
    TPS_RETURN_IF_ERROR(kc::Swiglu(GateUpSwiglu(x, T, d), s, CopyOut(step, act_bf16)));
  }
  if (step.tp_invariant) {
    return ResidualFixed(step, l.down, x.act, step.chunks.down, next_attn_norm);
  }
  TPS_RETURN_IF_ERROR(
      RunLinear(l.down, x.act, T, x.proj, H, s, CopyIn(step, act_bf16),
                PrefetchNext(step, next != nullptr ? &next->qkv : nullptr)));  // (T, H)
  TPS_RETURN_IF_ERROR(step.all_reduce(x.proj, size_t{1} * T * H));
  if (next_attn_norm != nullptr) {
    return kc::AddRmsNorm({.x = x.x,
                           .residual = x.proj,
                           .weight = next_attn_norm,
                           .y = x.h,
                           .rows = T,
                           .dim = H,
                           .eps = c.rms_norm_eps},
                          s, CopyOut(step, h_bf16));
  }
  return kc::Add({.a = x.x, .b = x.proj, .y = x.x, .n = int64_t{T} * H}, s);
}

std::vector<kc::DecodeLayerPointers> PersistentLayerTable(const std::vector<DeviceLayer>& layers,
                                                          int head_dim, DType kv_dtype,
                                                          DType* w_dtype) {
  if (layers.empty()) return {};
  const DType dtype = layers.front().qkv.parts.front().dtype;
  if (!kc::PersistentDecodeSupports(dtype, head_dim, kv_dtype)) return {};
  auto one_part = [dtype](const DeviceLinear& lin) {
    return lin.parts.size() == 1 && lin.parts.front().dtype == dtype;
  };
  auto bytes = [](const DeviceLinear& lin) {  // whole 16-byte units (L2Prefetch)
    return static_cast<int64_t>(lin.parts.front().weight.size()) / 16 * 16;
  };
  auto bias = [](const DeviceLinear& lin) {
    const DeviceLinear::Part& p = lin.parts.front();
    return p.bias.size() > 0 ? p.bias.data() : nullptr;
  };
  std::vector<kc::DecodeLayerPointers> table;
  for (const DeviceLayer& l : layers) {
    if (!one_part(l.qkv) || !one_part(l.o) || !one_part(l.gate_up) || !one_part(l.down)) return {};
    table.push_back({.qkv = l.qkv.parts.front().weight.data(),
                     .qkv_bias = bias(l.qkv),
                     .o = l.o.parts.front().weight.data(),
                     .o_bias = bias(l.o),
                     .gate_up = l.gate_up.parts.front().weight.data(),
                     .gate_up_bias = bias(l.gate_up),
                     .down = l.down.parts.front().weight.data(),
                     .down_bias = bias(l.down),
                     .attn_norm = l.attn_norm.data(),
                     .ffn_norm = l.ffn_norm.data(),
                     .k_cache = l.k_cache.data(),
                     .v_cache = l.v_cache.data(),
                     .qkv_bytes = bytes(l.qkv),
                     .o_bytes = bytes(l.o),
                     .gate_up_bytes = bytes(l.gate_up),
                     .down_bytes = bytes(l.down)});
  }
  *w_dtype = dtype;
  return table;
}

absl::Status EnqueuePersistentLayers(const LayerStep& step, const DeviceLayer& first,
                                     const kc::DecodeLayerPointers* table, int num_layers,
                                     DType w_dtype) {
  const RankDims& d = step.dims;
  const LayerScratch& x = step.scratch;
  const LayerKvCache cache = CacheOf(step, first);
  return kc::DecodeStepPersistent(
      {.layers = table,
       .num_layers = num_layers,
       .w_dtype = w_dtype,
       .hidden = d.hidden,
       .q_dim = d.q_dim,
       .qkv_dim = d.qkv_dim,
       .ffn = d.ffn,
       .eps = step.config->rms_norm_eps,
       .x = x.x,
       .qkv = x.qkv,
       .attn = x.attn,
       .act = x.act,
       .attention = MakeAttentionParams(d, step.arrays, x.qkv, cache, x.attn),
       .rope_kv = RopeKvWriteOf(step, cache),
       .max_context = step.shape.max_context,
       .workspace = x.ws,
       .workspace_floats = x.ws_floats,
       .l2_prefetch = step.l2_prefetch},
      step.stream);
}

}  // namespace tpserve
