#include "worker/engine/cuda/cuda_forward.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sampling.h"
#include "worker/engine/forward_common.h"

namespace tpserve {
namespace {

namespace kc = kernels::cuda;
using kc::DeviceBuffer;

// `n` elements of host memory at `src` as a new device buffer (synchronous).
template <typename T>
absl::StatusOr<DeviceBuffer<T>> Upload(const T* src, size_t n) {
  TPS_ASSIGN_OR_RETURN(DeviceBuffer<T> b, DeviceBuffer<T>::Allocate(n));
  if (n > 0) {
    TPS_CUDA_RETURN_IF_ERROR(cudaMemcpy(b.data(), src, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  return b;
}

// Grows `b` to at least `n` elements (contents are not kept); counts each
// reallocation in *moves (captured graphs point at the old memory).
template <typename T>
absl::Status Grow(DeviceBuffer<T>& b, size_t n, uint64_t* moves) {
  if (b.size() >= n) return absl::OkStatus();
  b = DeviceBuffer<T>();  // free first: scratch can be large
  TPS_ASSIGN_OR_RETURN(b, DeviceBuffer<T>::Allocate(n));
  ++*moves;
  return absl::OkStatus();
}

// Copies `host` into the grown device buffer `d` on `stream`. The host vector
// must stay alive until the stream reaches the copy (Forward synchronises
// before its host vectors go out of scope).
template <typename T>
absl::Status Stage(const std::vector<T>& host, DeviceBuffer<T>& d, cudaStream_t stream,
                   uint64_t* moves) {
  TPS_RETURN_IF_ERROR(Grow(d, std::max<size_t>(host.size(), 1), moves));
  if (host.empty()) return absl::OkStatus();
  TPS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d.data(), host.data(), host.size() * sizeof(T),
                                           cudaMemcpyHostToDevice, stream));
  return absl::OkStatus();
}

struct DeviceLinear {
  struct Part {
    DeviceBuffer<uint8_t> weight;
    DType dtype = DType::kF32;
    int rows = 0;
    DeviceBuffer<float> bias;
    int out_offset = 0;
  };
  std::vector<Part> parts;
  int out_features = 0;
  int in_features = 0;
};

absl::StatusOr<DeviceLinear> UploadLinear(const Linear& l) {
  DeviceLinear d;
  d.out_features = l.out_features;
  d.in_features = l.in_features;
  for (const LinearPart& p : l.parts) {
    DeviceLinear::Part part;
    TPS_ASSIGN_OR_RETURN(part.weight, Upload(p.weight.data, static_cast<size_t>(p.weight.bytes)));
    part.dtype = p.weight.dtype;
    part.rows = static_cast<int>(p.weight.rows());
    TPS_ASSIGN_OR_RETURN(part.bias, Upload(p.bias.data(), p.bias.size()));
    part.out_offset = p.out_offset;
    d.parts.push_back(std::move(part));
  }
  return d;
}

// y (m, *) with row stride y_stride = x (m, in_features) W^T (+ b), part by part.
absl::Status RunLinear(const DeviceLinear& l, const float* x, int m, float* y, int64_t y_stride,
                       const kernels::Stream& s) {
  for (const DeviceLinear::Part& p : l.parts) {
    kernels::GemmParams g;
    g.x = x;
    g.w = p.weight.data();
    g.w_dtype = p.dtype;
    g.bias = p.bias.size() > 0 ? p.bias.data() : nullptr;
    g.y = y + p.out_offset;
    g.m = m;
    g.n = p.rows;
    g.k = l.in_features;
    g.y_stride = y_stride;
    TPS_RETURN_IF_ERROR(kc::Gemm(g, s));
  }
  return absl::OkStatus();
}

double Seconds(absl::Time since) { return absl::ToDoubleSeconds(absl::Now() - since); }

static_assert(kMaxGraphBatch <= kc::kSkinnyGemmMaxRows, "captured steps use the skinny GEMM only");

// Decode batch sizes a graph is captured for: 1, 2, 4, 8, then multiples of 16.
int BatchBucket(int seqs) {
  if (seqs <= 8) {
    int b = 1;
    while (b < seqs) b *= 2;
    return b;
  }
  return (seqs + 15) / 16 * 16;
}

// Context bound of a graph: a power-of-two number of decode partitions.
int ContextBucket(int max_context) {
  const int parts = (max_context + kc::kDecodePartitionTokens - 1) / kc::kDecodePartitionTokens;
  int b = 1;
  while (b < parts) b *= 2;
  return b * kc::kDecodePartitionTokens;
}

// Pads a decode layout to `seqs` sequences with inert entries (token 0 at
// position 0, KV slot -1 so nothing is written, one-token context over block
// 0) and its context bound to `context` (block tables widened to match).
void PadDecodeLayout(int seqs, int context, int block_size, StepLayout* l) {
  const int S = l->num_seqs();
  const int width = (context + block_size - 1) / block_size;
  std::vector<int32_t> tables(static_cast<size_t>(seqs) * width, 0);
  for (int i = 0; i < S; ++i) {
    std::copy_n(l->tables.begin() + static_cast<size_t>(i) * l->max_blocks, l->max_blocks,
                tables.begin() + static_cast<size_t>(i) * width);
  }
  l->tables = std::move(tables);
  l->max_blocks = width;
  l->max_context = context;
  l->tokens.resize(seqs, 0);
  l->positions.resize(seqs, 0);
  l->slots.resize(seqs, -1);
  l->starts.resize(seqs, 0);
  while (static_cast<int>(l->cu_q.size()) < seqs + 1) l->cu_q.push_back(l->cu_q.back() + 1);
}

// The shapes one step's launches depend on; a graph fixes all of them.
struct StepShape {
  int num_seqs = 0;
  int num_tokens = 0;
  int max_blocks = 1;
  int max_context = 1;
  bool all_decode = false;
};

class CudaForward final : public ForwardBackend {
 public:
  CudaForward(const ModelConfig& config, ShardPlan plan, Communicator& comm, int device,
              cudaStream_t stream, bool cuda_graphs)
      : c_(config),
        plan_(std::move(plan)),
        comm_(comm),
        device_(device),
        stream_(stream),
        cuda_graphs_(cuda_graphs && comm.world_size() == 1) {}

  ~CudaForward() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    graphs_.clear();
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }

  absl::Status AllGatherI64(int64_t mine, std::vector<int64_t>* all) override {
    const int world = comm_.world_size();
    all->assign(world, mine);
    if (world == 1) return absl::OkStatus();
    TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    TPS_ASSIGN_OR_RETURN(DeviceBuffer<int64_t> send, Upload(&mine, 1));
    TPS_ASSIGN_OR_RETURN(DeviceBuffer<int64_t> recv, DeviceBuffer<int64_t>::Allocate(world));
    TPS_RETURN_IF_ERROR(
        comm_.AllGather(send.data(), recv.data(), 1, CommDType::kI64, {.stream = stream_}));
    TPS_RETURN_IF_ERROR(comm_.Synchronize(stream_));
    TPS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    TPS_ASSIGN_OR_RETURN(*all, recv.ToHost());
    return absl::OkStatus();
  }

  // Uploads `w`; the host copies are dropped when it goes out of scope.
  absl::Status Load(ShardWeights w, const KvCacheShape& shape, int num_blocks) override {
    TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    TPS_ASSIGN_OR_RETURN(embedding_,
                         Upload(w.embedding.data, static_cast<size_t>(w.embedding.bytes)));
    embedding_dtype_ = w.embedding.dtype;
    TPS_ASSIGN_OR_RETURN(lm_head_, UploadLinear(w.lm_head));
    TPS_ASSIGN_OR_RETURN(output_norm_, Upload(w.output_norm.data(), w.output_norm.size()));
    shape_ = shape;
    num_blocks_ = num_blocks;
    const size_t cache =
        static_cast<size_t>(num_blocks) * shape.block_size * shape.n_kv_heads * shape.head_dim;
    layers_.clear();
    for (const LayerWeights& lw : w.layers) {
      Layer l;
      TPS_ASSIGN_OR_RETURN(l.attn_norm, Upload(lw.attn_norm.data(), lw.attn_norm.size()));
      TPS_ASSIGN_OR_RETURN(l.qkv, UploadLinear(lw.qkv));
      TPS_ASSIGN_OR_RETURN(l.o, UploadLinear(lw.o));
      TPS_ASSIGN_OR_RETURN(l.ffn_norm, Upload(lw.ffn_norm.data(), lw.ffn_norm.size()));
      TPS_ASSIGN_OR_RETURN(l.gate_up, UploadLinear(lw.gate_up));
      TPS_ASSIGN_OR_RETURN(l.down, UploadLinear(lw.down));
      TPS_ASSIGN_OR_RETURN(l.k_cache, DeviceBuffer<float>::Allocate(cache));
      TPS_ASSIGN_OR_RETURN(l.v_cache, DeviceBuffer<float>::Allocate(cache));
      TPS_RETURN_IF_ERROR(l.k_cache.Zero());
      TPS_RETURN_IF_ERROR(l.v_cache.Zero());
      layers_.push_back(std::move(l));
    }
    TPS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return absl::OkStatus();
  }

  absl::Status Forward(const StepBatch& batch, const std::vector<int>& head_rows,
                       std::vector<float>* logits, StepTimings* timings) override;

  bool samples_on_device() const override { return true; }
  absl::Status ForwardSample(const StepBatch& batch, const std::vector<int>& head_rows,
                             const DeviceSampling& sampling, std::vector<int32_t>* tokens,
                             StepTimings* timings) override;

 private:
  struct Layer {
    DeviceBuffer<float> attn_norm;
    DeviceLinear qkv, o;
    DeviceBuffer<float> ffn_norm;
    DeviceLinear gate_up, down;
    DeviceBuffer<float> k_cache, v_cache;
  };

  // Stages the batch and enqueues its forward pass (from a graph or eagerly).
  absl::Status Launch(const StepBatch& batch, const std::vector<int>& head_rows,
                      StepTimings* timings);
  // Waits for the stream (and the collectives: their errors surface here).
  absl::Status Finish(StepTimings* timings);
  // Enqueues the step's launches on stream_ over the staged metadata and the
  // grown scratch (nothing here allocates or synchronises: it may be captured).
  absl::Status Enqueue(const StepShape& sh, const std::vector<int>& head_rows,
                       StepTimings* timings);
  // Grows the activation scratch for `sh` and `head_rows` LM-head rows.
  absl::Status GrowScratch(const StepShape& sh, int head_rows);
  bool GraphEligible(const StepLayout& layout, const std::vector<int>& head_rows) const;

  absl::Status AllReduce(float* buf, size_t count, StepTimings* timings) {
    if (comm_.world_size() == 1) return absl::OkStatus();
    const absl::Time t0 = absl::Now();
    absl::Status s = comm_.AllReduceSum(buf, count, CommDType::kF32, {.stream = stream_});
    timings->comm_s += Seconds(t0);
    return s;
  }

  const ModelConfig c_;
  const ShardPlan plan_;
  Communicator& comm_;
  const int device_;
  cudaStream_t stream_;
  const bool cuda_graphs_;
  KvCacheShape shape_;
  int num_blocks_ = 0;
  DeviceBuffer<uint8_t> embedding_;
  DType embedding_dtype_ = DType::kF32;
  DeviceLinear lm_head_;
  DeviceBuffer<float> output_norm_;
  std::vector<Layer> layers_;
  // Step metadata and activations, grown on demand.
  DeviceBuffer<int32_t> d_tokens_, d_pos_, d_cu_, d_starts_, d_tables_;
  DeviceBuffer<int64_t> d_slots_;
  DeviceBuffer<float> x_, h_, qkv_, attn_, proj_, gu_, act_, ws_, head_in_, head_out_, gathered_;
  // Device sampling: rows of parameters, histories, full-vocabulary logits
  // (multi-rank), workspace and the sampled ids. Not captured in graphs.
  DeviceBuffer<kc::SampleRow> d_sample_rows_;
  DeviceBuffer<int32_t> d_hist_tokens_, d_hist_counts_, d_ids_;
  DeviceBuffer<float> d_logits_;
  DeviceBuffer<double> d_sample_ws_;
  // Reallocations of the step buffers above (graphs_ was captured at
  // graphs_moves_); sampling buffers are never captured and count apart.
  uint64_t moves_ = 0;
  uint64_t sampling_moves_ = 0;
  uint64_t graphs_moves_ = 0;
  std::map<std::pair<int, int>, kc::CudaGraph> graphs_;  // (seqs, context) -> decode step
};

bool CudaForward::GraphEligible(const StepLayout& layout,
                                const std::vector<int>& head_rows) const {
  const int S = layout.num_seqs();
  if (!cuda_graphs_ || !layout.all_decode || S == 0 || S > kMaxGraphBatch) return false;
  if (static_cast<int>(head_rows.size()) != S) return false;
  for (int i = 0; i < S; ++i) {
    if (head_rows[i] != i) return false;
  }
  return true;
}

absl::Status CudaForward::GrowScratch(const StepShape& sh, int head_rows) {
  const RankDims d = RankDims::For(c_, plan_.mine());
  const size_t T = sh.num_tokens;
  TPS_RETURN_IF_ERROR(Grow(x_, T * d.hidden, &moves_));
  TPS_RETURN_IF_ERROR(Grow(h_, T * d.hidden, &moves_));
  TPS_RETURN_IF_ERROR(Grow(qkv_, T * d.qkv_dim, &moves_));
  TPS_RETURN_IF_ERROR(Grow(attn_, T * d.q_dim, &moves_));
  TPS_RETURN_IF_ERROR(Grow(proj_, T * d.hidden, &moves_));
  TPS_RETURN_IF_ERROR(Grow(gu_, T * 2 * d.ffn, &moves_));
  TPS_RETURN_IF_ERROR(Grow(act_, T * d.ffn, &moves_));
  if (sh.all_decode) {
    const int64_t ws = kc::DecodeAttentionWorkspaceFloats(sh.num_seqs, d.n_heads, d.head_dim,
                                                          sh.max_context);
    TPS_RETURN_IF_ERROR(Grow(ws_, static_cast<size_t>(std::max<int64_t>(ws, 1)), &moves_));
  }
  if (head_rows > 0) {
    const size_t padded = static_cast<size_t>(head_rows) * plan_.max_vocab_rows();
    TPS_RETURN_IF_ERROR(Grow(head_in_, static_cast<size_t>(head_rows) * d.hidden, &moves_));
    TPS_RETURN_IF_ERROR(Grow(head_out_, padded, &moves_));
    if (comm_.world_size() > 1) {
      TPS_RETURN_IF_ERROR(Grow(gathered_, padded * comm_.world_size(), &moves_));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaForward::Launch(const StepBatch& batch, const std::vector<int>& head_rows,
                                 StepTimings* timings) {
  TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  // Flatten the ragged batch exactly as the CPU backend does, then stage it.
  StepLayout layout = FlattenStep(batch, shape_.block_size);
  const bool graph = GraphEligible(layout, head_rows);
  if (graph) {
    PadDecodeLayout(BatchBucket(layout.num_seqs()), ContextBucket(layout.max_context),
                    shape_.block_size, &layout);
  }
  const StepShape sh{.num_seqs = layout.num_seqs(),
                     .num_tokens = layout.num_tokens(),
                     .max_blocks = layout.max_blocks,
                     .max_context = layout.max_context,
                     .all_decode = layout.all_decode};
  TPS_RETURN_IF_ERROR(Stage(layout.tokens, d_tokens_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(Stage(layout.positions, d_pos_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(Stage(layout.cu_q, d_cu_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(Stage(layout.starts, d_starts_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(Stage(layout.tables, d_tables_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(Stage(layout.slots, d_slots_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(GrowScratch(sh, graph ? sh.num_seqs : static_cast<int>(head_rows.size())));
  // The staged host vectors die with `layout`: the copies must be done.
  // (Stage's copies are ordered before everything below on the stream; a
  // pageable-memory cudaMemcpyAsync returns once the source is consumed.)
  if (!graph) return Enqueue(sh, head_rows, timings);
  if (graphs_moves_ != moves_) {  // some captured pointer moved
    graphs_.clear();
    graphs_moves_ = moves_;
  }
  const std::pair<int, int> key(sh.num_seqs, sh.max_context);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    std::vector<int> rows(sh.num_seqs);
    for (int i = 0; i < sh.num_seqs; ++i) rows[i] = i;
    TPS_ASSIGN_OR_RETURN(kc::CudaGraph g, kc::CudaGraph::Capture(stream_, [&]() -> absl::Status {
                           return Enqueue(sh, rows, timings);
                         }));
    it = graphs_.emplace(key, std::move(g)).first;
  }
  timings->graph_replay = true;
  return it->second.Launch(stream_);
}

absl::Status CudaForward::Finish(StepTimings* timings) {
  if (comm_.world_size() > 1) {
    const absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(comm_.Synchronize(stream_));
    timings->comm_s += Seconds(t0);
  }
  TPS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaForward::Forward(const StepBatch& batch, const std::vector<int>& head_rows,
                                  std::vector<float>* logits, StepTimings* timings) {
  TPS_RETURN_IF_ERROR(Launch(batch, head_rows, timings));
  TPS_RETURN_IF_ERROR(Finish(timings));
  const int R = static_cast<int>(head_rows.size());
  if (R == 0 || comm_.rank() != 0) return absl::OkStatus();
  // Rows [0, R) of the (padded) head output, every rank's slice.
  const int world = comm_.world_size();
  const int64_t maxv = plan_.max_vocab_rows();
  const float* all_dev = world > 1 ? gathered_.data() : head_out_.data();
  std::vector<float> all(static_cast<size_t>(R * maxv * world));
  TPS_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(all.data(), all_dev, all.size() * sizeof(float), cudaMemcpyDeviceToHost));
  ScatterVocabSlices(plan_, all.data(), R, maxv, c_.vocab_size, logits);
  return absl::OkStatus();
}

absl::Status CudaForward::ForwardSample(const StepBatch& batch, const std::vector<int>& head_rows,
                                        const DeviceSampling& sampling,
                                        std::vector<int32_t>* tokens, StepTimings* timings) {
  TPS_RETURN_IF_ERROR(Launch(batch, head_rows, timings));
  const int R = static_cast<int>(head_rows.size());
  if (R == 0 || comm_.rank() != 0) return Finish(timings);
  if (static_cast<int>(sampling.params.size()) != R ||
      static_cast<int>(sampling.uniforms.size()) != R ||
      static_cast<int>(sampling.history_begin.size()) != R + 1) {
    TPS_RETURN_IF_ERROR(Finish(timings));
    return absl::InvalidArgumentError("ForwardSample: one sampling row per head row is needed");
  }
  const int V = c_.vocab_size;
  const int world = comm_.world_size();
  const int64_t maxv = plan_.max_vocab_rows();
  // (R, V) logits: the head output itself on one rank (row stride maxv = V),
  // else each rank's gathered slice copied into its vocabulary columns.
  float* logits = head_out_.data();
  if (world > 1) {
    TPS_RETURN_IF_ERROR(Grow(d_logits_, static_cast<size_t>(R) * V, &sampling_moves_));
    logits = d_logits_.data();
    for (int rk = 0; rk < world; ++rk) {
      const IndexRange& v = plan_.shard(rk).vocab;
      TPS_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
          logits + v.begin, sizeof(float) * V, gathered_.data() + int64_t{rk} * R * maxv,
          sizeof(float) * maxv, sizeof(float) * v.count, R, cudaMemcpyDeviceToDevice, stream_));
    }
  }
  std::vector<kc::SampleRow> rows(R);
  for (int r = 0; r < R; ++r) {
    const SamplingParams& p = sampling.params[r];
    rows[r] = {.temperature = p.temperature,
               .top_k = p.top_k,
               .top_p = p.top_p,
               .min_p = p.min_p,
               .repetition_penalty = p.repetition_penalty,
               .presence_penalty = p.presence_penalty,
               .frequency_penalty = p.frequency_penalty,
               .history_begin = sampling.history_begin[r],
               .history_end = sampling.history_begin[r + 1],
               .uniform = sampling.uniforms[r]};
  }
  TPS_RETURN_IF_ERROR(Stage(rows, d_sample_rows_, stream_, &sampling_moves_));
  TPS_RETURN_IF_ERROR(Stage(sampling.history_tokens, d_hist_tokens_, stream_, &sampling_moves_));
  TPS_RETURN_IF_ERROR(
      Stage(sampling.history_output_counts, d_hist_counts_, stream_, &sampling_moves_));
  TPS_RETURN_IF_ERROR(Grow(d_sample_ws_, static_cast<size_t>(R) * V, &sampling_moves_));
  TPS_RETURN_IF_ERROR(Grow(d_ids_, static_cast<size_t>(R), &sampling_moves_));
  TPS_RETURN_IF_ERROR(kc::Sample({.logits = logits,
                                  .stride = world > 1 ? V : maxv,
                                  .row_params = d_sample_rows_.data(),
                                  .history_tokens = d_hist_tokens_.data(),
                                  .history_output_counts = d_hist_counts_.data(),
                                  .workspace = d_sample_ws_.data(),
                                  .ids = d_ids_.data(),
                                  .rows = R,
                                  .vocab = V},
                                 {.cuda_stream = stream_}));
  tokens->resize(R);
  TPS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tokens->data(), d_ids_.data(), sizeof(int32_t) * R,
                                           cudaMemcpyDeviceToHost, stream_));
  return Finish(timings);
}

absl::Status CudaForward::Enqueue(const StepShape& sh, const std::vector<int>& head_rows,
                                  StepTimings* timings) {
  const RankShard& me = plan_.mine();
  const RankDims d = RankDims::For(c_, me);
  const int H = d.hidden;
  const int F = d.ffn;
  const int T = sh.num_tokens;
  const kernels::Stream s{.cuda_stream = stream_};
  const StepArrays a{.tokens = d_tokens_.data(),
                     .positions = d_pos_.data(),
                     .slots = d_slots_.data(),
                     .cu_q = d_cu_.data(),
                     .starts = d_starts_.data(),
                     .tables = d_tables_.data(),
                     .num_seqs = sh.num_seqs,
                     .num_tokens = T,
                     .max_blocks = sh.max_blocks};
  const int64_t ws_floats =
      sh.all_decode ? kc::DecodeAttentionWorkspaceFloats(sh.num_seqs, d.n_heads, d.head_dim,
                                                         sh.max_context)
                    : 0;

  // (T, H) embedding: each rank fills the rows of its vocabulary slice.
  TPS_RETURN_IF_ERROR(kc::Embedding(
      MakeEmbeddingParams(me, H, embedding_.data(), embedding_dtype_, a, x_.data()), s));
  TPS_RETURN_IF_ERROR(AllReduce(x_.data(), size_t{1} * T * H, timings));

  // The first layer's attention norm; every later norm is fused with the
  // residual add before it (AddRmsNorm), the last add stands alone.
  TPS_RETURN_IF_ERROR(kc::RmsNorm({.x = x_.data(),
                                   .weight = layers_.front().attn_norm.data(),
                                   .y = h_.data(),
                                   .rows = T,
                                   .dim = H,
                                   .eps = c_.rms_norm_eps},
                                  s));
  for (size_t li = 0; li < layers_.size(); ++li) {
    Layer& l = layers_[li];
    const LayerKvCache cache{.k = l.k_cache.data(),
                             .v = l.v_cache.data(),
                             .block_size = shape_.block_size,
                             .num_blocks = num_blocks_};
    TPS_RETURN_IF_ERROR(RunLinear(l.qkv, h_.data(), T, qkv_.data(), d.qkv_dim, s));
    TPS_RETURN_IF_ERROR(kc::RopeKvWrite(MakeRopeParams(c_, d, a, qkv_.data()),
                                        MakeKvCacheWriteParams(d, a, qkv_.data(), cache), s));
    const kernels::PagedAttentionParams ap =
        MakeAttentionParams(d, a, qkv_.data(), cache, attn_.data());
    // Decode: split-KV. Prefill-heavy batches (the bf16 tensor-core GEMM
    // range): tensor-core attention. Small mixed batches: f32 flash kernel.
    if (sh.all_decode) {
      TPS_RETURN_IF_ERROR(
          kc::PagedAttentionDecode(ap, sh.max_context, ws_.data(), ws_floats, s));
    } else if (T > kc::kSkinnyGemmMaxRows) {
      TPS_RETURN_IF_ERROR(kc::PagedAttentionPrefill(ap, s));
    } else {
      TPS_RETURN_IF_ERROR(kc::PagedAttention(ap, s));
    }
    TPS_RETURN_IF_ERROR(RunLinear(l.o, attn_.data(), T, proj_.data(), H, s));  // partial
    TPS_RETURN_IF_ERROR(AllReduce(proj_.data(), size_t{1} * T * H, timings));
    TPS_RETURN_IF_ERROR(kc::AddRmsNorm({.x = x_.data(),
                                        .residual = proj_.data(),
                                        .weight = l.ffn_norm.data(),
                                        .y = h_.data(),
                                        .rows = T,
                                        .dim = H,
                                        .eps = c_.rms_norm_eps},
                                       s));
    if (T <= kc::kSkinnyGemmMaxRows && l.gate_up.parts.size() == 1) {
      // Decode-sized: the gate/up GEMM writes silu(gate) * up directly.
      const DeviceLinear::Part& gu = l.gate_up.parts[0];
      TPS_RETURN_IF_ERROR(kc::GemmSwiglu({.x = h_.data(),
                                          .w = gu.weight.data(),
                                          .w_dtype = gu.dtype,
                                          .bias = gu.bias.size() > 0 ? gu.bias.data() : nullptr,
                                          .y = act_.data(),
                                          .m = T,
                                          .n = 2 * F,
                                          .k = H},
                                         s));
    } else {
      TPS_RETURN_IF_ERROR(RunLinear(l.gate_up, h_.data(), T, gu_.data(), 2 * F, s));
      TPS_RETURN_IF_ERROR(kc::Swiglu({.gate = gu_.data(),
                                      .up = gu_.data() + F,
                                      .out = act_.data(),
                                      .rows = T,
                                      .dim = F,
                                      .gate_stride = 2 * F,
                                      .up_stride = 2 * F},
                                     s));
    }
    TPS_RETURN_IF_ERROR(RunLinear(l.down, act_.data(), T, proj_.data(), H, s));  // partial
    TPS_RETURN_IF_ERROR(AllReduce(proj_.data(), size_t{1} * T * H, timings));
    if (li + 1 < layers_.size()) {
      TPS_RETURN_IF_ERROR(kc::AddRmsNorm({.x = x_.data(),
                                          .residual = proj_.data(),
                                          .weight = layers_[li + 1].attn_norm.data(),
                                          .y = h_.data(),
                                          .rows = T,
                                          .dim = H,
                                          .eps = c_.rms_norm_eps},
                                         s));
    } else {
      TPS_RETURN_IF_ERROR(
          kc::Add({.a = x_.data(), .b = proj_.data(), .y = x_.data(), .n = int64_t{T} * H}, s));
    }
  }

  // LM head on the sampled rows, padded to the largest vocabulary slice so
  // the all-gather has equal counts. Consecutive rows (every decode step)
  // are normalised in one launch.
  const int R = static_cast<int>(head_rows.size());
  if (R == 0) return absl::OkStatus();
  const int64_t maxv = plan_.max_vocab_rows();
  bool consecutive = true;
  for (int r = 1; r < R; ++r) consecutive = consecutive && head_rows[r] == head_rows[0] + r;
  for (int r = 0; r < R; r += consecutive ? R : 1) {
    TPS_RETURN_IF_ERROR(kc::RmsNorm({.x = x_.data() + size_t{1} * head_rows[r] * H,
                                     .weight = output_norm_.data(),
                                     .y = head_in_.data() + size_t{1} * r * H,
                                     .rows = consecutive ? R : 1,
                                     .dim = H,
                                     .eps = c_.rms_norm_eps},
                                    s));
  }
  TPS_RETURN_IF_ERROR(RunLinear(lm_head_, head_in_.data(), R, head_out_.data(), maxv, s));
  if (comm_.world_size() > 1) {
    const absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(comm_.AllGather(head_out_.data(), gathered_.data(), R * maxv,
                                        CommDType::kF32, {.stream = stream_}));
    timings->comm_s += Seconds(t0);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaForward(const ModelConfig& config,
                                                                  ShardPlan plan,
                                                                  Communicator& comm, int device,
                                                                  bool cuda_graphs) {
  const int count = ::tpserve::cuda::DeviceCount();
  if (count == 0) {
    return absl::FailedPreconditionError(
        "backend=cuda: no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
        "hides them); use backend=cpu on this machine");
  }
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("backend=cuda: device ", device, " does not exist (", count, " visible)"));
  }
  if (config.head_dim > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend=cuda: head_dim ", config.head_dim,
        " is above 256, the largest the CUDA attention kernels support; use backend=cpu"));
  }
  if (comm.world_size() > 1 && comm.backend() != "nccl") {
    return absl::FailedPreconditionError(
        absl::StrCat("backend=cuda with ", comm.world_size(),
                     " ranks needs the nccl communicator (collectives on device buffers); got ",
                     comm.backend()));
  }
  TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaStream_t stream = nullptr;
  TPS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<ForwardBackend>(
      new CudaForward(config, std::move(plan), comm, device, stream, cuda_graphs));
}

}  // namespace tpserve
