// Full-model logits, CUDA vs CPU. A single-rank forward pass written with the
// CUDA launchers (embedding, RMSNorm, fused-dequant GEMMs, RoPE, KV write,
// paged attention, split-KV decode, SwiGLU, residual adds, LM head) runs the
// same batches as the CPU engine (Engine::ForwardLogits, the reference, with
// f32_weights so both sides multiply the same dequantised values in f32):
// a mixed prefill of two sequences, a decode step, a 300-token prefill
// (tensor-core GEMMs, many attention tiles) and a decode at context 301
// (two split-KV partitions).
//
// Models: $TPSERVE_GPU_TEST_MODELS (colon-separated GGUF paths; the
// gpu_check.sh bundle ships small generated ones), else the default model
// under $TPSERVE_ROOT. Test-only dependency on worker/engine: the engine is
// this test's reference, the kernels never depend on it.
//
// Tolerances, as max |cuda - cpu| / max |cpu logit| per row: 1e-3 on the
// skinny-GEMM batches (f32 math both sides; the engine test's acceptance
// bound), 3e-2 once a batch of more than 64 tokens takes the bf16
// tensor-core path (bf16 rounding, 2^-9 relative, accumulated over layers).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/tcp_kv_store.h"
#include "worker/engine/engine.h"
#include "worker/engine/multi_rank_test_util.h"
#include "worker/engine/shard_plan.h"
#include "worker/engine/shard_weights.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kBlockSize = 16;
constexpr int kNumBlocks = 64;

struct DeviceLinear {
  struct Part {
    DeviceBuffer<uint8_t> weight;
    DType dtype;
    int rows;
    DeviceBuffer<float> bias;
    int out_offset;
  };
  std::vector<Part> parts;
  int out_features = 0;
  int in_features = 0;
};

DeviceLinear Upload(const Linear& l) {
  DeviceLinear d;
  d.out_features = l.out_features;
  d.in_features = l.in_features;
  for (const LinearPart& p : l.parts) {
    d.parts.push_back(
        {ToDevice(std::vector<uint8_t>(p.weight.data, p.weight.data + p.weight.bytes)),
         p.weight.dtype, static_cast<int>(p.weight.rows()), ToDevice(p.bias), p.out_offset});
  }
  return d;
}

absl::Status RunLinear(const DeviceLinear& l, const float* x, int m, float* y, int64_t y_stride,
                       const Stream& s) {
  for (const DeviceLinear::Part& p : l.parts) {
    GemmParams g{.x = x,
                 .w = p.weight.data(),
                 .w_dtype = p.dtype,
                 .bias = p.bias.size() ? p.bias.data() : nullptr,
                 .y = y + p.out_offset,
                 .m = m,
                 .n = p.rows,
                 .k = l.in_features,
                 .y_stride = y_stride};
    if (absl::Status st = Gemm(g, s); !st.ok()) return st;
  }
  return absl::OkStatus();
}

#define RETURN_IF_ERROR(expr)                             \
  do {                                                    \
    if (absl::Status st_ = (expr); !st_.ok()) return st_; \
  } while (false)

// Single-rank forward on the CUDA kernels, with its own paged KV cache.
class CudaForward {
 public:
  CudaForward(const ModelConfig& c, const ShardWeights& w) : c_(c) {
    embedding_ =
        ToDevice(std::vector<uint8_t>(w.embedding.data, w.embedding.data + w.embedding.bytes));
    embedding_dtype_ = w.embedding.dtype;
    lm_head_ = Upload(w.lm_head);
    output_norm_ = ToDevice(w.output_norm);
    const size_t cache = static_cast<size_t>(kNumBlocks) * kBlockSize * c.num_kv_heads * c.head_dim;
    for (const LayerWeights& lw : w.layers) {
      layers_.push_back({ToDevice(lw.attn_norm), Upload(lw.qkv), Upload(lw.o),
                         ToDevice(lw.ffn_norm), Upload(lw.gate_up), Upload(lw.down),
                         DeviceZeros<float>(cache), DeviceZeros<float>(cache)});
    }
  }

  // Last-token logits of every sequence (batch order).
  absl::StatusOr<std::vector<std::vector<float>>> Logits(const StepBatch& batch,
                                                         bool decode_kernel) {
    const int H = c_.hidden_size, hd = c_.head_dim, nq = c_.num_heads, nkv = c_.num_kv_heads;
    const int qdim = nq * hd, kvdim = nkv * hd, nqkv = qdim + 2 * kvdim, F = c_.ffn_size;
    const int S = static_cast<int>(batch.seqs.size());
    std::vector<int32_t> tokens, positions, cu(S + 1, 0), starts(S), last_rows;
    std::vector<int64_t> slots;
    int max_blocks = 1, max_context = 1;
    for (int i = 0; i < S; ++i) {
      const SequenceInput& s = batch.seqs[i];
      for (size_t j = 0; j < s.tokens.size(); ++j) {
        const int pos = s.start_pos + static_cast<int>(j);
        tokens.push_back(s.tokens[j]);
        positions.push_back(pos);
        slots.push_back(int64_t{s.block_table[pos / kBlockSize]} * kBlockSize + pos % kBlockSize);
      }
      cu[i + 1] = static_cast<int32_t>(tokens.size());
      starts[i] = s.start_pos;
      last_rows.push_back(cu[i + 1] - 1);
      max_context = std::max(max_context, s.start_pos + static_cast<int>(s.tokens.size()));
      max_blocks = std::max(max_blocks, static_cast<int>(s.block_table.size()));
    }
    std::vector<int32_t> tables(static_cast<size_t>(S) * max_blocks, 0);
    for (int i = 0; i < S; ++i)
      std::copy(batch.seqs[i].block_table.begin(), batch.seqs[i].block_table.end(),
                tables.begin() + static_cast<size_t>(i) * max_blocks);
    const int T = static_cast<int>(tokens.size());
    DeviceBuffer<int32_t> d_tokens = ToDevice(tokens), d_pos = ToDevice(positions),
                          d_cu = ToDevice(cu), d_starts = ToDevice(starts),
                          d_tables = ToDevice(tables);
    DeviceBuffer<int64_t> d_slots = ToDevice(slots);
    DeviceBuffer<float> x = DeviceZeros<float>(size_t{1} * T * H),
                        h = DeviceZeros<float>(size_t{1} * T * H),
                        qkv = DeviceZeros<float>(size_t{1} * T * nqkv),
                        attn = DeviceZeros<float>(size_t{1} * T * qdim),
                        proj = DeviceZeros<float>(size_t{1} * T * H),
                        gu = DeviceZeros<float>(size_t{1} * T * 2 * F),
                        act = DeviceZeros<float>(size_t{1} * T * F);
    const int64_t ws_floats = DecodeAttentionWorkspaceFloats(S, nq, hd, max_context);
    DeviceBuffer<float> ws =
        DeviceZeros<float>(static_cast<size_t>(std::max<int64_t>(ws_floats, 1)));
    const Stream s{};

    RETURN_IF_ERROR(Embedding({.table = embedding_.data(),
                               .dtype = embedding_dtype_,
                               .tokens = d_tokens.data(),
                               .out = x.data(),
                               .num_tokens = T,
                               .dim = H,
                               .rows = c_.vocab_size},
                              s));
    for (Layer& l : layers_) {
      RETURN_IF_ERROR(RmsNorm({.x = x.data(),
                               .weight = l.attn_norm.data(),
                               .y = h.data(),
                               .rows = T,
                               .dim = H,
                               .eps = c_.rms_norm_eps},
                              s));
      RETURN_IF_ERROR(RunLinear(l.qkv, h.data(), T, qkv.data(), nqkv, s));
      float* q = qkv.data();
      float* k = q + qdim;
      float* v = k + kvdim;
      RopeParams rp{.q = q,
                    .k = k,
                    .positions = d_pos.data(),
                    .tokens = T,
                    .n_heads = nq,
                    .n_kv_heads = nkv,
                    .head_dim = hd,
                    .q_stride = nqkv,
                    .k_stride = nqkv,
                    .theta = c_.rope_theta,
                    .neox = c_.rope_neox};
      rp.scaling = c_.rope_scaling.type == RopeScaling::Type::kLinear   ? RopeScalingType::kLinear
                   : c_.rope_scaling.type == RopeScaling::Type::kLlama3 ? RopeScalingType::kLlama3
                                                                        : RopeScalingType::kNone;
      rp.factor = c_.rope_scaling.factor;
      rp.low_freq_factor = c_.rope_scaling.low_freq_factor;
      rp.high_freq_factor = c_.rope_scaling.high_freq_factor;
      rp.original_max_position = c_.rope_scaling.original_max_position;
      RETURN_IF_ERROR(Rope(rp, s));
      RETURN_IF_ERROR(KvCacheWrite({.k = k,
                                    .v = v,
                                    .k_cache = l.k_cache.data(),
                                    .v_cache = l.v_cache.data(),
                                    .slot_mapping = d_slots.data(),
                                    .tokens = T,
                                    .n_kv_heads = nkv,
                                    .head_dim = hd,
                                    .block_size = kBlockSize,
                                    .num_blocks = kNumBlocks,
                                    .k_stride = nqkv,
                                    .v_stride = nqkv},
                                   s));
      PagedAttentionParams ap{.q = q,
                              .k_cache = l.k_cache.data(),
                              .v_cache = l.v_cache.data(),
                              .out = attn.data(),
                              .block_tables = d_tables.data(),
                              .cu_q_lens = d_cu.data(),
                              .start_pos = d_starts.data(),
                              .num_seqs = S,
                              .max_blocks_per_seq = max_blocks,
                              .n_heads = nq,
                              .n_kv_heads = nkv,
                              .head_dim = hd,
                              .block_size = kBlockSize,
                              .num_blocks = kNumBlocks,
                              .q_stride = nqkv,
                              .scale = 1.0f / std::sqrt(static_cast<float>(hd))};
      RETURN_IF_ERROR(decode_kernel ? PagedAttentionDecode(ap, max_context, ws.data(), ws_floats, s)
                                    : PagedAttention(ap, s));
      RETURN_IF_ERROR(RunLinear(l.o, attn.data(), T, proj.data(), H, s));
      RETURN_IF_ERROR(
          Add({.a = x.data(), .b = proj.data(), .y = x.data(), .n = int64_t{T} * H}, s));
      RETURN_IF_ERROR(RmsNorm({.x = x.data(),
                               .weight = l.ffn_norm.data(),
                               .y = h.data(),
                               .rows = T,
                               .dim = H,
                               .eps = c_.rms_norm_eps},
                              s));
      RETURN_IF_ERROR(RunLinear(l.gate_up, h.data(), T, gu.data(), 2 * F, s));
      RETURN_IF_ERROR(Swiglu({.gate = gu.data(),
                              .up = gu.data() + F,
                              .out = act.data(),
                              .rows = T,
                              .dim = F,
                              .gate_stride = 2 * F,
                              .up_stride = 2 * F},
                             s));
      RETURN_IF_ERROR(RunLinear(l.down, act.data(), T, proj.data(), H, s));
      RETURN_IF_ERROR(
          Add({.a = x.data(), .b = proj.data(), .y = x.data(), .n = int64_t{T} * H}, s));
    }
    // LM head on each sequence's last row: x rows gathered with a strided RMSNorm input.
    DeviceBuffer<float> head_in = DeviceZeros<float>(size_t{1} * S * H);
    DeviceBuffer<float> logits = DeviceZeros<float>(size_t{1} * S * c_.vocab_size);
    for (int i = 0; i < S; ++i) {
      RETURN_IF_ERROR(RmsNorm({.x = x.data() + size_t{1} * last_rows[i] * H,
                               .weight = output_norm_.data(),
                               .y = head_in.data() + size_t{1} * i * H,
                               .rows = 1,
                               .dim = H,
                               .eps = c_.rms_norm_eps},
                              s));
    }
    RETURN_IF_ERROR(RunLinear(lm_head_, head_in.data(), S, logits.data(), c_.vocab_size, s));
    const std::vector<float> all = ToHostVector(logits);
    std::vector<std::vector<float>> out;
    for (int i = 0; i < S; ++i) {
      out.emplace_back(all.begin() + static_cast<size_t>(i) * c_.vocab_size,
                       all.begin() + static_cast<size_t>(i + 1) * c_.vocab_size);
    }
    return out;
  }

 private:
  struct Layer {
    DeviceBuffer<float> attn_norm;
    DeviceLinear qkv, o;
    DeviceBuffer<float> ffn_norm;
    DeviceLinear gate_up, down;
    DeviceBuffer<float> k_cache, v_cache;
  };
  const ModelConfig c_;
  DeviceBuffer<uint8_t> embedding_;
  DType embedding_dtype_ = DType::kF32;
  DeviceLinear lm_head_;
  DeviceBuffer<float> output_norm_;
  std::vector<Layer> layers_;
};

double RelMaxDiff(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return diff / std::max(scale, 1e-30);
}

SequenceInput Seq(uint64_t id, std::vector<int32_t> tokens, int start,
                  std::vector<int32_t> blocks) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.prompt_len = 100000;
  s.block_table = std::move(blocks);
  return s;
}

std::vector<std::string> ModelPaths() {
  const char* env = std::getenv("TPSERVE_GPU_TEST_MODELS");
  if (env != nullptr && *env != '\0') return absl::StrSplit(env, ':', absl::SkipEmpty());
  return {DefaultModelPath()};
}

TEST(CudaModelParity, LogitsMatchCpuEngine) {
  TPS_SKIP_WITHOUT_CUDA();
  for (const std::string& path : ModelPaths()) {
    SCOPED_TRACE(path);
    absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
    if (!model.ok()) GTEST_SKIP() << "skipped: model not available: " << model.status();
    const ModelConfig& c = (*model)->config();
    TcpKvStoreClient unused("127.0.0.1", 1);
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateGlooCommunicator(unused, 0, 1, GlooOptions());
    ASSERT_TRUE(comm.ok()) << comm.status();
    EngineOptions opts;
    opts.f32_weights = true;
    opts.block_size = kBlockSize;
    opts.kv_cache_bytes = int64_t{64} << 20;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(**model, **comm, opts);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_GE((*engine)->num_kv_blocks(), 30);
    absl::StatusOr<ShardPlan> plan = ShardPlan::Create(c, 1, 0);
    ASSERT_TRUE(plan.ok()) << plan.status();
    absl::StatusOr<ShardWeights> weights = LoadShardWeights(**model, *plan);
    ASSERT_TRUE(weights.ok()) << weights.status();
    CudaForward gpu(c, *weights);

    cpu::Rng rng(5);
    auto random_tokens = [&](int n) {
      std::vector<int32_t> t(n);
      for (int32_t& v : t) v = rng.Int(0, c.vocab_size - 1);
      return t;
    };
    const std::vector<int32_t> blocks_a = {0, 1, 2, 3}, blocks_b = {4, 5},
                               blocks_c = {6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                           16, 17, 18, 19, 20, 21, 22, 23, 24, 25};
    struct Case {
      const char* name;
      StepBatch batch;
      bool decode_kernel;
      double tol;
    };
    std::vector<Case> cases;
    cases.push_back(
        {"prefill 40 + 17 tokens",
         {{Seq(1, random_tokens(40), 0, blocks_a), Seq(2, random_tokens(17), 0, blocks_b)}},
         false,
         1e-3});
    cases.push_back(
        {"decode step",
         {{Seq(1, random_tokens(1), 40, blocks_a), Seq(2, random_tokens(1), 17, blocks_b)}},
         true,
         1e-3});
    cases.push_back(
        {"prefill 300 tokens", {{Seq(3, random_tokens(300), 0, blocks_c)}}, false, 3e-2});
    cases.push_back(
        {"decode at context 301", {{Seq(3, random_tokens(1), 300, blocks_c)}}, true, 3e-2});
    for (const Case& k : cases) {
      SCOPED_TRACE(k.name);
      absl::StatusOr<std::vector<std::vector<float>>> want = (*engine)->ForwardLogits(k.batch);
      ASSERT_TRUE(want.ok()) << want.status();
      absl::StatusOr<std::vector<std::vector<float>>> got = gpu.Logits(k.batch, k.decode_kernel);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->size(), want->size());
      for (size_t i = 0; i < want->size(); ++i)
        EXPECT_LT(RelMaxDiff((*got)[i], (*want)[i]), k.tol) << "seq " << i;
    }
  }
}

}  // namespace
}  // namespace tpserve::kernels::cuda
