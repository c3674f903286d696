#include "worker/engine/cuda/cuda_forward.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/elapsed.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "worker/engine/cuda/device_sampler.h"
#include "worker/engine/cuda/device_weights.h"
#include "worker/engine/cuda/graph_cache.h"
#include "worker/engine/cuda/layer_enqueue.h"
#include "worker/engine/cuda/pinned_staging.h"
#include "worker/engine/forward_common.h"

namespace tpserve {
namespace {

namespace kc = kernels::cuda;

// EngineOptions::cuda_prefill_gemm's kernel on the current device (wgmma
// kernels only on sm_90; "mma" elsewhere).
absl::StatusOr<kc::Bf16Gemm> PrefillGemm(const std::string& name) {
  if (name == "mma") return kc::Bf16Gemm::kMma;
  if (name == "mma_dequant") return kc::Bf16Gemm::kMmaDequant;
  if (name != "wgmma" && name != "wgmma_tma") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend=cuda: cuda_prefill_gemm must be mma, mma_dequant, wgmma or "
                     "wgmma_tma; got \"",
                     name, "\""));
  }
  if (!kc::WgmmaSupported()) return kc::Bf16Gemm::kMma;
  return name == "wgmma" ? kc::Bf16Gemm::kWgmma : kc::Bf16Gemm::kWgmmaTma;
}

// What became of EngineOptions::cuda_persistent_decode.
enum class Persistent {
  kOff,          // not asked for
  kIgnored,      // asked for at TP > 1 or with tp_invariant
  kAtLoad,       // asked for; Load decides
  kUnsupported,  // not for this model or device (PersistentLayerTable built none)
  kOn,           // one-sequence decode steps run DecodeStepPersistent
  kFailed,       // it failed once; every later step runs per kernel
};

// kernels()'s words for `p`; `failure`: why, for kFailed.
std::string PersistentWords(Persistent p, const absl::Status& failure) {
  switch (p) {
    case Persistent::kOff:
      return "";
    case Persistent::kIgnored:
      return ", --cuda_persistent_decode ignored (it needs one rank and no --tp_invariant)";
    case Persistent::kAtLoad:
      return ", one-sequence decode steps as one cooperative kernel if the model allows";
    case Persistent::kUnsupported:
      return ", --cuda_persistent_decode ignored: it needs Q8_0, Q4_0 or Q4_1 weights in one "
             "part per linear, head_dim <= 128, an f32 or bf16 KV cache and a device with "
             "cooperative launches";
    case Persistent::kOn:
      return ", one-sequence decode steps as one cooperative kernel";
    case Persistent::kFailed:
      return absl::StrCat(", one-sequence decode steps per kernel: the cooperative kernel failed (",
                          failure.ToString(), ")");
  }
  return "";
}

// ForwardBackend::kernels() on the current device: what the options asked
// for and what this device runs of it (but cuda_persistent_decode, which
// Load and the steps decide: PersistentWords).
std::string KernelsLine(const ForwardBackendOptions& o, kc::Bf16Gemm prefill_gemm) {
  const bool pdl = kc::ProgrammaticLaunchSupported();
  return absl::StrCat("CUDA kernels: prefill GEMMs on ",
                      prefill_gemm == kc::Bf16Gemm::kWgmma      ? "wgmma"
                      : prefill_gemm == kc::Bf16Gemm::kWgmmaTma ? "wgmma with TMA loads"
                      : prefill_gemm == kc::Bf16Gemm::kMmaDequant
                          ? "mma.sync, quantized weights dequantised in the kernel"
                          : "mma.sync",
                      o.cuda_prefill_gemm != "mma" && prefill_gemm == kc::Bf16Gemm::kMma
                          ? absl::StrCat(" (--cuda_prefill_gemm=", o.cuda_prefill_gemm,
                                         " ignored: it needs compute capability 9.x)")
                          : "",
                      ", programmatic dependent launch ",
                      !o.cuda_pdl ? "off"
                      : pdl       ? "on"
                                  : "off (--cuda_pdl needs compute capability 9.0+)",
                      ", decode graphs ", o.cuda_graphs ? "on" : "off",
                      o.cuda_l2_prefetch ? ", L2 prefetch of the next GEMM's weights on" : "");
}

Persistent PersistentAsked(const ForwardBackendOptions& o, const Communicator& comm) {
  if (!o.cuda_persistent_decode) return Persistent::kOff;
  return comm.world_size() == 1 && !o.tp_invariant ? Persistent::kAtLoad : Persistent::kIgnored;
}

class CudaForward final : public ForwardBackend {
 public:
  CudaForward(const ModelConfig& config, ShardPlan plan, Communicator& comm, cudaStream_t stream,
              const ForwardBackendOptions& options, kc::Bf16Gemm prefill_gemm)
      : c_(config),
        plan_(std::move(plan)),
        comm_(comm),
        device_(options.device),
        stream_(stream),
        programmatic_(options.cuda_pdl),
        l2_prefetch_(options.cuda_l2_prefetch),
        prefill_gemm_(prefill_gemm),
        tp_invariant_(options.tp_invariant),
        persistent_(PersistentAsked(options, comm)),
        kernels_(KernelsLine(options, prefill_gemm_)),
        persistent_words_(PersistentWords(persistent_, absl::OkStatus())),
        graphs_(options.cuda_graphs) {}

  ~CudaForward() override {
    cudaSetDevice(device_);
    // A step abandoned with collectives in flight (a peer died) never drains
    // by itself: wait at most the communicator's timeout, then abort it so
    // its kernels exit, before waiting for the stream.
    if (comm_.world_size() > 1 && !comm_.Synchronize(stream_).ok()) comm_.Abort();
    cudaStreamSynchronize(stream_);
    graphs_.Clear();
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  std::string kernels() const override {
    absl::MutexLock lock(&persistent_mu_);
    return kernels_ + persistent_words_;
  }

  absl::Status AllGatherI64(int64_t mine, std::vector<int64_t>* all) override {
    const int world = comm_.world_size();
    all->assign(world, mine);
    if (world == 1) return absl::OkStatus();
    TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    TPS_ASSIGN_OR_RETURN(DeviceBuffer<int64_t> send, DeviceBuffer<int64_t>::Allocate(1));
    TPS_ASSIGN_OR_RETURN(DeviceBuffer<int64_t> recv, DeviceBuffer<int64_t>::Allocate(world));
    // Upload and read back on stream_, where the all-gather runs: stream_ is
    // non-blocking, so legacy-stream copies (cudaMemcpy) are not ordered with
    // it. `mine` outlives the copy: the stream is synchronised below.
    TPS_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(send.data(), &mine, sizeof(mine), cudaMemcpyHostToDevice, stream_));
    TPS_RETURN_IF_ERROR(
        comm_.AllGather(send.data(), recv.data(), 1, CommDType::kI64, {.stream = stream_}));
    TPS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(all->data(), recv.data(), sizeof(int64_t) * world,
                                             cudaMemcpyDeviceToHost, stream_));
    TPS_RETURN_IF_ERROR(comm_.Synchronize(stream_));
    TPS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  // Uploads `w`; the host copies are dropped when it goes out of scope.
  absl::Status Load(ShardWeights w, const KvCacheShape& shape, int num_blocks) override {
    TPS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    // Captured graphs point at the weights and KV cache about to be freed.
    TPS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    graphs_.Clear();
    ++moves_;
    TPS_ASSIGN_OR_RETURN(embedding_,
                         Upload(w.embedding.data, static_cast<size_t>(w.embedding.bytes)));
    embedding_dtype_ = w.embedding.dtype;
    TPS_ASSIGN_OR_RETURN(lm_head_, UploadLinear(w.lm_head));
    TPS_ASSIGN_OR_RETURN(output_norm_, Upload(w.output_norm.data(), w.output_norm.size()));
    shape_ = shape;
    num_blocks_ = num_blocks;
    // Per layer and side: the engine's host pool layout (kv_cache_pool.h)
    // in shape.dtype, f32 or bf16.
    const size_t cache_bytes = static_cast<size_t>(num_blocks) * shape.block_size *
                               shape.n_kv_heads * shape.head_dim * tpserve::BlockBytes(shape.dtype);
    layers_.clear();
    for (const LayerWeights& lw : w.layers) {
      TPS_ASSIGN_OR_RETURN(DeviceLayer l, UploadLayer(lw, cache_bytes));
      layers_.push_back(std::move(l));
    }
    persistent_layers_ = DeviceBuffer<kc::DecodeLayerPointers>();
    if (persistent_ != Persistent::kOff && persistent_ != Persistent::kIgnored) {
      const std::vector<kc::DecodeLayerPointers> table =
          PersistentLayerTable(layers_, shape.head_dim, shape.dtype, &persistent_dtype_);
      if (!table.empty()) {
        TPS_ASSIGN_OR_RETURN(persistent_layers_, Upload(table.data(), table.size()));
      }
      SetPersistent(table.empty() ? Persistent::kUnsupported : Persistent::kOn, absl::OkStatus());
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
  // Stages the batch and enqueues its forward pass (from a graph or eagerly).
  absl::Status Launch(const StepBatch& batch, const std::vector<int>& head_rows,
                      StepTimings* timings);
  // Waits for the stream (and the collectives: their errors surface here).
  absl::Status Finish(StepTimings* timings);
  // Enqueues the step's launches on stream_ over the staged metadata and the
  // grown scratch (nothing here allocates or synchronises: it may be captured).
  absl::Status Enqueue(const StepShape& sh, const std::vector<int>& head_rows,
                       StepTimings* timings);
  // The layers of `step` (between the embedding and the LM head): one
  // cooperative kernel while persistent_ is kOn, else per kernel.
  absl::Status EnqueueLayers(const LayerStep& step);
  // Grows the activation scratch for `sh` and `head_rows` LM-head rows.
  absl::Status GrowScratch(const StepShape& sh, int head_rows);
  // Sets persistent_ and kernels()'s words for it.
  void SetPersistent(Persistent p, const absl::Status& failure) {
    persistent_ = p;
    absl::MutexLock lock(&persistent_mu_);
    persistent_words_ = PersistentWords(p, failure);
  }
  // The cooperative kernel failed to launch (a driver that takes no
  // cooperative launch into a graph, or fewer SMs free than its occupancy
  // query counted): this and every later step run per kernel. Graphs
  // captured with it are dropped (moves_), and the failure is logged once.
  void DropPersistent(const absl::Status& failure);

  absl::Status AllReduce(void* buf, size_t count, CommDType dtype, StepTimings* timings) {
    if (comm_.world_size() == 1) return absl::OkStatus();
    const absl::Time t0 = absl::Now();
    absl::Status s = comm_.AllReduceSum(buf, count, dtype, {.stream = stream_});
    timings->comm_s += SecondsSince(t0);
    return s;
  }

  const ModelConfig c_;
  const ShardPlan plan_;
  Communicator& comm_;
  const int device_;
  cudaStream_t stream_;
  const bool programmatic_;                     // kernels::Stream::programmatic
  const bool l2_prefetch_;                      // LayerStep::l2_prefetch
  const kernels::cuda::Bf16Gemm prefill_gemm_;  // GemmViaBf16's kernel (cuda_prefill_gemm)
  const bool tp_invariant_;
  Persistent persistent_;      // cuda_persistent_decode: set at Load, kFailed by DropPersistent
  const std::string kernels_;  // kernels() but persistent_'s words: fixed at creation
  mutable absl::Mutex persistent_mu_;
  std::string persistent_words_ ABSL_GUARDED_BY(persistent_mu_);  // PersistentWords(persistent_)
  KvCacheShape shape_;
  int num_blocks_ = 0;
  DeviceBuffer<uint8_t> embedding_;
  DType embedding_dtype_ = DType::kF32;
  DeviceLinear lm_head_;
  DeviceBuffer<float> output_norm_;
  std::vector<DeviceLayer> layers_;
  // EnqueuePersistentLayers' table of layers_ (kept after a failure: a
  // capture may be using it).
  DeviceBuffer<kc::DecodeLayerPointers> persistent_layers_;
  DType persistent_dtype_ = DType::kQ4_1;
  // Step metadata and activations, grown on demand; `moves_` counts their
  // reallocations (graphs_ replays only what was captured at the same count).
  DeviceBuffer<int32_t> d_tokens_, d_pos_, d_cu_, d_starts_, d_tables_;
  DeviceBuffer<int64_t> d_slots_;
  DeviceBuffer<float> x_, h_, qkv_, attn_, proj_, gu_, act_, ws_, head_in_, head_out_, gathered_;
  DeviceBuffer<int64_t> fixed_;  // (T, H) row-parallel partials, tp_invariant_
  DeviceBuffer<uint16_t> bf16_;  // prefill GEMMs' bf16 copies of x and w (RunLinear)
  uint64_t moves_ = 0;
  // LM-head rows the last launched step computed: its sampled rows, or its
  // batch bucket when replayed from a graph (each rank's gathered slice then
  // has padding rows after the sampled ones).
  int head_slice_rows_ = 0;
  PinnedStagingRing staging_;  // host side of the step metadata uploads
  DecodeGraphCache graphs_;
  DeviceSampler sampler_;
};

absl::Status CudaForward::GrowScratch(const StepShape& sh, int head_rows) {
  const RankDims d = RankDims::For(c_, plan_.mine());
  const size_t T = sh.num_tokens;
  TPS_RETURN_IF_ERROR(Grow(x_, T * d.hidden, &moves_));
  TPS_RETURN_IF_ERROR(Grow(qkv_, T * d.qkv_dim, &moves_));
  TPS_RETURN_IF_ERROR(Grow(proj_, T * d.hidden, &moves_));
  TPS_RETURN_IF_ERROR(Grow(gu_, T * 2 * d.ffn, &moves_));
  if (tp_invariant_) TPS_RETURN_IF_ERROR(Grow(fixed_, T * d.hidden, &moves_));
  if (sh.num_tokens > kc::kSkinnyGemmMaxRows && !layers_.empty()) {
    // One layer's widest GEMM part: x (T, k) and w (n, k) in bf16.
    const DeviceLayer& l = layers_.front();
    int64_t elems = 0;
    for (const DeviceLinear* lin : {&l.qkv, &l.o, &l.gate_up, &l.down}) {
      elems = std::max(elems, ViaBf16ScratchElems(*lin, sh.num_tokens));
    }
    TPS_RETURN_IF_ERROR(Grow(bf16_, static_cast<size_t>(elems), &moves_));
  }
  // The norms', attention's and SwiGLU's f32 outputs: T rows only where the
  // step keeps them in f32 (else they go into bf16_, as Enqueue decides from
  // the same bf16_); one row at least, so every pointer is a buffer.
  const F32Activations f32 = KeptInF32(UsesBf16Copies({.data = bf16_.data()}, sh.num_tokens),
                                       tp_invariant_, sh.all_decode, d.q_dim);
  TPS_RETURN_IF_ERROR(Grow(h_, (f32.h ? T : 1) * d.hidden, &moves_));
  TPS_RETURN_IF_ERROR(Grow(attn_, (f32.attn ? T : 1) * d.q_dim, &moves_));
  TPS_RETURN_IF_ERROR(Grow(act_, (f32.act ? T : 1) * d.ffn, &moves_));
  if (sh.all_decode) {
    const int64_t ws =
        kc::DecodeAttentionWorkspaceFloats(sh.num_seqs, d.n_heads, d.head_dim, sh.max_context);
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
  const bool graph = graphs_.Eligible(layout, head_rows);
  if (graph) {
    PadDecodeLayout(BatchBucket(layout.num_seqs()), ContextBucket(layout.max_context),
                    shape_.block_size, &layout);
  }
  const StepShape sh{.num_seqs = layout.num_seqs(),
                     .num_tokens = layout.num_tokens(),
                     .max_blocks = layout.max_blocks,
                     .max_context = layout.max_context,
                     .all_decode = layout.all_decode};
  // `layout` dies when this returns, before the stream runs the uploads:
  // they go through the pinned ring, which outlives them.
  TPS_RETURN_IF_ERROR(staging_.Begin(StagedBytes(layout.tokens) + StagedBytes(layout.positions) +
                                     StagedBytes(layout.cu_q) + StagedBytes(layout.starts) +
                                     StagedBytes(layout.tables) + StagedBytes(layout.slots)));
  TPS_RETURN_IF_ERROR(staging_.Stage(layout.tokens, d_tokens_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(staging_.Stage(layout.positions, d_pos_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(staging_.Stage(layout.cu_q, d_cu_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(staging_.Stage(layout.starts, d_starts_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(staging_.Stage(layout.tables, d_tables_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(staging_.Stage(layout.slots, d_slots_, stream_, &moves_));
  TPS_RETURN_IF_ERROR(staging_.End(stream_));
  head_slice_rows_ = graph ? sh.num_seqs : static_cast<int>(head_rows.size());
  TPS_RETURN_IF_ERROR(GrowScratch(sh, head_slice_rows_));
  if (!graph) return Enqueue(sh, head_rows, timings);
  std::vector<int> rows(sh.num_seqs);
  for (int i = 0; i < sh.num_seqs; ++i) rows[i] = i;
  auto enqueue = [&]() -> absl::Status { return Enqueue(sh, rows, timings); };
  const bool persistent = persistent_ == Persistent::kOn;
  absl::Status replayed = graphs_.Replay(sh.num_seqs, sh.max_context, moves_, stream_, enqueue);
  if (!replayed.ok() && persistent) {
    // Capturing, instantiating or launching a graph with the cooperative
    // kernel failed (EnqueueLayers may have dropped it already, in capture):
    // capture the per-kernel step instead. Nothing of this step has run.
    if (persistent_ == Persistent::kOn) DropPersistent(replayed);
    replayed = graphs_.Replay(sh.num_seqs, sh.max_context, moves_, stream_, enqueue);
  }
  TPS_RETURN_IF_ERROR(replayed);
  timings->graph_replay = true;
  return absl::OkStatus();
}

absl::Status CudaForward::EnqueueLayers(const LayerStep& step) {
  if (step.fuse_norms && step.shape.all_decode && persistent_ == Persistent::kOn) {
    const absl::Status launched =
        EnqueuePersistentLayers(step, layers_.front(), persistent_layers_.data(),
                                static_cast<int>(layers_.size()), persistent_dtype_);
    if (launched.ok()) return launched;
    // Nothing of it ran: the per-kernel layers take the embedding's x as it
    // is (in a capture, Launch captures the step again).
    DropPersistent(launched);
  }
  for (size_t li = 0; li < layers_.size(); ++li) {
    const DeviceLayer* next = li + 1 < layers_.size() ? &layers_[li + 1] : nullptr;
    TPS_RETURN_IF_ERROR(EnqueueLayer(step, layers_[li], next));
  }
  return absl::OkStatus();
}

void CudaForward::DropPersistent(const absl::Status& failure) {
  SetPersistent(Persistent::kFailed, failure);
  ++moves_;
  Log(absl::StrCat("--cuda_persistent_decode: the cooperative decode kernel failed (",
                   failure.ToString(), "); one-sequence decode steps run per kernel from now on"));
}

absl::Status CudaForward::Finish(StepTimings* timings) {
  if (comm_.world_size() > 1) {
    const absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(comm_.Synchronize(stream_));
    timings->comm_s += SecondsSince(t0);
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
  // Rows [0, R) of each rank's slice of the (padded) head output.
  const int world = comm_.world_size();
  const int64_t maxv = plan_.max_vocab_rows();
  const float* all_dev = world > 1 ? gathered_.data() : head_out_.data();
  std::vector<float> all(static_cast<size_t>(head_slice_rows_ * maxv * world));
  TPS_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(all.data(), all_dev, all.size() * sizeof(float), cudaMemcpyDeviceToHost));
  ScatterVocabSlices(plan_, all.data(), R, head_slice_rows_, maxv, c_.vocab_size, logits);
  return absl::OkStatus();
}

absl::Status CudaForward::ForwardSample(const StepBatch& batch, const std::vector<int>& head_rows,
                                        const DeviceSampling& sampling,
                                        std::vector<int32_t>* tokens, StepTimings* timings) {
  TPS_RETURN_IF_ERROR(Launch(batch, head_rows, timings));
  const int R = static_cast<int>(head_rows.size());
  if (R == 0 || comm_.rank() != 0) return Finish(timings);
  const absl::Status sampled = sampler_.Sample({.plan = &plan_,
                                                .world = comm_.world_size(),
                                                .rows = R,
                                                .vocab = c_.vocab_size,
                                                .head_out = head_out_.data(),
                                                .gathered = gathered_.data(),
                                                .slice_rows = head_slice_rows_},
                                               sampling, stream_, tokens);
  // The step's launches are in flight either way: wait for them first.
  TPS_RETURN_IF_ERROR(Finish(timings));
  return sampled;
}

absl::Status CudaForward::Enqueue(const StepShape& sh, const std::vector<int>& head_rows,
                                  StepTimings* timings) {
  const RankShard& me = plan_.mine();
  const RankDims d = RankDims::For(c_, me);
  const int H = d.hidden;
  const int T = sh.num_tokens;
  const kernels::Stream s{.cuda_stream = stream_, .programmatic = programmatic_};
  const LayerStep step{.config = &c_,
                       .dims = d,
                       .shape = sh,
                       .arrays = {.tokens = d_tokens_.data(),
                                  .positions = d_pos_.data(),
                                  .slots = d_slots_.data(),
                                  .cu_q = d_cu_.data(),
                                  .starts = d_starts_.data(),
                                  .tables = d_tables_.data(),
                                  .num_seqs = sh.num_seqs,
                                  .num_tokens = T,
                                  .max_blocks = sh.max_blocks},
                       .scratch = {.x = x_.data(),
                                   .h = h_.data(),
                                   .qkv = qkv_.data(),
                                   .attn = attn_.data(),
                                   .proj = proj_.data(),
                                   .gu = gu_.data(),
                                   .act = act_.data(),
                                   .ws = ws_.data(),
                                   .ws_floats = sh.all_decode ? kc::DecodeAttentionWorkspaceFloats(
                                                                    sh.num_seqs, d.n_heads,
                                                                    d.head_dim, sh.max_context)
                                                              : 0,
                                   .fixed = tp_invariant_ ? fixed_.data() : nullptr,
                                   .bf16 = {bf16_.data(), prefill_gemm_}},
                       .block_size = shape_.block_size,
                       .num_blocks = num_blocks_,
                       .kv_dtype = shape_.dtype,
                       .stream = s,
                       .all_reduce =
                           [this, timings](float* buf, size_t count) {
                             return AllReduce(buf, count, CommDType::kF32, timings);
                           },
                       .tp_invariant = tp_invariant_,
                       .chunks = RowParallelChunks::For(c_),
                       .all_reduce_fixed =
                           [this, timings](int64_t* buf, size_t count) {
                             return AllReduce(buf, count, CommDType::kI64, timings);
                           },
                       .fuse_norms = T == 1 && comm_.world_size() == 1 && !tp_invariant_,
                       .producers_write_bf16 = UsesBf16Copies({.data = bf16_.data()}, T),
                       .l2_prefetch = l2_prefetch_};

  // (T, H) embedding: each rank fills the rows of its vocabulary slice.
  TPS_RETURN_IF_ERROR(kc::Embedding(
      MakeEmbeddingParams(me, H, embedding_.data(), embedding_dtype_, step.arrays, x_.data()), s));
  TPS_RETURN_IF_ERROR(AllReduce(x_.data(), size_t{1} * T * H, CommDType::kF32, timings));

  // The first layer's attention norm; every later norm is fused with the
  // residual add before it (AddRmsNorm), the last add stands alone. One
  // token on one rank: every norm and add runs inside a GEMM instead
  // (LayerStep::fuse_norms), the final norm inside the LM head's.
  if (!step.fuse_norms) {
    TPS_RETURN_IF_ERROR(kc::RmsNorm(
        {.x = x_.data(),
         .weight = layers_.front().attn_norm.data(),
         .y = h_.data(),
         .rows = T,
         .dim = H,
         .eps = c_.rms_norm_eps},
        s,
        step.producers_write_bf16 ? kc::Bf16Copy{.data = step.scratch.bf16.data} : kc::Bf16Copy{}));
  }
  TPS_RETURN_IF_ERROR(EnqueueLayers(step));

  // LM head on the sampled rows, padded to the largest vocabulary slice so
  // the all-gather has equal counts. Consecutive rows (every decode step)
  // are normalised in one launch.
  const int R = static_cast<int>(head_rows.size());
  if (R == 0) return absl::OkStatus();
  const int64_t maxv = plan_.max_vocab_rows();
  if (step.fuse_norms) {
    // One token on one rank: the final norm inside the LM head's GEMM too
    // (with l2_prefetch, also the first layer's QKV weights for the next step).
    return RunLinearFused(lm_head_, x_.data() + size_t{1} * head_rows[0] * H, head_out_.data(),
                          output_norm_.data(), c_.rms_norm_eps, /*add_to_y=*/false, s,
                          PrefetchNext(step, &layers_.front().qkv));
  }
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
  TPS_RETURN_IF_ERROR(RunLinear(lm_head_, head_in_.data(), R, head_out_.data(), maxv, s, {},
                                PrefetchNext(step, &layers_.front().qkv)));
  if (comm_.world_size() > 1) {
    const absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(comm_.AllGather(head_out_.data(), gathered_.data(), R * maxv,
                                        CommDType::kF32, {.stream = stream_}));
    timings->comm_s += SecondsSince(t0);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaForward(
    const ModelConfig& config, ShardPlan plan, Communicator& comm,
    const ForwardBackendOptions& options) {
  const int device = options.device;
  const int count = ::tpserve::kernels::cuda::DeviceCount();
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
  TPS_ASSIGN_OR_RETURN(const kc::Bf16Gemm prefill_gemm, PrefillGemm(options.cuda_prefill_gemm));
  cudaStream_t stream = nullptr;
  TPS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<ForwardBackend>(
      new CudaForward(config, std::move(plan), comm, stream, options, prefill_gemm));
}

}  // namespace tpserve
