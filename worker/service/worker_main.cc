// tpserve-worker: one tensor-parallel rank. Serves tpserve.v1.Worker for the
// router and Prometheus /metrics; joins its peers through the router's
// rendezvous store (Gloo over TCP, or shared memory for ranks on one host),
// loads only its shard of the weights and allocates its KV-cache pool within
// --kv_cache_mb.
//
//   tpserve-worker --model=models/SmolLM2-135M-Instruct.Q4_1.gguf --rank=0 --world_size=2
//       --rendezvous=127.0.0.1:29500 --port=0 --metrics_port=0
//
// Registration: the worker reads the router's session id from the store and
// publishes "<advertise_host>:<port>" under tpserve/<session>/worker/<rank>
// (the router's router/cluster/rendezvous.h reads the same keys).
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "kernels/cuda/device.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "rendezvous/tcp_kv_store.h"
#include "worker/comm/host_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/engine/engine.h"
#include "worker/model/model_source.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_service.h"

ABSL_FLAG(std::string, model, "", "Model file (GGUF) or Hugging Face directory");
ABSL_FLAG(std::string, model_name, "",
          "Name in metrics and Info (default: the model's own name); give the router the same");
ABSL_FLAG(int, rank, 0, "This worker's tensor-parallel rank, 0..world_size-1");
ABSL_FLAG(int, world_size, 1, "Number of tensor-parallel ranks");
ABSL_FLAG(std::string, rendezvous, "",
          "host:port of the router's rendezvous store (its --rendezvous_port)");
ABSL_FLAG(std::string, backend, "cpu",
          "Compute backend: cpu, or cuda (one device per rank; implies --comm=nccl when "
          "--world_size > 1)");
ABSL_FLAG(int, cuda_device, -1,
          "CUDA device of this rank with --backend=cuda (-1 = rank modulo visible devices)");
ABSL_FLAG(bool, cuda_graphs, true,
          "With --backend=cuda and --world_size=1: replay decode steps from CUDA graphs "
          "(one per batch-size and context bucket)");
ABSL_FLAG(std::string, comm, "gloo",
          "Collectives between CPU ranks: gloo (TCP, ranks on any hosts) or shm (shared "
          "memory, all ranks on this host; ~50x lower all-reduce latency)");
ABSL_FLAG(int64_t, kv_cache_mb, 256, "KV-cache memory budget of this rank, MiB");
ABSL_FLAG(int, block_size, 16, "Tokens per KV-cache block");
ABSL_FLAG(int, threads, 0, "Compute threads (0 = cores / world_size, at least 1)");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address the gRPC and metrics ports bind");
ABSL_FLAG(std::string, advertise_host, "127.0.0.1",
          "Address the router and peer ranks reach this worker at");
ABSL_FLAG(int, port, 0, "gRPC port of tpserve.v1.Worker (0 = pick a free one)");
ABSL_FLAG(int, metrics_port, 0, "Prometheus /metrics port (0 = pick a free one)");
ABSL_FLAG(absl::Duration, collective_timeout, absl::Seconds(60),
          "Limit of one collective; a dead peer becomes an error after it");
ABSL_FLAG(std::string, port_file, "", "Write the bound ports here as JSON once listening");

namespace tpserve {
namespace {

int g_rank = 0;

void Log(const std::string& line) {
  std::fprintf(stderr, "%s [worker %d] %s\n",
               absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::LocalTimeZone()).c_str(), g_rank,
               line.c_str());
  std::fflush(stderr);
}

absl::Status Run() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  const int rank = absl::GetFlag(FLAGS_rank);
  const int world_size = absl::GetFlag(FLAGS_world_size);
  g_rank = rank;
  if (model_path.empty()) return absl::InvalidArgumentError("--model is required");
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rank must be in [0, --world_size); got rank ", rank, " of ", world_size));
  }
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend must be cpu or cuda, got '", backend, "'"));
  }
  int cuda_device = absl::GetFlag(FLAGS_cuda_device);
  if (backend == "cuda") {
    const int devices = ::tpserve::cuda::DeviceCount();
    if (devices == 0) {
      return absl::FailedPreconditionError(
          "--backend=cuda: no CUDA device is visible on this host; use --backend=cpu");
    }
    if (cuda_device < 0) cuda_device = rank % devices;
    Log(absl::StrCat("CUDA device ", cuda_device, ": ",
                     ::tpserve::cuda::DeviceDescription(cuda_device)));
  }
  std::string store_host;
  int store_port = 0;
  const std::string rendezvous = absl::GetFlag(FLAGS_rendezvous);
  if (!rendezvous.empty()) {
    std::pair<std::string, std::string> hp = absl::StrSplit(rendezvous, absl::MaxSplits(':', 1));
    if (!absl::SimpleAtoi(hp.second, &store_port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--rendezvous must be host:port, got '", rendezvous, "'"));
    }
    store_host = hp.first;
  } else if (world_size > 1) {
    return absl::InvalidArgumentError("--rendezvous is required when --world_size > 1");
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Serve Info/Health right away so the router can show load progress.
  WorkerService service(rank, world_size, absl::GetFlag(FLAGS_backend));
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
                           grpc::InsecureServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on port ", absl::GetFlag(FLAGS_port), "; pick another --port"));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Exposer exposer(
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_metrics_port)));
  exposer.RegisterCollectable(registry);
  const int metrics_port = exposer.GetListeningPorts().at(0);
  Log(absl::StrCat("listening: gRPC port ", grpc_port, ", metrics http://",
                   absl::GetFlag(FLAGS_advertise_host), ":", metrics_port, "/metrics"));
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    const std::string path = absl::GetFlag(FLAGS_port_file);
    {
      std::ofstream out(path + ".tmp");
      out << "{\"grpc_port\": " << grpc_port << ", \"metrics_port\": " << metrics_port << "}\n";
    }
    std::rename((path + ".tmp").c_str(), path.c_str());
  }

  // Register with the router and learn the session's Gloo prefix.
  std::unique_ptr<TcpKvStoreClient> store;
  std::string session = "standalone";
  if (!store_host.empty()) {
    store = std::make_unique<TcpKvStoreClient>(store_host, store_port, absl::Minutes(10));
    service.SetProgress("connecting to the rendezvous store");
    Log(absl::StrCat("connecting to rendezvous ", rendezvous));
    TPS_ASSIGN_OR_RETURN(session, store->Get("tpserve/session", absl::Minutes(10)));
    const std::string address = absl::StrCat(absl::GetFlag(FLAGS_advertise_host), ":", grpc_port);
    TPS_RETURN_IF_ERROR(store->Set(absl::StrCat("tpserve/", session, "/worker/", rank), address));
    Log(absl::StrCat("registered as rank ", rank, " of ", world_size, " at ", address));
  } else {
    store = std::make_unique<TcpKvStoreClient>("127.0.0.1", 1, absl::Seconds(1));  // unused
  }

  const absl::Time t0 = absl::Now();
  service.SetProgress("opening model");
  Log(absl::StrCat("opening ", model_path));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> model, OpenModel(model_path));
  ModelConfig config = model->config();
  if (!absl::GetFlag(FLAGS_model_name).empty()) config.name = absl::GetFlag(FLAGS_model_name);
  service.SetModel(config);
  Log(absl::StrCat("model ", config.name, ": ", config.architecture, ", ", config.num_layers,
                   " layers, hidden ", config.hidden_size, ", ", config.num_heads, " heads / ",
                   config.num_kv_heads, " KV heads, vocab ", config.vocab_size));

  // The CUDA engine's collectives run on device buffers: NCCL. (One rank has
  // no collectives; any communicator will do.)
  const bool nccl = backend == "cuda" && world_size > 1;
  const std::string comm_backend = nccl ? "nccl" : absl::GetFlag(FLAGS_comm);
  service.SetProgress(absl::StrCat("joining the ", comm_backend, " group of ", world_size));
  Log(absl::StrCat("joining the ", comm_backend, " group of ", world_size, " rank(s)"));
  HostCommOptions comm_options;
  comm_options.backend = comm_backend;
  comm_options.hostname = absl::GetFlag(FLAGS_advertise_host);
  comm_options.timeout = absl::GetFlag(FLAGS_collective_timeout);
  comm_options.rendezvous_timeout = absl::Minutes(10);
  comm_options.prefix = absl::StrCat("tpserve/", session, "/", comm_backend);
  std::unique_ptr<Communicator> comm;
  if (nccl) {
    NcclOptions nccl_options;
    nccl_options.device = cuda_device;
    nccl_options.timeout = comm_options.timeout;
    nccl_options.rendezvous_timeout = comm_options.rendezvous_timeout;
    nccl_options.prefix = comm_options.prefix;
    TPS_ASSIGN_OR_RETURN(comm, CreateNcclCommunicator(*store, rank, world_size, nccl_options));
  } else {
    TPS_ASSIGN_OR_RETURN(comm, CreateHostCommunicator(*store, rank, world_size, comm_options));
  }

  EngineOptions options;
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world_size);
  }
  options.num_threads = threads;
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mb) << 20;
  options.block_size = absl::GetFlag(FLAGS_block_size);
  options.backend = backend;
  options.device = std::max(cuda_device, 0);
  options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  service.SetProgress("loading this rank's weight shard");
  Log(absl::StrCat("loading weight shard ", rank, "/", world_size, " (", threads,
                   " threads, KV budget ", absl::GetFlag(FLAGS_kv_cache_mb), " MiB)"));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(*model, *comm, options));

  WorkerMetrics metrics(*registry, config.name, rank);
  const int64_t kv_bytes = static_cast<int64_t>(engine->num_kv_blocks()) *
                           KvCachePool::BlockBytes(KvCacheShape{
                               .num_layers = config.num_layers,
                               .n_kv_heads = static_cast<int>(engine->plan().mine().kv_heads.count),
                               .head_dim = config.head_dim,
                               .block_size = engine->block_size()});
  metrics.SetMemory(engine->weight_bytes(), kv_bytes);
  metrics.SetLoaded(true);
  service.SetEngine(engine.get(), &metrics);
  Log(absl::StrCat(
      "ready in ", absl::FormatDuration(absl::Trunc(absl::Now() - t0, absl::Milliseconds(1))),
      ": weights ", engine->weight_bytes() >> 20, " MiB, KV cache ", engine->num_kv_blocks(),
      " blocks x ", engine->block_size(), " tokens (", kv_bytes >> 20, " MiB)"));

  int signal = 0;
  sigwait(&signals, &signal);
  Log(absl::StrCat("signal ", signal, ": shutting down"));
  comm->Abort();  // peers blocked in a collective get an error, not a hang
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return absl::OkStatus();
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tpserve worker: one tensor-parallel rank");
  absl::ParseCommandLine(argc, argv);
  absl::Status s = tpserve::Run();
  if (!s.ok()) {
    tpserve::Log(absl::StrCat("error: ", s.ToString()));
    return 1;
  }
  return 0;
}
