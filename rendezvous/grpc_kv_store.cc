#include "rendezvous/grpc_kv_store.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/tpserve/v1/kv_store.grpc.pb.h"

namespace tpserve {
namespace {

// Communicator bootstraps exchange small blobs (addresses, NCCL ids); the
// bound keeps one peer from growing the router's memory without limit.
constexpr int kMaxMessageBytes = 64 << 20;
constexpr int kMaxKeyBytes = 4096;
// Time allowed on top of a Get's own wait for the answer to arrive.
constexpr absl::Duration kAnswerSlack = absl::Seconds(2);

std::chrono::system_clock::time_point Deadline(absl::Duration from_now) {
  return absl::ToChronoTime(absl::Now() + from_now);
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("kv store ", what, ": ", s.error_message(),
                                   s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                                       ? " (store unreachable, or it refused this process's "
                                         "cluster certificate)"
                                       : ""));
}

}  // namespace

class GrpcKvStoreServer::Service final : public v1::KvStore::Service {
 public:
  explicit Service(GrpcKvStoreServer* store) : store_(store) {}

  grpc::Status Set(grpc::ServerContext*, const v1::KvSetRequest* request,
                   v1::KvSetResponse*) override {
    if (request->key().size() > kMaxKeyBytes) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kv store key too long");
    }
    absl::Status s = store_->Set(request->key(), request->value());
    return s.ok() ? grpc::Status::OK
                  : grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(s.message()));
  }

  grpc::Status Get(grpc::ServerContext* context, const v1::KvGetRequest* request,
                   v1::KvGetResponse* response) override {
    // Never wait past the caller's own deadline.
    const absl::Duration left =
        absl::FromChrono(context->deadline()) - absl::Now() - absl::Milliseconds(50);
    const absl::Duration wait =
        std::max(absl::ZeroDuration(), std::min(absl::Milliseconds(request->timeout_ms()), left));
    response->set_found(store_->WaitFor(request->key(), wait, response->mutable_value()));
    return grpc::Status::OK;
  }

 private:
  GrpcKvStoreServer* const store_;
};

GrpcKvStoreServer::GrpcKvStoreServer() : service_(std::make_unique<Service>(this)) {}

GrpcKvStoreServer::~GrpcKvStoreServer() { Stop(); }

absl::Status GrpcKvStoreServer::Start(const std::string& host, int port,
                                      std::shared_ptr<grpc::ServerCredentials> credentials) {
  if (server_ != nullptr) return absl::FailedPreconditionError("kv store already started");
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(host, ":", port), std::move(credentials), &port_);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("kv store cannot listen on ", host, ":", port, " (in use?)"));
  }
  return absl::OkStatus();
}

void GrpcKvStoreServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }  // releasing mu_ wakes every waiting Get
  if (server_ != nullptr) {
    server_->Shutdown(Deadline(absl::Seconds(1)));
    server_.reset();
  }
}

absl::Status GrpcKvStoreServer::Set(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("kv store is shutting down");
  data_[key] = value;
  return absl::OkStatus();
}

absl::StatusOr<std::string> GrpcKvStoreServer::Get(const std::string& key, absl::Duration timeout) {
  std::string value;
  if (!WaitFor(key, timeout, &value)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "kv store: key '", key, "' did not appear within ", absl::FormatDuration(timeout)));
  }
  return value;
}

bool GrpcKvStoreServer::WaitFor(const std::string& key, absl::Duration timeout,
                                std::string* value) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || data_.count(key) > 0; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  auto it = data_.find(key);
  if (stopping_ || it == data_.end()) return false;
  *value = it->second;
  return true;
}

struct GrpcKvStoreClient::Stub {
  std::unique_ptr<v1::KvStore::Stub> stub;
};

GrpcKvStoreClient::GrpcKvStoreClient(const std::string& target,
                                     std::shared_ptr<grpc::ChannelCredentials> credentials,
                                     absl::Duration connect_timeout)
    : target_(target), connect_timeout_(connect_timeout), stub_(std::make_unique<Stub>()) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Find a store that starts late (or a restarted router) quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  stub_->stub =
      v1::KvStore::NewStub(grpc::CreateCustomChannel(target, std::move(credentials), args));
}

GrpcKvStoreClient::~GrpcKvStoreClient() = default;

absl::Status GrpcKvStoreClient::Set(const std::string& key, const std::string& value) {
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(Deadline(connect_timeout_ + kAnswerSlack));
  v1::KvSetRequest request;
  request.set_key(key);
  request.set_value(value);
  v1::KvSetResponse response;
  return FromGrpc(stub_->stub->Set(&context, request, &response),
                  absl::StrCat(target_, " set '", key, "'"));
}

absl::StatusOr<std::string> GrpcKvStoreClient::Get(const std::string& key, absl::Duration timeout) {
  timeout = std::max(timeout, absl::ZeroDuration());
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(Deadline(connect_timeout_ + timeout + kAnswerSlack));
  v1::KvGetRequest request;
  request.set_key(key);
  request.set_timeout_ms(
      static_cast<uint32_t>(std::min<int64_t>(absl::ToInt64Milliseconds(timeout), UINT32_MAX)));
  v1::KvGetResponse response;
  grpc::Status s = stub_->stub->Get(&context, request, &response);
  if (!s.ok()) return FromGrpc(s, absl::StrCat(target_, " get '", key, "'"));
  if (!response.found()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "kv store: key '", key, "' did not appear within ", absl::FormatDuration(timeout)));
  }
  return std::move(*response.mutable_value());
}

}  // namespace tpserve
