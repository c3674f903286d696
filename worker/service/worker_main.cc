// tpserve-worker: one tensor-parallel rank. Serves tpserve.v1.Worker (and the
// standard gRPC health service: SERVING while the rank is in a serving group
// epoch) for the router and Prometheus /metrics; loads only its shard of the
// weights and allocates its KV-cache pool within --kv_cache_mb; registers with
// the router's rendezvous store and re-registers by itself when the router
// restarts. The router starts each group epoch with Join: the rank then builds
// a fresh communicator with its peers (Gloo over TCP, shared memory for ranks
// on one host, NCCL for CUDA ranks) without reloading its weights.
//
//   tpserve-worker --model=models/SmolLM2-135M-Instruct.Q4_1.gguf --rank=0 --world_size=2
//       --rendezvous=127.0.0.1:29500 --port=0 --metrics_port=0 [--group=1]
//
// SIGTERM / SIGINT: the process exits within --shutdown_timeout whatever it is
// doing (loading, joining, or in a collective).
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cluster_tls_flags.h"
#include "common/flags.h"
#include "common/health_port.h"
#include "common/log.h"
#include "common/serve_util.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "kernels/cuda/device.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "rendezvous/grpc_kv_store.h"
#include "rendezvous/keys.h"
#include "worker/comm/host_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/comm/swappable_communicator.h"
#include "worker/engine/engine.h"
#include "worker/engine/kv_cache_pool.h"
#include "worker/model/model_fingerprint.h"
#include "worker/model/model_source.h"
#include "worker/service/registrar.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_service.h"

ABSL_FLAG(std::string, model, "", "Model file (GGUF) or Hugging Face directory");
ABSL_FLAG(std::string, model_name, "",
          "Name in metrics and Info (default: the model's own name); give the router the same");
ABSL_FLAG(int, rank, 0, "This worker's tensor-parallel rank, 0..world_size-1");
ABSL_FLAG(int, world_size, 1, "Number of tensor-parallel ranks");
ABSL_FLAG(int, group, 0,
          "Tensor-parallel group this rank belongs to, 0..the router's --max_groups-1 (one "
          "router drives several groups; docs/operations.md \"Groups and placement\")");
ABSL_FLAG(std::string, rendezvous, "",
          "host:port of the router's rendezvous store (its --rendezvous_port); empty = "
          "not registered (the router lists this worker in --workers)");
ABSL_FLAG(std::string, backend, "cpu",
          "Compute backend: cpu, or cuda (one device per rank; implies --comm=nccl when "
          "--world_size > 1)");
ABSL_FLAG(int, cuda_device, -1,
          "CUDA device of this rank with --backend=cuda (-1 = rank modulo visible devices)");
ABSL_FLAG(bool, cuda_graphs, true,
          "With --backend=cuda: replay decode steps from CUDA graphs (one per batch-size and "
          "context bucket; at --world_size > 1 with the NCCL collectives inside them)");
ABSL_FLAG(bool, cuda_pdl, true,
          "With --backend=cuda on compute capability 9.0 and later: launch the decode-path "
          "kernels with programmatic dependent launch, so each overlaps the end of the one "
          "before it (false: every kernel waits for the previous one to finish first)");
ABSL_FLAG(bool, cuda_l2_prefetch, false,
          "With --backend=cuda on compute capability 9.0 and later: in decode steps each GEMM "
          "also prefetches the next GEMM's weights into L2 (batch 1 on one rank; batches of "
          "2-64 with Q8_0/Q4_0/Q4_1/BF16 weights; experimental: not yet measured on a GPU; the "
          "same results either way under the CUDA emulator's tests)");
ABSL_FLAG(bool, cuda_persistent_decode, false,
          "With --backend=cuda on one rank: run a one-sequence decode step's layers as one "
          "cooperative kernel, grid barriers between its phases instead of 5 launches per layer "
          "(Q8_0/Q4_0/Q4_1 weights, head_dim <= 128; other models keep the per-kernel step; "
          "experimental: not yet measured on a GPU; the per-kernel step's results under the CUDA "
          "emulator's tests)");
ABSL_FLAG(std::string, cuda_prefill_gemm, "mma",
          "With --backend=cuda: the prefill GEMMs' kernel, mma (mma.sync, any GPU, on bf16 "
          "copies of the weights), mma_dequant (mma.sync dequantising Q8_0/Q4_0/Q4_1 weights "
          "itself, no copy), or on compute capability 9.x the experimental wgmma (cp.async "
          "loads) or wgmma_tma (TMA loads, warp-specialised); all but mma not yet measured "
          "on a GPU (docs/benchmarks.md)");
ABSL_FLAG(std::string, comm, "gloo",
          "Collectives between CPU ranks: gloo (TCP, ranks on any hosts) or shm (shared "
          "memory, all ranks on this host; ~50x lower all-reduce latency)");
ABSL_FLAG(bool, tp_invariant, false,
          "Bit-identical logits at every tensor-parallel size (fixed-point row-parallel "
          "reductions; 7-10% slower at TP=2 on CPU, docs/benchmarks.md); give every rank the "
          "same value");
ABSL_FLAG(int64_t, kv_cache_mb, 256, "KV-cache memory budget of this rank, MiB");
ABSL_FLAG(std::string, kv_dtype, "auto",
          "KV-cache element type: auto (= bf16, on both backends), f32 or bf16; bf16 holds "
          "twice the tokens in --kv_cache_mb. Give every rank the same value");
ABSL_FLAG(int, block_size, 16, "Tokens per KV-cache block");
ABSL_FLAG(int, threads, 0, "Compute threads (0 = cores / world_size, at least 1)");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address the gRPC and metrics ports bind");
ABSL_FLAG(std::string, advertise_host, "127.0.0.1",
          "Address the router and peer ranks reach this worker at");
ABSL_FLAG(int, port, 0, "gRPC port of tpserve.v1.Worker (0 = pick a free one)");
ABSL_FLAG(int, metrics_port, 0, "Prometheus /metrics port (0 = pick a free one)");
ABSL_FLAG(int, health_port, -1,
          "Plaintext gRPC port serving only grpc.health.v1.Health (the same status as --port), "
          "for kubelet probes, which cannot present the cluster's client certificate; -1 = off");
ABSL_FLAG(absl::Duration, collective_timeout, absl::Seconds(60),
          "Limit of one collective; a dead peer becomes an error after it (the router "
          "usually ends the epoch sooner and aborts the collective)");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(5),
          "On SIGTERM/SIGINT the process exits within this bound, whatever it is doing");
ABSL_FLAG(std::string, port_file, "", "Write the bound ports here as JSON once listening");

namespace tpserve {
namespace {

struct WorkerConfig {
  std::string model_path;
  int rank = 0;
  int world_size = 1;
  std::string backend;
  std::string kv_dtype;      // --kv_dtype, checked against the backend
  std::string comm_backend;  // gloo, shm or nccl
  int cuda_device = -1;
  std::string store_host;  // empty: not registered
  int store_port = 0;
  ClusterTls cluster_tls;  // the Worker service and the store's channels
};

absl::StatusOr<WorkerConfig> ConfigFromFlags() {
  WorkerConfig c;
  c.model_path = absl::GetFlag(FLAGS_model);
  c.rank = absl::GetFlag(FLAGS_rank);
  c.world_size = absl::GetFlag(FLAGS_world_size);
  c.backend = absl::GetFlag(FLAGS_backend);
  c.cuda_device = absl::GetFlag(FLAGS_cuda_device);
  if (c.model_path.empty()) return absl::InvalidArgumentError("--model is required");
  TPS_ASSIGN_OR_RETURN(c.cluster_tls, ClusterTlsFromFlags());
  if (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("--rank must be in [0, --world_size); got rank ",
                                                   c.rank, " of ", c.world_size));
  }
  if (c.backend != "cpu" && c.backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend must be cpu or cuda, got '", c.backend, "'"));
  }
  c.kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  TPS_RETURN_IF_ERROR(ResolveKvDType(c.kv_dtype).status());
  const std::string comm = absl::GetFlag(FLAGS_comm);
  if (comm != "gloo" && comm != "shm") {
    return absl::InvalidArgumentError(absl::StrCat("--comm must be gloo or shm, got '", comm, "'"));
  }
  // The CUDA engine's collectives run on device buffers: NCCL. (One rank has
  // no collectives; any communicator will do.)
  c.comm_backend = c.backend == "cuda" && c.world_size > 1 ? "nccl" : comm;
  if (c.backend == "cuda") {
    const int devices = ::tpserve::kernels::cuda::DeviceCount();
    if (devices == 0) {
      return absl::FailedPreconditionError(
          "--backend=cuda: no CUDA device is visible on this host; use --backend=cpu");
    }
    if (c.cuda_device < 0) c.cuda_device = c.rank % devices;
  }
  const std::string rendezvous = absl::GetFlag(FLAGS_rendezvous);
  if (!rendezvous.empty()) {
    std::pair<std::string, std::string> hp = absl::StrSplit(rendezvous, absl::MaxSplits(':', 1));
    if (!absl::SimpleAtoi(hp.second, &c.store_port) || hp.first.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--rendezvous must be host:port, got '", rendezvous, "'"));
    }
    c.store_host = hp.first;
  } else if (c.world_size > 1) {
    return absl::InvalidArgumentError("--rendezvous is required when --world_size > 1");
  }
  return c;
}

// Builds one epoch's communicator through the router's store.
WorkerService::CommFactory MakeCommFactory(const WorkerConfig& c) {
  return [c](const std::string& session, uint64_t epoch,
             absl::Duration timeout) -> absl::StatusOr<std::unique_ptr<Communicator>> {
    const std::string prefix = EpochPrefix(session, epoch, c.comm_backend);
    // One rank needs no store (and may run without --rendezvous).
    const std::string host = c.store_host.empty() ? "127.0.0.1" : c.store_host;
    GrpcKvStoreClient store(absl::StrCat(host, ":", c.store_port),
                            c.cluster_tls.ChannelCredentials(), timeout);
    if (c.comm_backend == "nccl") {
      NcclOptions o;
      o.device = c.cuda_device;
      o.timeout = absl::GetFlag(FLAGS_collective_timeout);
      o.rendezvous_timeout = timeout;
      o.prefix = prefix;
      o.hostname = absl::GetFlag(FLAGS_advertise_host);
      return CreateNcclCommunicator(store, c.rank, c.world_size, o);
    }
    HostCommOptions o;
    o.backend = c.comm_backend;
    o.hostname = absl::GetFlag(FLAGS_advertise_host);
    o.timeout = absl::GetFlag(FLAGS_collective_timeout);
    o.rendezvous_timeout = timeout;
    o.prefix = prefix;
    return CreateHostCommunicator(store, c.rank, c.world_size, o);
  };
}

// Waits for SIGTERM/SIGINT on its own thread, so a signal is honoured while
// the main thread loads, and ends the process within --shutdown_timeout.
void StartSignalThread(sigset_t signals, std::function<void()> shutdown) {
  std::thread([signals, shutdown = std::move(shutdown)] {
    int signal = 0;
    sigwait(&signals, &signal);
    Log(absl::StrCat("signal ", signal, ": shutting down"));
    const absl::Duration bound = absl::GetFlag(FLAGS_shutdown_timeout);
    std::thread([bound] {
      absl::SleepFor(bound);
      Log(absl::StrCat("shutdown did not finish within ", absl::FormatDuration(bound),
                       "; exiting now"));
      _exit(1);
    }).detach();
    shutdown();
    _exit(0);  // destructors could wait on threads blocked in a collective
  }).detach();
}

absl::Status Run() {
  TPS_ASSIGN_OR_RETURN(const WorkerConfig c, ConfigFromFlags());
  const int group = absl::GetFlag(FLAGS_group);
  if (group < 0)
    return absl::InvalidArgumentError(absl::StrCat("--group must be >= 0, got ", group));
  SetLogTag(group == 0 ? absl::StrCat("worker ", c.rank)
                       : absl::StrCat("worker ", group, ".", c.rank));
  if (c.backend == "cuda") {
    Log(absl::StrCat("CUDA device ", c.cuda_device, ": ",
                     ::tpserve::kernels::cuda::DeviceDescription(c.cuda_device)));
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Serve Info/Health right away so the router can show load progress.
  SwappableCommunicator comm(c.rank, c.world_size, c.comm_backend);
  WorkerService service(c.rank, c.world_size, c.backend, &comm, MakeCommFactory(c));
  service.SetLogger(Log);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
                           c.cluster_tls.ServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_host), ":",
                                               absl::GetFlag(FLAGS_port),
                                               " (in use?); pick another --port"));
  }
  TPS_ASSIGN_OR_RETURN(
      std::unique_ptr<HealthPort> health_port,
      HealthPort::Start(absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_health_port),
                        server->GetHealthCheckService()));
  grpc::HealthCheckServiceInterface* health = health_port->health();  // sets both ports
  health->SetServingStatus(false);
  service.SetMembershipListener([health](bool in_group) { health->SetServingStatus(in_group); });

  auto registry = std::make_shared<prometheus::Registry>();
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<prometheus::Exposer> exposer,
                       StartMetricsExposer(absl::StrCat(absl::GetFlag(FLAGS_host), ":",
                                                        absl::GetFlag(FLAGS_metrics_port)),
                                           "--metrics_port"));
  exposer->RegisterCollectable(registry);
  const int metrics_port = exposer->GetListeningPorts().at(0);
  Log(absl::StrCat("listening: gRPC port ", grpc_port,
                   c.cluster_tls.enabled() ? " (cluster mTLS)" : " (plaintext)",
                   ", metrics http://", absl::GetFlag(FLAGS_advertise_host), ":", metrics_port,
                   "/metrics"));
  std::vector<std::pair<std::string, int>> ports = {{"grpc_port", grpc_port},
                                                    {"metrics_port", metrics_port}};
  if (health_port->port() > 0) ports.emplace_back("health_port", health_port->port());
  WritePortFile(absl::GetFlag(FLAGS_port_file), ports);

  StartSignalThread(signals, [&] {
    comm.Abort();  // a collective in flight returns; peers get an error, not a hang
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });

  std::unique_ptr<Registrar> registrar;
  if (!c.store_host.empty()) {
    registrar = std::make_unique<Registrar>(
        c.store_host, c.store_port, c.rank,
        absl::StrCat(absl::GetFlag(FLAGS_advertise_host), ":", grpc_port), Log, absl::Seconds(1),
        c.cluster_tls.ChannelCredentials());
    registrar->SetGroup(group);
    Log(absl::StrCat("registering with the rendezvous store ", c.store_host, ":", c.store_port));
    registrar->Start();
  }

  const absl::Time t0 = absl::Now();
  service.SetProgress("opening model");
  Log(absl::StrCat("opening ", c.model_path));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> model, OpenModel(c.model_path));
  TPS_ASSIGN_OR_RETURN(const std::string fingerprint, ModelFingerprint(c.model_path));
  ModelConfig config = model->config();
  if (!absl::GetFlag(FLAGS_model_name).empty()) config.name = absl::GetFlag(FLAGS_model_name);
  service.SetModel(config, fingerprint);
  Log(absl::StrCat("model ", config.name, " (", fingerprint, "): ", config.architecture, ", ",
                   config.num_layers, " layers, hidden ", config.hidden_size, ", ",
                   config.num_heads, " heads / ", config.num_kv_heads, " KV heads, vocab ",
                   config.vocab_size));

  EngineOptions options;
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / c.world_size);
  }
  options.num_threads = threads;
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mb) << 20;
  options.block_size = absl::GetFlag(FLAGS_block_size);
  options.kv_dtype = c.kv_dtype;
  options.backend = c.backend;
  options.device = std::max(c.cuda_device, 0);
  options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  options.cuda_pdl = absl::GetFlag(FLAGS_cuda_pdl);
  options.cuda_l2_prefetch = absl::GetFlag(FLAGS_cuda_l2_prefetch);
  options.cuda_persistent_decode = absl::GetFlag(FLAGS_cuda_persistent_decode);
  options.cuda_prefill_gemm = absl::GetFlag(FLAGS_cuda_prefill_gemm);
  options.tp_invariant = absl::GetFlag(FLAGS_tp_invariant);
  options.check_group_at_create = false;  // checked at every Join
  service.SetProgress("loading this rank's weight shard");
  Log(absl::StrCat("loading weight shard ", c.rank, "/", c.world_size, " (", threads,
                   " threads, KV budget ", absl::GetFlag(FLAGS_kv_cache_mb), " MiB)"));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(*model, comm, options));
  Log(engine->kernels());

  WorkerMetrics metrics(*registry, config.name, c.rank);
  const int64_t kv_bytes = engine->kv_cache_bytes();
  metrics.SetMemory(engine->weight_bytes(), kv_bytes);
  metrics.SetLoaded(true);
  service.SetEngine(engine.get(), &metrics);
  Log(absl::StrCat(
      "ready in ", absl::FormatDuration(absl::Trunc(absl::Now() - t0, absl::Milliseconds(1))),
      ": weights ", engine->weight_bytes() >> 20, " MiB, KV cache ", engine->num_kv_blocks(),
      " blocks x ", engine->block_size(), " tokens, ", DTypeName(engine->kv_dtype()), " (",
      kv_bytes >> 20, " MiB); waiting for the router to start a group epoch"));

  // Serves until the signal thread ends the process.
  absl::Notification never;
  never.WaitForNotification();
  return absl::OkStatus();
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) {
  tpserve::ParseFlags(argc, argv, "tpserve-worker: one tensor-parallel rank");
  absl::Status s = tpserve::Run();
  if (!s.ok()) {
    tpserve::Log(absl::StrCat("error: ", s.ToString()));
    return 1;
  }
  return 0;
}
