#include "worker/engine/cpu_forward.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/elapsed.h"
#include "common/status.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"
#include "worker/engine/forward_common.h"

namespace tpserve {
namespace {

namespace cpu = kernels::cpu;

void Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// y (m, out_features) = x (m, in_features) W^T (+ b) over all fused parts in
// one GemmMulti, which quantizes x once for every part; into y_fixed instead
// when set (partition-invariant fixed point, `chunk` columns per partial for
// plain weights).
absl::Status RunLinear(const Linear& l, const float* x, int m, float* y,
                       const kernels::Stream& stream, int64_t* y_fixed = nullptr, int chunk = 32) {
  absl::InlinedVector<kernels::GemmParams, 3> parts;
  for (const LinearPart& p : l.parts) {
    kernels::GemmParams& g = parts.emplace_back();
    g.x = x;
    g.w = p.weight.data;
    g.w_dtype = p.weight.dtype;
    g.bias = p.bias.empty() ? nullptr : p.bias.data();
    g.m = m;
    g.n = static_cast<int>(p.weight.rows());
    g.k = l.in_features;
    g.y_stride = l.out_features;
    if (y_fixed != nullptr) {
      g.y_fixed = y_fixed + p.out_offset;
      g.fixed_chunk = chunk;
    } else {
      g.y = y + p.out_offset;
    }
  }
  return cpu::GemmMulti(parts, stream);
}

class CpuForward final : public ForwardBackend {
 public:
  CpuForward(const ModelConfig& config, ShardPlan plan, Communicator& comm, int num_threads,
             bool tp_invariant)
      : c_(config),
        plan_(std::move(plan)),
        comm_(comm),
        pool_(num_threads),
        tp_invariant_(tp_invariant),
        chunks_(RowParallelChunks::For(config)) {}

  std::string name() const override { return "cpu"; }

  std::string kernels() const override {
    const cpu::Isa isa = cpu::ActiveIsa();
    return absl::StrCat("CPU kernels: ", cpu::IsaName(isa),
                        isa >= cpu::Isa::kAvxVnni && cpu::HasAvx512() ? " + AVX-512" : "", ", ",
                        pool_.num_threads(), " threads");
  }

  absl::Status AllGatherI64(int64_t mine, std::vector<int64_t>* all) override {
    all->assign(comm_.world_size(), mine);
    return comm_.AllGather(&mine, all->data(), 1, CommDType::kI64);
  }

  absl::Status Load(ShardWeights weights, const KvCacheShape& shape, int num_blocks) override {
    TPS_ASSIGN_OR_RETURN(kv_, KvCachePool::Create(shape, num_blocks));
    weights_ = std::move(weights);
    return absl::OkStatus();
  }

  absl::Status Forward(const StepBatch& batch, const std::vector<int>& head_rows,
                       std::vector<float>* logits, StepTimings* timings) override;

 private:
  absl::Status AllReduce(void* buf, size_t count, CommDType dtype, StepTimings* timings) {
    if (comm_.world_size() == 1) return absl::OkStatus();
    const absl::Time t0 = absl::Now();
    absl::Status s = comm_.AllReduceSum(buf, count, dtype);
    timings->comm_s += SecondsSince(t0);
    return s;
  }

  // x_ (T, H) += all-reduce over ranks of in (T, in_features) W^T: a
  // row-parallel projection and its residual add. tp_invariant_: each rank's
  // partial is fixed point, summed exactly by an int64 all-reduce and rounded
  // once, so the result does not depend on how W's columns are split.
  absl::Status ResidualRowParallel(const Linear& w, const float* in, int T, int chunk,
                                   const kernels::Stream& stream, StepTimings* timings) {
    const int64_t n = int64_t{T} * c_.hidden_size;
    if (!tp_invariant_) {
      TPS_RETURN_IF_ERROR(RunLinear(w, in, T, proj_.data(), stream));
      TPS_RETURN_IF_ERROR(AllReduce(proj_.data(), n, CommDType::kF32, timings));
      return cpu::Add({.a = x_.data(), .b = proj_.data(), .y = x_.data(), .n = n}, stream);
    }
    if (fixed_.size() < static_cast<size_t>(n)) fixed_.resize(n);
    TPS_RETURN_IF_ERROR(RunLinear(w, in, T, nullptr, stream, fixed_.data(), chunk));
    TPS_RETURN_IF_ERROR(AllReduce(fixed_.data(), n, CommDType::kI64, timings));
    return cpu::AddFixedPoint({.a = x_.data(), .b = fixed_.data(), .y = x_.data(), .n = n}, stream);
  }

  const ModelConfig c_;
  const ShardPlan plan_;
  Communicator& comm_;
  kernels::ThreadPool pool_;
  const bool tp_invariant_;
  const RowParallelChunks chunks_;
  ShardWeights weights_;
  std::optional<KvCachePool> kv_;  // set by Load
  // Scratch, grown on demand.
  std::vector<float> x_, h_, qkv_, attn_, proj_, gu_, act_, head_in_, head_out_, gathered_;
  std::vector<int64_t> fixed_;  // (T, H) row-parallel partials, tp_invariant_
};

absl::Status CpuForward::Forward(const StepBatch& batch, const std::vector<int>& head_rows,
                                 std::vector<float>* logits, StepTimings* timings) {
  TPS_CHECK(kv_.has_value());
  KvCachePool& kv = *kv_;
  const RankDims d = RankDims::For(c_, plan_.mine());
  const int H = d.hidden;
  const int F = d.ffn;
  const kernels::Stream stream{.pool = &pool_};

  // Flatten the ragged batch: (T) tokens, positions and KV slots.
  const StepLayout layout = FlattenStep(batch, kv.block_size());
  const StepArrays a = layout.HostArrays();
  const int T = a.num_tokens;
  Grow(x_, size_t{1} * T * H);
  Grow(h_, size_t{1} * T * H);
  Grow(qkv_, size_t{1} * T * d.qkv_dim);
  Grow(attn_, size_t{1} * T * d.q_dim);
  Grow(proj_, size_t{1} * T * H);
  Grow(gu_, size_t{1} * T * 2 * F);
  Grow(act_, size_t{1} * T * F);

  // (T, H) embedding: each rank fills the rows of its vocabulary slice.
  TPS_RETURN_IF_ERROR(cpu::Embedding(MakeEmbeddingParams(plan_.mine(), H, weights_.embedding.data,
                                                         weights_.embedding.dtype, a, x_.data()),
                                     stream));
  TPS_RETURN_IF_ERROR(AllReduce(x_.data(), size_t{1} * T * H, CommDType::kF32, timings));

  for (int l = 0; l < c_.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    const LayerKvCache cache{.k = kv.k(l),
                             .v = kv.v(l),
                             .block_size = kv.block_size(),
                             .num_blocks = kv.num_blocks(),
                             .dtype = kv.dtype()};
    // Attention block.
    TPS_RETURN_IF_ERROR(cpu::RmsNorm({.x = x_.data(),
                                      .weight = w.attn_norm.data(),
                                      .y = h_.data(),
                                      .rows = T,
                                      .dim = H,
                                      .eps = c_.rms_norm_eps},
                                     stream));
    TPS_RETURN_IF_ERROR(RunLinear(w.qkv, h_.data(), T, qkv_.data(), stream));  // (T, qkv_dim)
    TPS_RETURN_IF_ERROR(cpu::Rope(MakeRopeParams(c_, d, a, qkv_.data()), stream));
    TPS_RETURN_IF_ERROR(
        cpu::KvCacheWrite(MakeKvCacheWriteParams(d, a, qkv_.data(), cache), stream));
    TPS_RETURN_IF_ERROR(cpu::PagedAttention(
        MakeAttentionParams(d, a, qkv_.data(), cache, attn_.data()), stream));  // (T, q_dim)
    TPS_RETURN_IF_ERROR(ResidualRowParallel(w.o, attn_.data(), T, chunks_.o, stream,
                                            timings));  // x += attn W_o^T, (T, H)
    // FFN block.
    TPS_RETURN_IF_ERROR(cpu::RmsNorm({.x = x_.data(),
                                      .weight = w.ffn_norm.data(),
                                      .y = h_.data(),
                                      .rows = T,
                                      .dim = H,
                                      .eps = c_.rms_norm_eps},
                                     stream));
    TPS_RETURN_IF_ERROR(RunLinear(w.gate_up, h_.data(), T, gu_.data(), stream));  // (T, 2F)
    TPS_RETURN_IF_ERROR(cpu::Swiglu({.gate = gu_.data(),
                                     .up = gu_.data() + F,
                                     .out = act_.data(),
                                     .rows = T,
                                     .dim = F,
                                     .gate_stride = 2 * F,
                                     .up_stride = 2 * F},
                                    stream));  // (T, F)
    TPS_RETURN_IF_ERROR(ResidualRowParallel(w.down, act_.data(), T, chunks_.down, stream,
                                            timings));  // x += act W_down^T, (T, H)
  }

  // LM head on the rows that are sampled: (R, H) -> (R, vocab_local), padded
  // to the largest slice so the all-gather has equal counts.
  const int R = static_cast<int>(head_rows.size());
  if (R == 0) return absl::OkStatus();
  const int64_t maxv = plan_.max_vocab_rows();
  Grow(head_in_, size_t{1} * R * H);
  Grow(head_out_, static_cast<size_t>(R * maxv));
  for (int r = 0; r < R; ++r) {
    std::copy_n(x_.data() + size_t{1} * head_rows[r] * H, H, head_in_.data() + size_t{1} * r * H);
  }
  TPS_RETURN_IF_ERROR(cpu::RmsNorm({.x = head_in_.data(),
                                    .weight = weights_.output_norm.data(),
                                    .y = head_in_.data(),
                                    .rows = R,
                                    .dim = H,
                                    .eps = c_.rms_norm_eps},
                                   stream));
  Linear head = weights_.lm_head;
  head.out_features = static_cast<int>(maxv);  // row stride of the padded output
  TPS_RETURN_IF_ERROR(RunLinear(head, head_in_.data(), R, head_out_.data(), stream));
  const float* all = head_out_.data();
  if (comm_.world_size() > 1) {
    Grow(gathered_, static_cast<size_t>(R * maxv * comm_.world_size()));
    const absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(
        comm_.AllGather(head_out_.data(), gathered_.data(), R * maxv, CommDType::kF32));
    timings->comm_s += SecondsSince(t0);
    all = gathered_.data();
  }
  if (comm_.rank() != 0) return absl::OkStatus();
  ScatterVocabSlices(plan_, all, R, R, maxv, c_.vocab_size, logits);
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<ForwardBackend> CreateCpuForward(const ModelConfig& config, ShardPlan plan,
                                                 Communicator& comm, int num_threads,
                                                 bool tp_invariant) {
  return std::make_unique<CpuForward>(config, std::move(plan), comm, num_threads, tp_invariant);
}

}  // namespace tpserve
