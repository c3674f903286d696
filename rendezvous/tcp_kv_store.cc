#include "rendezvous/tcp_kv_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "rendezvous/socket_io.h"

namespace tpserve {
namespace {

constexpr uint32_t kMaxKeySize = 4096;
constexpr uint32_t kMaxValueSize = 64u << 20;
constexpr char kSet = 'S';
constexpr char kGet = 'G';

}  // namespace

TcpKvStoreServer::~TcpKvStoreServer() { Stop(); }

absl::Status TcpKvStoreServer::Start(const std::string& host, int port) {
  TPS_RETURN_IF_ERROR(Listen(host, port));
  Serve();
  return absl::OkStatus();
}

absl::Status TcpKvStoreServer::Listen(const std::string& host, int port) {
  if (listen_fd_ >= 0) return absl::FailedPreconditionError("kv store server already started");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(), &hints,
                       &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("resolving ", host, ": ", gai_strerror(rc)));
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    std::string err = strerror(errno);
    if (fd >= 0) ::close(fd);
    freeaddrinfo(res);
    return absl::UnavailableError(absl::StrCat("kv store listen on ", host, ":", port, ": ", err));
  }
  freeaddrinfo(res);
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  listen_fd_ = fd;
  stopping_ = false;
  return absl::OkStatus();
}

void TcpKvStoreServer::Serve() {
  if (listen_fd_ < 0 || accept_thread_.joinable()) return;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

void TcpKvStoreServer::Stop() {
  if (listen_fd_ < 0) return;
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(conn_threads_);
  }  // releasing mu_ wakes every Get waiting in Serve (it re-checks stopping_)
  for (std::thread& t : threads) t.join();
}

void TcpKvStoreServer::AcceptLoop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // listen socket shut down
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    conn_fds_.insert(fd);
    conn_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void TcpKvStoreServer::Serve(int fd) {
  while (!stopping_) {
    char op = 0;
    if (!ReadAll(fd, &op, 1).ok()) break;
    absl::StatusOr<std::string> key = ReadSized(fd, kMaxKeySize);
    if (!key.ok()) break;
    if (op == kSet) {
      absl::StatusOr<std::string> value = ReadSized(fd, kMaxValueSize);
      if (!value.ok()) break;
      {
        absl::MutexLock lock(&mu_);
        data_[*key] = *std::move(value);
      }  // releasing mu_ re-checks every waiting Get's condition
      char ok = 0;
      if (!WriteAll(fd, &ok, 1).ok()) break;
    } else if (op == kGet) {
      absl::StatusOr<uint32_t> timeout_ms = ReadU32(fd);
      if (!timeout_ms.ok()) break;
      std::string value;
      bool found;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || data_.count(*key) > 0;
        };
        found = mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(*timeout_ms));
        found = found && data_.count(*key) > 0;
        if (found) value = data_[*key];
      }
      char code = found ? 0 : 1;
      if (!WriteAll(fd, &code, 1).ok()) break;
      if (found && (!WriteU32(fd, static_cast<uint32_t>(value.size())).ok() ||
                    !WriteAll(fd, value.data(), value.size()).ok())) {
        break;
      }
    } else {
      break;  // protocol error: drop the connection
    }
  }
  absl::MutexLock lock(&mu_);
  conn_fds_.erase(fd);
  ::close(fd);
}

TcpKvStoreClient::TcpKvStoreClient(std::string host, int port, absl::Duration connect_timeout)
    : host_(std::move(host)), port_(port), connect_timeout_(connect_timeout) {}

TcpKvStoreClient::~TcpKvStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status TcpKvStoreClient::EnsureConnected() {
  if (fd_ >= 0) return absl::OkStatus();
  absl::Time deadline = absl::Now() + connect_timeout_;
  while (true) {
    absl::StatusOr<int> fd = ConnectTcp(host_, port_);
    if (fd.ok()) {
      fd_ = *fd;
      return absl::OkStatus();
    }
    if (absl::Now() >= deadline) return Annotate(fd.status(), "kv store");
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status TcpKvStoreClient::Set(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  TPS_RETURN_IF_ERROR(EnsureConnected());
  SetReceiveTimeout(fd_, absl::Seconds(30));
  absl::Status s = WriteAll(fd_, &kSet, 1);
  if (s.ok()) s = WriteU32(fd_, static_cast<uint32_t>(key.size()));
  if (s.ok()) s = WriteAll(fd_, key.data(), key.size());
  if (s.ok()) s = WriteU32(fd_, static_cast<uint32_t>(value.size()));
  if (s.ok()) s = WriteAll(fd_, value.data(), value.size());
  char code = 1;
  if (s.ok()) s = ReadAll(fd_, &code, 1);
  if (!s.ok()) {
    ::close(fd_);
    fd_ = -1;
    return Annotate(s, absl::StrCat("kv store set '", key, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TcpKvStoreClient::Get(const std::string& key, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  TPS_RETURN_IF_ERROR(EnsureConnected());
  int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout));
  // The server answers within `timeout`; allow slack before calling it dead.
  SetReceiveTimeout(fd_, timeout + absl::Seconds(10));
  absl::Status s = WriteAll(fd_, &kGet, 1);
  if (s.ok()) s = WriteU32(fd_, static_cast<uint32_t>(key.size()));
  if (s.ok()) s = WriteAll(fd_, key.data(), key.size());
  if (s.ok()) s = WriteU32(fd_, static_cast<uint32_t>(std::min<int64_t>(ms, UINT32_MAX)));
  char code = 1;
  if (s.ok()) s = ReadAll(fd_, &code, 1);
  absl::StatusOr<std::string> value;
  if (s.ok() && code == 0) {
    value = ReadSized(fd_, kMaxValueSize);
    s = value.status();
  }
  if (!s.ok()) {
    ::close(fd_);
    fd_ = -1;
    return Annotate(s, absl::StrCat("kv store get '", key, "'"));
  }
  if (code != 0) {
    return absl::DeadlineExceededError(absl::StrCat(
        "kv store: key '", key, "' did not appear within ", absl::FormatDuration(timeout)));
  }
  return value;
}

}  // namespace tpserve
