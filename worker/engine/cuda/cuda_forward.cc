#include "worker/engine/cuda/cuda_forward.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"

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

// Grows `b` to at least `n` elements (contents are not kept).
template <typename T>
absl::Status Grow(DeviceBuffer<T>& b, size_t n) {
  if (b.size() >= n) return absl::OkStatus();
  b = DeviceBuffer<T>();  // free first: scratch can be large
  TPS_ASSIGN_OR_RETURN(b, DeviceBuffer<T>::Allocate(n));
  return absl::OkStatus();
}

// Copies `host` into the grown device buffer `d` on `stream`. The host vector
// must stay alive until the stream reaches the copy (Forward synchronises
// before its host vectors go out of scope).
template <typename T>
absl::Status Stage(const std::vector<T>& host, DeviceBuffer<T>& d, cudaStream_t stream) {
  TPS_RETURN_IF_ERROR(Grow(d, std::max<size_t>(host.size(), 1)));
  if (host.empty()) return absl::OkStatus();
  TPS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d.data(), host.data(), host.size() * sizeof(T),
                                           cudaMemcpyHostToDevice, stream));
  return absl::OkStatus();
}

kernels::RopeScalingType ToKernel(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::kLinear:
      return kernels::RopeScalingType::kLinear;
    case RopeScaling::Type::kLlama3:
      return kernels::RopeScalingType::kLlama3;
    case RopeScaling::Type::kNone:
      break;
  }
  return kernels::RopeScalingType::kNone;
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

class CudaForward final : public ForwardBackend {
 public:
  CudaForward(const ModelConfig& config, ShardPlan plan, Communicator& comm, int device,
              cudaStream_t stream)
      : c_(config), plan_(std::move(plan)), comm_(comm), device_(device), stream_(stream) {}

  ~CudaForward() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
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

  absl::Status Load(const ShardWeights& w, const KvCacheShape& shape, int num_blocks) override {
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

 private:
  struct Layer {
    DeviceBuffer<float> attn_norm;
    DeviceLinear qkv, o;
    DeviceBuffer<float> ffn_norm;
    DeviceLinear gate_up, down;
    DeviceBuffer<float> k_cache, v_cache;
  };

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
};

absl::Status CudaForward::Forward(const StepBatch& batch, const std::vector<int>& head_rows,
                                  std::vector<float>* logits, StepTimings* timings) {
  TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  const RankShard& me = plan_.mine();
  const int H = c_.hidden_size;
  const int hd = c_.head_dim;
  const int nq = static_cast<int>(me.q_heads.count);
  const int nkv = static_cast<int>(me.kv_heads.count);
  const int qdim = nq * hd;
  const int kvdim = nkv * hd;
  const int nqkv = qdim + 2 * kvdim;
  const int F = static_cast<int>(me.ffn.count);
  const int bs = shape_.block_size;
  const kernels::Stream s{.cuda_stream = stream_};

  // Flatten the ragged batch exactly as the CPU engine does.
  const int S = static_cast<int>(batch.seqs.size());
  std::vector<int32_t> tokens, positions, cu_q(S + 1, 0), starts(S);
  std::vector<int64_t> slots;
  int max_blocks = 1, max_context = 1;
  bool all_decode = true;
  for (int i = 0; i < S; ++i) {
    const SequenceInput& q = batch.seqs[i];
    for (size_t j = 0; j < q.tokens.size(); ++j) {
      const int32_t pos = q.start_pos + static_cast<int32_t>(j);
      tokens.push_back(q.tokens[j]);
      positions.push_back(pos);
      slots.push_back(int64_t{q.block_table[pos / bs]} * bs + pos % bs);
    }
    cu_q[i + 1] = static_cast<int32_t>(tokens.size());
    starts[i] = q.start_pos;
    const int end = q.start_pos + static_cast<int>(q.tokens.size());
    max_context = std::max(max_context, end);
    max_blocks = std::max(max_blocks, (end + bs - 1) / bs);
    all_decode = all_decode && q.tokens.size() == 1;
  }
  std::vector<int32_t> tables(static_cast<size_t>(S) * max_blocks, 0);
  for (int i = 0; i < S; ++i) {
    const std::vector<int32_t>& bt = batch.seqs[i].block_table;
    std::copy_n(bt.begin(), std::min<size_t>(bt.size(), max_blocks),
                tables.begin() + static_cast<size_t>(i) * max_blocks);
  }
  const int T = static_cast<int>(tokens.size());
  TPS_RETURN_IF_ERROR(Stage(tokens, d_tokens_, stream_));
  TPS_RETURN_IF_ERROR(Stage(positions, d_pos_, stream_));
  TPS_RETURN_IF_ERROR(Stage(cu_q, d_cu_, stream_));
  TPS_RETURN_IF_ERROR(Stage(starts, d_starts_, stream_));
  TPS_RETURN_IF_ERROR(Stage(tables, d_tables_, stream_));
  TPS_RETURN_IF_ERROR(Stage(slots, d_slots_, stream_));
  TPS_RETURN_IF_ERROR(Grow(x_, size_t{1} * T * H));
  TPS_RETURN_IF_ERROR(Grow(h_, size_t{1} * T * H));
  TPS_RETURN_IF_ERROR(Grow(qkv_, size_t{1} * T * nqkv));
  TPS_RETURN_IF_ERROR(Grow(attn_, size_t{1} * T * qdim));
  TPS_RETURN_IF_ERROR(Grow(proj_, size_t{1} * T * H));
  TPS_RETURN_IF_ERROR(Grow(gu_, size_t{1} * T * 2 * F));
  TPS_RETURN_IF_ERROR(Grow(act_, size_t{1} * T * F));
  int64_t ws_floats = 0;
  if (all_decode) {
    ws_floats = kc::DecodeAttentionWorkspaceFloats(S, nq, hd, max_context);
    TPS_RETURN_IF_ERROR(Grow(ws_, static_cast<size_t>(std::max<int64_t>(ws_floats, 1))));
  }

  // (T, H) embedding: each rank fills the rows of its vocabulary slice.
  kernels::EmbeddingParams ep;
  ep.table = embedding_.data();
  ep.dtype = embedding_dtype_;
  ep.tokens = d_tokens_.data();
  ep.out = x_.data();
  ep.num_tokens = T;
  ep.dim = H;
  ep.rows = static_cast<int>(me.vocab.count);
  ep.row_offset = static_cast<int>(me.vocab.begin);
  TPS_RETURN_IF_ERROR(kc::Embedding(ep, s));
  TPS_RETURN_IF_ERROR(AllReduce(x_.data(), size_t{1} * T * H, timings));

  for (Layer& l : layers_) {
    TPS_RETURN_IF_ERROR(kc::RmsNorm({.x = x_.data(),
                                     .weight = l.attn_norm.data(),
                                     .y = h_.data(),
                                     .rows = T,
                                     .dim = H,
                                     .eps = c_.rms_norm_eps},
                                    s));
    TPS_RETURN_IF_ERROR(RunLinear(l.qkv, h_.data(), T, qkv_.data(), nqkv, s));
    float* q = qkv_.data();
    float* k = q + qdim;
    float* v = k + kvdim;
    kernels::RopeParams rp;
    rp.q = q;
    rp.k = k;
    rp.positions = d_pos_.data();
    rp.tokens = T;
    rp.n_heads = nq;
    rp.n_kv_heads = nkv;
    rp.head_dim = hd;
    rp.q_stride = nqkv;
    rp.k_stride = nqkv;
    rp.theta = c_.rope_theta;
    rp.neox = c_.rope_neox;
    rp.scaling = ToKernel(c_.rope_scaling.type);
    rp.factor = c_.rope_scaling.factor;
    rp.low_freq_factor = c_.rope_scaling.low_freq_factor;
    rp.high_freq_factor = c_.rope_scaling.high_freq_factor;
    rp.original_max_position = c_.rope_scaling.original_max_position;
    TPS_RETURN_IF_ERROR(kc::Rope(rp, s));
    kernels::KvCacheWriteParams kw;
    kw.k = k;
    kw.v = v;
    kw.k_cache = l.k_cache.data();
    kw.v_cache = l.v_cache.data();
    kw.slot_mapping = d_slots_.data();
    kw.tokens = T;
    kw.n_kv_heads = nkv;
    kw.head_dim = hd;
    kw.block_size = bs;
    kw.num_blocks = num_blocks_;
    kw.k_stride = nqkv;
    kw.v_stride = nqkv;
    TPS_RETURN_IF_ERROR(kc::KvCacheWrite(kw, s));
    kernels::PagedAttentionParams ap;
    ap.q = q;
    ap.k_cache = l.k_cache.data();
    ap.v_cache = l.v_cache.data();
    ap.out = attn_.data();
    ap.block_tables = d_tables_.data();
    ap.cu_q_lens = d_cu_.data();
    ap.start_pos = d_starts_.data();
    ap.num_seqs = S;
    ap.max_blocks_per_seq = max_blocks;
    ap.n_heads = nq;
    ap.n_kv_heads = nkv;
    ap.head_dim = hd;
    ap.block_size = bs;
    ap.num_blocks = num_blocks_;
    ap.q_stride = nqkv;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    TPS_RETURN_IF_ERROR(all_decode
                            ? kc::PagedAttentionDecode(ap, max_context, ws_.data(), ws_floats, s)
                            : kc::PagedAttention(ap, s));
    TPS_RETURN_IF_ERROR(RunLinear(l.o, attn_.data(), T, proj_.data(), H, s));  // partial
    TPS_RETURN_IF_ERROR(AllReduce(proj_.data(), size_t{1} * T * H, timings));
    TPS_RETURN_IF_ERROR(
        kc::Add({.a = x_.data(), .b = proj_.data(), .y = x_.data(), .n = int64_t{T} * H}, s));
    TPS_RETURN_IF_ERROR(kc::RmsNorm({.x = x_.data(),
                                     .weight = l.ffn_norm.data(),
                                     .y = h_.data(),
                                     .rows = T,
                                     .dim = H,
                                     .eps = c_.rms_norm_eps},
                                    s));
    TPS_RETURN_IF_ERROR(RunLinear(l.gate_up, h_.data(), T, gu_.data(), 2 * F, s));
    TPS_RETURN_IF_ERROR(kc::Swiglu({.gate = gu_.data(),
                                    .up = gu_.data() + F,
                                    .out = act_.data(),
                                    .rows = T,
                                    .dim = F,
                                    .gate_stride = 2 * F,
                                    .up_stride = 2 * F},
                                   s));
    TPS_RETURN_IF_ERROR(RunLinear(l.down, act_.data(), T, proj_.data(), H, s));  // partial
    TPS_RETURN_IF_ERROR(AllReduce(proj_.data(), size_t{1} * T * H, timings));
    TPS_RETURN_IF_ERROR(
        kc::Add({.a = x_.data(), .b = proj_.data(), .y = x_.data(), .n = int64_t{T} * H}, s));
  }

  // LM head on the sampled rows, padded to the largest vocabulary slice so
  // the all-gather has equal counts.
  const int R = static_cast<int>(head_rows.size());
  const int64_t maxv = plan_.max_vocab_rows();
  const int world = comm_.world_size();
  if (R > 0) {
    TPS_RETURN_IF_ERROR(Grow(head_in_, size_t{1} * R * H));
    TPS_RETURN_IF_ERROR(Grow(head_out_, static_cast<size_t>(R * maxv)));
    for (int r = 0; r < R; ++r) {
      TPS_RETURN_IF_ERROR(kc::RmsNorm({.x = x_.data() + size_t{1} * head_rows[r] * H,
                                       .weight = output_norm_.data(),
                                       .y = head_in_.data() + size_t{1} * r * H,
                                       .rows = 1,
                                       .dim = H,
                                       .eps = c_.rms_norm_eps},
                                      s));
    }
    TPS_RETURN_IF_ERROR(RunLinear(lm_head_, head_in_.data(), R, head_out_.data(), maxv, s));
    if (world > 1) {
      TPS_RETURN_IF_ERROR(Grow(gathered_, static_cast<size_t>(R * maxv * world)));
      const absl::Time t0 = absl::Now();
      TPS_RETURN_IF_ERROR(comm_.AllGather(head_out_.data(), gathered_.data(), R * maxv,
                                          CommDType::kF32, {.stream = stream_}));
      timings->comm_s += Seconds(t0);
    }
  }
  // One wait per step: collective errors (and timeouts) surface here.
  if (world > 1) {
    const absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(comm_.Synchronize(stream_));
    timings->comm_s += Seconds(t0);
  }
  TPS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  if (R == 0 || comm_.rank() != 0) return absl::OkStatus();
  const float* all_dev = world > 1 ? gathered_.data() : head_out_.data();
  std::vector<float> all(static_cast<size_t>(R * maxv * world));
  TPS_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(all.data(), all_dev, all.size() * sizeof(float), cudaMemcpyDeviceToHost));
  logits->assign(static_cast<size_t>(R) * c_.vocab_size, 0.0f);
  for (int rk = 0; rk < world; ++rk) {
    const IndexRange& vr = plan_.shard(rk).vocab;
    for (int r = 0; r < R; ++r) {
      std::copy_n(all.data() + (rk * R + r) * maxv, vr.count,
                  logits->data() + size_t{1} * r * c_.vocab_size + vr.begin);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaForward(const ModelConfig& config,
                                                                  ShardPlan plan,
                                                                  Communicator& comm, int device) {
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
      new CudaForward(config, std::move(plan), comm, device, stream));
}

}  // namespace tpserve
