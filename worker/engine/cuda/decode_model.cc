// The memory-transaction MODEL of one decode step (kernels/cuda/emu/
// memory_model.h): runs the CUDA engine on the CUDA emulator built with the
// model's instrumentation (scripts/gpu_model.sh), prefills `batch` sequences
// of 32 tokens without counting, then counts one decode step per batch size
// and appends its per-site lines to $TPSERVE_CUDA_EMU_MODEL, tagged
// "decode batch-<n>[ <label>]". Emulator builds only; it measures nothing on
// a device.
//
//   TPSERVE_CUDA_EMU_MODEL=/tmp/model.tsv decode_model --model=x.gguf --batches=1,16
//   ... --kv_dtype=f32   # the f32 KV cache (default: bf16)
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "kernels/cuda/emu/memory_model.h"
#include "rendezvous/tcp_kv_store.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/engine/engine.h"
#include "worker/model/model_source.h"

ABSL_FLAG(std::string, model, "", "GGUF to run");
ABSL_FLAG(std::string, batches, "1,16", "decode batch sizes, one counted step each");
ABSL_FLAG(int, context, 32, "prefill tokens per sequence before the counted step");
ABSL_FLAG(std::string, kv_dtype, "auto", "KV cache element type (EngineOptions::kv_dtype)");
ABSL_FLAG(std::string, label, "", "appended to each step's tag");

namespace tpserve {
namespace {

absl::Status CountDecodeStep(const ModelSource& model, int batch, int context,
                             const std::string& label) {
  const std::string tag = absl::StrCat("decode batch-", batch, label.empty() ? "" : " ", label);
  TcpKvStoreClient unused("127.0.0.1", 1);
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                       CreateGlooCommunicator(unused, 0, 1, GlooOptions()));
  EngineOptions o;
  o.backend = "cuda";
  o.kv_cache_bytes = int64_t{256} << 20;
  o.kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model, *comm, o));
  const int bs = engine->block_size();
  const int blocks_per_seq = (context + 2 + bs - 1) / bs;
  StepBatch b;
  for (int i = 0; i < batch; ++i) {
    SequenceInput s;
    s.seq_id = 1 + i;
    for (int t = 0; t < context; ++t) s.tokens.push_back((t * 7 + i) % model.config().vocab_size);
    s.prompt_len = context;
    for (int k = 0; k < blocks_per_seq; ++k) s.block_table.push_back(i * blocks_per_seq + k);
    b.seqs.push_back(std::move(s));
  }
  for (int step = 0; step < 2; ++step) {  // the prefill, then the counted decode step
    if (step == 1) ::tpserve_emu::ModelStart(tag.c_str());
    absl::StatusOr<StepOutput> out = engine->Step(b);
    ::tpserve_emu::ModelStop();
    if (!out.ok()) return out.status();
    for (int i = 0; i < batch; ++i) {
      SequenceInput& s = b.seqs[i];
      s.start_pos += static_cast<int32_t>(s.tokens.size());
      s.tokens = {out->tokens[i].token};
    }
  }
  std::printf("%s: weight bytes %lld\n", tag.c_str(),
              static_cast<long long>(engine->weight_bytes()));
  std::fflush(stdout);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(absl::GetFlag(FLAGS_model));
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int batch = 0;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1) return 2;
    if (absl::Status s = CountDecodeStep(**model, batch, absl::GetFlag(FLAGS_context),
                                         absl::GetFlag(FLAGS_label));
        !s.ok()) {
      std::fprintf(stderr, "batch %d: %s\n", batch, s.ToString().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) { return tpserve::Main(argc, argv); }
