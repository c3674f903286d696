#include "router/api/http_front_end.h"

#include <civetweb.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "router/api/request_timeout.h"

namespace tpserve {
namespace {

using openai::Endpoint;
using openai::json;

// How often a waiting request thread looks at the stop flag.
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

void WriteJson(mg_connection* conn, int status, const json& body) {
  const std::string text = openai::Dump(body);
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", "application/json", -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(text.size()).c_str(), -1);
  mg_response_header_send(conn);
  mg_write(conn, text.data(), text.size());
}

void WriteError(mg_connection* conn, const absl::Status& status, Endpoint endpoint) {
  const openai::ApiError e = openai::ToApiError(status, endpoint);
  WriteJson(conn, e.http_status, e.Body());
}

// One event of one choice, pushed by the serving loop, popped by the
// request's thread.
struct Event {
  int choice = 0;
  bool closed = false;
  absl::Status status;  // when closed
  v1::GenerateResponse response;
};

class EventQueue {
 public:
  // `max_bytes` (<= 0: unbounded) bounds the responses waiting for the
  // request's thread, which waits while the client does not read.
  explicit EventQueue(int64_t max_bytes) : max_bytes_(max_bytes) {}

  // False when the queue is over its bound: the event was not queued.
  bool Push(Event event) {
    absl::MutexLock lock(&mu_);
    const int64_t size = static_cast<int64_t>(event.response.ByteSizeLong());
    if (!event.closed && max_bytes_ > 0 && bytes_ + size > max_bytes_) return false;
    bytes_ += size;
    events_.push_back(std::move(event));
    return true;
  }
  // Queues a closing event regardless of the bound.
  void PushClose(Event event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  // The next event, or nullopt after `timeout`.
  std::optional<Event> Pop(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    // Await re-evaluates the condition whenever mu_ is released, so Push
    // needs no separate signal.
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &EventQueue::HasEvent), timeout)) {
      return std::nullopt;
    }
    Event e = std::move(events_.front());
    events_.pop_front();
    bytes_ -= static_cast<int64_t>(e.response.ByteSizeLong());
    return e;
  }

 private:
  bool HasEvent() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !events_.empty(); }

  const int64_t max_bytes_;
  absl::Mutex mu_;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// One choice's stream into the request's queue. Calls come from the serving
// loop thread in order. When the queue is over its bound (the client stopped
// reading), the choice is cancelled — its KV blocks free at the next step —
// and closed RESOURCE_EXHAUSTED.
class ChoiceSink final : public ResponseSink {
 public:
  ChoiceSink(std::shared_ptr<EventQueue> queue, int choice, int64_t max_bytes)
      : queue_(std::move(queue)), choice_(choice), max_bytes_(max_bytes) {}
  void SetCancel(std::function<void()> cancel) {
    absl::MutexLock lock(&mu_);
    cancel_ = std::move(cancel);
  }
  void Send(v1::GenerateResponse response) override {
    std::function<void()> cancel;
    {
      absl::MutexLock lock(&mu_);
      if (overflowed_) return;
      Event e;
      e.choice = choice_;
      e.response = std::move(response);
      if (queue_->Push(std::move(e))) return;
      overflowed_ = true;
      cancel = std::move(cancel_);
    }
    Event close;
    close.choice = choice_;
    close.closed = true;
    close.status = absl::ResourceExhaustedError(absl::StrCat(
        "the client is not reading its stream: more than ", max_bytes_,
        " bytes of responses are waiting to be sent (--stream_buffer_bytes); the request is "
        "cancelled"));
    queue_->PushClose(std::move(close));
    if (cancel) cancel();
  }
  void Close(absl::Status status) override {
    {
      absl::MutexLock lock(&mu_);
      if (overflowed_) return;  // already closed
    }
    Event e;
    e.choice = choice_;
    e.closed = true;
    e.status = std::move(status);
    queue_->PushClose(std::move(e));
  }

 private:
  std::shared_ptr<EventQueue> queue_;
  const int choice_;
  const int64_t max_bytes_;
  absl::Mutex mu_;
  std::function<void()> cancel_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
};

// The submitted choices of one HTTP request. Choice 0 of each prompt goes
// first; the prompt's other choices follow once it has produced its first
// response, so they find the prompt's KV blocks in the prefix cache instead
// of prefilling the same prompt n times. Destruction cancels what is open.
class Choices {
 public:
  Choices(ServingLoop* loop, std::vector<GenerateJob> jobs, int n)
      : loop_(loop), jobs_(std::move(jobs)), n_(n), seq_(jobs_.size()), state_(jobs_.size()) {}
  ~Choices() { CancelOpen(); }

  void SubmitFirsts() {
    for (size_t i = 0; i < jobs_.size(); i += n_) Submit(i);
  }
  // Called for every event of choice `i`.
  void OnEvent(int i, bool closed) {
    if (closed) state_[i] = State::kClosed;
    if (i % n_ == 0) {
      for (int k = i + 1; k < i + n_; ++k) {
        if (state_[k] == State::kPending) Submit(k);
      }
    }
  }
  bool AllClosed() const {
    for (State s : state_) {
      if (s != State::kClosed) return false;
    }
    return true;
  }
  void CancelOpen() {
    for (size_t i = 0; i < state_.size(); ++i) {
      if (state_[i] == State::kSubmitted) loop_->Cancel(seq_[i]);
      if (state_[i] != State::kClosed) state_[i] = State::kClosed;
    }
  }
  size_t size() const { return jobs_.size(); }

 private:
  enum class State { kPending, kSubmitted, kClosed };
  void Submit(size_t i) {
    state_[i] = State::kSubmitted;
    std::shared_ptr<ChoiceSink> sink = std::static_pointer_cast<ChoiceSink>(jobs_[i].sink);
    seq_[i] = loop_->Submit(std::move(jobs_[i]));
    ServingLoop* loop = loop_;
    const uint64_t seq = seq_[i];
    sink->SetCancel([loop, seq] { loop->Cancel(seq); });
  }

  ServingLoop* const loop_;
  std::vector<GenerateJob> jobs_;
  const int n_;
  std::vector<uint64_t> seq_;
  std::vector<State> state_;
};

std::string SseEvent(const json& data) {
  return absl::StrCat("data: ", openai::Dump(data), "\n\n");
}

}  // namespace

HttpFrontEnd::HttpFrontEnd(RequestPath* path, Options options)
    : path_(path), options_(std::move(options)), started_unix_(absl::ToUnixSeconds(absl::Now())) {}

HttpFrontEnd::~HttpFrontEnd() { Stop(); }

absl::Status HttpFrontEnd::Start() {
  mg_init_library(0);
  const std::string ports = absl::StrCat(options_.host, ":", options_.port);
  const std::string threads = std::to_string(options_.num_threads);
  const char* config[] = {"listening_ports",
                          ports.c_str(),
                          "num_threads",
                          threads.c_str(),
                          "enable_keep_alive",
                          "yes",
                          "keep_alive_timeout_ms",
                          "2000",
                          "request_timeout_ms",
                          "30000",
                          nullptr};
  mg_callbacks callbacks{};
  context_ = mg_start(&callbacks, this, config);
  if (context_ == nullptr) {
    mg_exit_library();
    return absl::UnavailableError(
        absl::StrCat("HTTP API: cannot listen on ", ports, " (in use? pick another --http_port)"));
  }
  mg_set_request_handler(context_, "**", &HttpFrontEnd::Dispatch, this);
  mg_server_port bound[4];
  if (mg_get_server_ports(context_, 4, bound) < 1) {
    Stop();
    return absl::UnavailableError("HTTP API: civetweb reports no listening port");
  }
  port_ = bound[0].port;
  return absl::OkStatus();
}

void HttpFrontEnd::Stop() {
  stopping_ = true;
  if (context_ != nullptr) {
    mg_stop(context_);  // joins the request threads; they see stopping_ within kPollInterval
    context_ = nullptr;
    mg_exit_library();
  }
}

int HttpFrontEnd::Dispatch(mg_connection* conn, void* self) {
  static_cast<HttpFrontEnd*>(self)->Handle(conn);
  return 1;  // handled (the status code was written)
}

void HttpFrontEnd::Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  const std::string uri = info->local_uri != nullptr ? info->local_uri : "";
  const std::string method = info->request_method != nullptr ? info->request_method : "";
  const Endpoint endpoint = uri == "/v1/completions" ? Endpoint::kCompletions : Endpoint::kChat;

  const bool post = uri == "/v1/chat/completions" || uri == "/v1/completions" ||
                    uri == "/tokenize" || uri == "/detokenize";
  const bool get = uri == "/v1/models" || uri == "/health";
  if (!post && !get) {
    mg_disable_connection_keep_alive(conn);
    WriteError(conn, absl::NotFoundError(absl::StrCat("no endpoint ", uri)), endpoint);
    return;
  }
  if ((post && method != "POST") || (get && method != "GET")) {
    mg_disable_connection_keep_alive(conn);
    openai::ApiError e;
    e.http_status = 405;
    e.message = absl::StrCat(uri, " takes ", post ? "POST" : "GET", ", got ", method);
    e.type = "invalid_request_error";
    WriteJson(conn, 405, e.Body());
    return;
  }
  // Health stays open (load balancers and probes carry no key).
  std::unique_ptr<ApiKeys::Lease> lease;
  if (options_.api_keys != nullptr && uri != "/health") {
    const char* auth = mg_get_header(conn, "Authorization");
    const absl::string_view header = auth != nullptr ? auth : "";
    absl::Status s;
    if (uri == "/v1/completions" || uri == "/v1/chat/completions") {
      absl::StatusOr<std::unique_ptr<ApiKeys::Lease>> admitted = options_.api_keys->Admit(header);
      if (admitted.ok()) lease = *std::move(admitted);
      s = admitted.status();
    } else {
      s = options_.api_keys->Authenticate(header).status();
    }
    if (!s.ok()) {
      mg_disable_connection_keep_alive(conn);
      WriteError(conn, s, endpoint);
      return;
    }
  }
  if (get) {
    if (uri == "/health") return HandleHealth(conn);
    return HandleModels(conn);
  }

  // The body, bounded before and while reading.
  const int64_t limit = options_.max_body_bytes;
  auto too_large = [&](int64_t got) {
    mg_disable_connection_keep_alive(conn);
    WriteError(conn,
               absl::InvalidArgumentError(absl::StrCat("body is ", got,
                                                       " bytes or more; the limit "
                                                       "is ",
                                                       limit, " bytes")),
               endpoint);
  };
  if (info->content_length > limit) return too_large(info->content_length);
  std::string body;
  char buffer[16384];
  for (;;) {
    const int got = mg_read(conn, buffer, sizeof(buffer));
    if (got <= 0) break;
    body.append(buffer, got);
    if (static_cast<int64_t>(body.size()) > limit) return too_large(body.size());
  }
  if (uri == "/tokenize") return HandleTokenize(conn, body);
  if (uri == "/detokenize") return HandleDetokenize(conn, body);
  HandleGenerate(conn, endpoint, body, std::move(lease));
}

void HttpFrontEnd::HandleHealth(mg_connection* conn) {
  absl::StatusOr<RequestPath::Serving> serving = path_->Ready();
  if (!serving.ok()) return WriteError(conn, serving.status(), Endpoint::kChat);
  WriteJson(conn, 200, json::object());
}

void HttpFrontEnd::HandleModels(mg_connection* conn) {
  absl::StatusOr<RequestPath::Serving> serving = path_->Ready();
  if (!serving.ok()) return WriteError(conn, serving.status(), Endpoint::kChat);
  const v1::ModelInfoResponse& info = serving->info;
  json model = {{"id", info.model_name()},   {"object", "model"},
                {"created", started_unix_},  {"owned_by", "tpserve"},
                {"root", info.model_name()}, {"max_model_len", info.context_length()}};
  WriteJson(conn, 200, json{{"object", "list"}, {"data", json::array({std::move(model)})}});
}

void HttpFrontEnd::HandleTokenize(mg_connection* conn, const std::string& body) {
  absl::StatusOr<v1::TokenizeRequest> request = openai::ParseTokenizeRequest(body);
  absl::StatusOr<v1::TokenizeResponse> out =
      request.ok() ? path_->Tokenize(*request) : request.status();
  if (!out.ok()) return WriteError(conn, out.status(), Endpoint::kChat);
  absl::StatusOr<RequestPath::Serving> serving = path_->Ready();
  json tokens = json::array(), strs = json::array();
  for (int i = 0; i < out->token_ids_size(); ++i) {
    tokens.push_back(out->token_ids(i));
    strs.push_back(out->tokens(i));
  }
  WriteJson(
      conn, 200,
      json{{"count", out->token_ids_size()},
           {"max_model_len", serving.ok() ? json(serving->info.context_length()) : json(nullptr)},
           {"tokens", std::move(tokens)},
           {"token_strs", std::move(strs)}});
}

void HttpFrontEnd::HandleDetokenize(mg_connection* conn, const std::string& body) {
  absl::StatusOr<std::vector<int32_t>> ids = openai::ParseDetokenizeRequest(body);
  absl::StatusOr<std::string> text = ids.ok() ? path_->Detokenize(*ids) : ids.status();
  if (!text.ok()) return WriteError(conn, text.status(), Endpoint::kChat);
  WriteJson(conn, 200, json{{"prompt", *text}});
}

void HttpFrontEnd::HandleGenerate(mg_connection* conn, Endpoint endpoint, const std::string& body,
                                  std::unique_ptr<ApiKeys::Lease> lease) {
  const absl::Time arrival = absl::Now();
  std::vector<openai::ChoiceResult> results;
  absl::Status final_status;
  auto count = [&] {
    if (FrontendMetrics* m = path_->frontend_metrics(); m != nullptr) {
      int64_t prompt = 0, generated = 0;
      for (const openai::ChoiceResult& r : results) {
        prompt += r.usage.prompt_tokens();
        generated += r.usage.completion_tokens();
      }
      m->CountRequest(Frontend::kHttp, final_status.code(),
                      absl::ToDoubleSeconds(absl::Now() - arrival), prompt, generated);
    }
  };
  auto fail = [&](const absl::Status& status) {
    final_status = status;
    WriteError(conn, status, endpoint);
    count();
  };

  // The deadline counts from arrival, like a gRPC call's.
  const char* timeout_header = mg_get_header(conn, kRequestTimeoutHeader);
  absl::StatusOr<absl::Time> deadline =
      ParseRequestTimeout(timeout_header != nullptr ? timeout_header : "", arrival);
  if (!deadline.ok()) {
    final_status = deadline.status();
    openai::ApiError e = openai::ToApiError(deadline.status(), endpoint);
    e.param = kRequestTimeoutHeader;
    WriteJson(conn, e.http_status, e.Body());
    return count();
  }
  absl::StatusOr<RequestPath::Serving> serving = path_->Ready();
  if (!serving.ok()) return fail(serving.status());
  absl::StatusOr<openai::ParsedRequest> parsed =
      openai::ParseGenerateRequest(endpoint, body, options_.parse);
  if (!parsed.ok()) return fail(parsed.status());
  const openai::ParsedRequest& request = *parsed;
  const std::string& model_name = serving->info.model_name();
  if (!request.model.empty() && request.model != model_name) {
    return fail(absl::NotFoundError(absl::StrCat(
        "model \"", request.model, "\" does not exist; this router serves \"", model_name, "\"")));
  }
  const openai::ResponseMeta meta{
      .id = absl::StrCat(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-", started_unix_, "-",
                         next_id_.fetch_add(1)),
      .created = absl::ToUnixSeconds(arrival),
      .model = model_name};

  // Every choice's job is built (and validated) before any is submitted.
  auto queue = std::make_shared<EventQueue>(options_.stream_buffer_bytes);
  std::vector<GenerateJob> jobs;
  for (const v1::GenerateRequest& prompt : request.prompts) {
    for (int i = 0; i < request.n; ++i) {
      v1::GenerateRequest one = prompt;
      one.set_request_id(absl::StrCat(meta.id, "-", jobs.size()));
      if (one.sampling().has_seed()) {
        one.mutable_sampling()->set_seed(one.sampling().seed() + static_cast<uint64_t>(i));
      }
      absl::StatusOr<GenerateJob> job = path_->BuildJob(one, *deadline, serving->limits);
      if (!job.ok()) return fail(job.status());
      job->sink = std::make_shared<ChoiceSink>(queue, static_cast<int>(jobs.size()),
                                               options_.stream_buffer_bytes);
      jobs.push_back(*std::move(job));
    }
  }
  results.resize(jobs.size());
  Choices choices(serving->loop, std::move(jobs), request.n);
  choices.SubmitFirsts();

  bool headers_sent = false;
  std::vector<bool> role_sent(results.size(), false);
  auto send = [&](const std::string& data) {
    return mg_send_chunk(conn, data.data(), static_cast<unsigned>(data.size())) > 0;
  };
  auto start_stream = [&] {
    headers_sent = true;
    mg_send_http_ok(conn, "text/event-stream", -1);  // -1: chunked transfer
  };
  while (!choices.AllClosed()) {
    std::optional<Event> event = queue->Pop(kPollInterval);
    if (!event.has_value()) {
      if (!stopping_.load()) continue;
      choices.CancelOpen();
      absl::Status s = absl::UnavailableError("the router is shutting down; retry");
      if (!headers_sent) return fail(s);
      final_status = s;
      send(SseEvent(openai::ToApiError(s, endpoint).Body()));
      send("");
      return count();
    }
    choices.OnEvent(event->choice, event->closed);
    if (event->closed && !event->status.ok()) {
      // One failed choice fails the request: the others are cancelled.
      choices.CancelOpen();
      if (!headers_sent) return fail(event->status);
      final_status = event->status;
      send(SseEvent(openai::ToApiError(event->status, endpoint).Body()));
      send("data: [DONE]\n\n");
      send("");
      return count();
    }
    if (event->closed) continue;
    if (lease != nullptr) lease->AddTokens(event->response.token_ids_size());
    results[event->choice].Add(event->response);
    if (!request.stream) continue;
    const v1::GenerateResponse& r = event->response;
    if (r.text().empty() && r.logprobs_size() == 0 &&
        r.finish_reason() == v1::FINISH_REASON_UNSPECIFIED) {
      continue;  // text held back (partial character or possible stop string)
    }
    if (!headers_sent) start_stream();
    bool ok = true;
    if (endpoint == Endpoint::kChat && !role_sent[event->choice]) {
      role_sent[event->choice] = true;
      ok = send(SseEvent(openai::RoleChunk(request, meta, event->choice)));
    }
    ok = ok && send(SseEvent(openai::StreamChunk(request, meta, event->choice, r)));
    if (!ok) {
      // The client went away: free its KV now rather than at max_tokens.
      choices.CancelOpen();
      final_status = absl::CancelledError("the HTTP client disconnected");
      return count();
    }
  }

  final_status = absl::OkStatus();
  if (!request.stream) {
    WriteJson(conn, 200, openai::CompletionResponse(request, meta, results));
    return count();
  }
  if (!headers_sent) start_stream();
  if (request.include_usage) {
    send(SseEvent(openai::UsageChunk(request, meta, openai::UsageJson(results, request.n))));
  }
  send("data: [DONE]\n\n");
  send("");  // the terminating zero-length chunk
  count();
}

}  // namespace tpserve
