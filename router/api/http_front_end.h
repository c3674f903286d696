// HttpFrontEnd: the router's OpenAI-compatible HTTP API, served with
// civetweb (Debian's libcivetweb, the same library prometheus-cpp's /metrics
// exposer runs on; why civetweb: docs/architecture.md "HTTP API").
//
//   POST /v1/chat/completions, /v1/completions   (stream: true -> SSE)
//   GET  /v1/models, /health
//   POST /tokenize, /detokenize                  (vLLM's shapes)
//
// The front end only converts (openai_protocol.h): every request goes
// through the RequestPath it shares with the gRPC service, so validation,
// tokenization, the chat template, scheduling and detokenization are the
// gRPC path's. Threading: civetweb runs each request on one of
// `num_threads` pool threads; a generation request's thread waits on its
// choices' responses (pushed by the serving loop into a per-request queue)
// and writes SSE chunks as they arrive. A failed write (the client went
// away) cancels every choice of the request through ServingLoop::Cancel,
// which frees their KV blocks at the loop's next step. The request header
// `x-request-timeout: <seconds>` is the request's deadline
// (request_timeout.h); a passed deadline is answered 504.
//
//   HttpFrontEnd http(&service.path(), {.host = "0.0.0.0", .port = 8000});
//   TPS_RETURN_IF_ERROR(http.Start());
//   ... http.port() ...
//   http.Stop();  // before the serving loop stops: cancels open requests
#ifndef TPSERVE_ROUTER_API_HTTP_FRONT_END_H_
#define TPSERVE_ROUTER_API_HTTP_FRONT_END_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "router/api/api_keys.h"
#include "router/api/openai_protocol.h"
#include "router/api/request_path.h"

struct mg_context;
struct mg_connection;

namespace tpserve {

class HttpFrontEnd {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 0;          // 0 = a free port (see port())
    int num_threads = 64;  // concurrent connections; a streaming request holds one
    int64_t max_body_bytes = 4 << 20;
    // Responses of one request waiting for a client that does not read
    // (its thread blocks in the socket write); beyond it the request's
    // choices are cancelled and it ends RESOURCE_EXHAUSTED. <= 0: unbounded.
    int64_t stream_buffer_bytes = 16 << 10;
    openai::ParseOptions parse;
    // API keys (api_keys.h); null: no keys needed. With keys every endpoint
    // but /health needs "Authorization: Bearer <key>" (401 otherwise, in
    // OpenAI's error shape); generation requests are admitted against the
    // key's limits (429 with a retry hint) and charge it their tokens. Must
    // outlive the front end.
    ApiKeys* api_keys = nullptr;
  };

  // `path` must outlive the front end.
  HttpFrontEnd(RequestPath* path, Options options);
  ~HttpFrontEnd();  // Stop()
  HttpFrontEnd(const HttpFrontEnd&) = delete;
  HttpFrontEnd& operator=(const HttpFrontEnd&) = delete;

  // Binds and starts serving; UNAVAILABLE naming the address when it cannot.
  [[nodiscard]] absl::Status Start();
  // The bound port (after Start).
  int port() const { return port_; }
  // Cancels open generation requests, answers them 503 (or ends their
  // stream) and joins civetweb's threads. Idempotent.
  void Stop();

 private:
  static int Dispatch(mg_connection* conn, void* self);
  void Handle(mg_connection* conn);
  void HandleGenerate(mg_connection* conn, openai::Endpoint endpoint, const std::string& body,
                      std::unique_ptr<ApiKeys::Lease> lease);
  void HandleModels(mg_connection* conn);
  void HandleHealth(mg_connection* conn);
  void HandleTokenize(mg_connection* conn, const std::string& body);
  void HandleDetokenize(mg_connection* conn, const std::string& body);

  RequestPath* const path_;
  const Options options_;
  const int64_t started_unix_;
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_HTTP_FRONT_END_H_
