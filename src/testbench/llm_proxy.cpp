#include "tapedeck/llm_proxy.hpp"
#include "floor/process_access.hpp"
#include "testbench/stop_listening.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "tapedeck/codec.hpp"

namespace tapedeck {

namespace {

// Headers relayed upstream: credentials (OpenAI's, Anthropic's, Google's) and API versions,
// nothing that describes this hop.
bool relayed(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "authorization" || lower == "x-api-key" || lower == "x-goog-api-key" ||
         lower.rfind("anthropic-", 0) == 0 || lower.rfind("openai-", 0) == 0;
}

std::string error_body(std::string_view type, std::string_view message) {
  return R"({"error":{"type":)" + json_string(type) + R"(,"message":)" + json_string(message) +
         "}}";
}

// How many bytes of what this proxy sent the client the client has not read yet: those still in
// this side's send queue (not yet acknowledged: a loaded machine delivers loopback packets
// late) and those in the client's receive queue, as /proc/net/tcp and tcp6 list them. 0 when
// the sockets are not listed.
uint64_t unread_by_client(int client_port, int server_port) {
  uint64_t unread = 0;
  for (const floor::TcpSocket& socket : floor::tcp_sockets()) {
    if (socket.local_port == client_port && socket.remote_port == server_port) {
      unread += socket.receive_queue;
    } else if (socket.local_port == server_port && socket.remote_port == client_port) {
      unread += socket.send_queue;
    }
  }
  return unread;
}

// The proxy hands a stream's events over one read at a time, recording and replaying alike (an
// upstream's events arrive apart, and after the headers): the next goes once the client has read
// what it was sent,
// or after a quarter second of waiting for a client that does not read yet. A client that gets
// every event in its own read makes the same clock reads around them as when it was recorded.
void wait_until_read(int client_port, int server_port) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  while (unread_by_client(client_port, server_port) > 0 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// The body a provider answers an error status with: Anthropic's shape for its Messages API (a
// path ending in /messages), OpenAI's otherwise. What SDKs parse to decide and report a retry.
std::string provider_error(std::string_view path, int status) {
  const bool anthropic = path.size() >= 9 && path.substr(path.size() - 9) == "/messages";
  const std::string message = "tapedeck --fault: an injected " + std::to_string(status);
  if (anthropic) {
    const char* type = status == 400   ? "invalid_request_error"
                       : status == 401 ? "authentication_error"
                       : status == 403 ? "permission_error"
                       : status == 404 ? "not_found_error"
                       : status == 413 ? "request_too_large"
                       : status == 429 ? "rate_limit_error"
                       : status == 529 ? "overloaded_error"
                                       : "api_error";
    return R"({"type":"error","error":{"type":")" + std::string(type) + R"(","message":)" +
           json_string(message) + "}}";
  }
  const char* type = status == 429   ? "requests"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  const char* code = status == 429 ? R"("rate_limit_exceeded")" : "null";
  return R"({"error":{"message":)" + json_string(message) + R"(,"type":")" + type +
         R"(","param":null,"code":)" + code + "}}";
}

// Whether the client's side of the connection is still open: this end is ESTABLISHED until the
// client closes it (then CLOSE_WAIT), as /proc/net/tcp lists it.
bool client_still_waiting(int client_port, int server_port) {
  for (const floor::TcpSocket& socket : floor::tcp_sockets()) {
    if (socket.local_port == server_port && socket.remote_port == client_port) {
      return socket.established;
    }
  }
  return false;
}

// Closes this end of the connection from `client_port` before any answer: the client sees the
// connection end, as when a provider's load balancer drops it. The socket is found by its inode
// among this process's descriptors; httplib's later write to it fails quietly, and it closes it.
void drop_connection(int client_port, int server_port) {
  std::string inode;
  for (const floor::TcpSocket& socket : floor::tcp_sockets()) {
    if (socket.local_port == server_port && socket.remote_port == client_port) inode = socket.inode;
  }
  if (inode.empty()) return;
  const std::string wanted = "socket:[" + inode + "]";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    std::error_code unreadable;
    if (std::filesystem::read_symlink(entry.path(), unreadable).string() != wanted) continue;
    const int fd = std::stoi(entry.path().filename().string());
    const linger abort_on_close{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    ::shutdown(fd, SHUT_RDWR);
    return;
  }
}

}  // namespace

struct LlmProxy::Impl {
  Session& session;
  std::string upstream;
  Hooks hooks;
  httplib::Server server;
  std::mutex session_mutex;  // a Session serves one call at a time
  int port = 0;
  std::thread thread;
  std::atomic<bool> stopping{false};  // ends the waits of timeout faults

  Impl(Session& bench_session, std::string upstream_base, Hooks proxy_hooks)
      : session(bench_session), upstream(std::move(upstream_base)), hooks(std::move(proxy_hooks)) {
    while (!upstream.empty() && upstream.back() == '/') upstream.pop_back();
  }

  // Runs the call and turns the testbench's refusals into HTTP answers the client can show.
  template <typename Call>
  void guarded(httplib::Response& response, Call&& call) {
    try {
      call();
    } catch (const ReplayMiss& miss) {
      if (hooks.on_replay_miss) hooks.on_replay_miss(miss);
      response.status = 500;
      response.set_content(error_body("tapedeck_replay_miss", miss.what()), "application/json");
    } catch (const std::invalid_argument& bad) {  // the body is not JSON
      response.status = 400;
      response.set_content(error_body("tapedeck_bad_request", bad.what()), "application/json");
    } catch (const NetworkDenied& denied) {
      response.status = 403;
      response.set_content(error_body("tapedeck_network_denied", denied.what()),
                           "application/json");
    } catch (const std::exception& error) {
      response.status = 502;
      response.set_content(error_body("tapedeck_upstream_error", error.what()), "application/json");
    }
  }

  // Brackets one request's handling with on_call_started / on_call_finished.
  struct InFlight {
    explicit InFlight(const Hooks& proxy_hooks) : hooks(proxy_hooks) {
      if (hooks.on_call_started) hooks.on_call_started();
    }
    ~InFlight() {
      if (hooks.on_call_finished) hooks.on_call_finished();
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    const Hooks& hooks;
  };

  // Sends `body` as the answer, the request counting as under way until httplib has written it
  // (it writes after the handler returns): a replay that left the recording skips the waits of a
  // client with nothing under way, and this client's answer is still coming.
  static void send_holding(httplib::Response& response, std::string body, const char* type,
                           std::shared_ptr<InFlight> in_flight) {
    auto bytes = std::make_shared<std::string>(std::move(body));
    response.set_content_provider(
        bytes->size(), type,
        [bytes, in_flight](size_t offset, size_t length, httplib::DataSink& sink) {
          return sink.write(bytes->data() + offset, length);
        });
  }

  // Replay: the fault this request gets, if any, its llm_fault record made.
  std::optional<Fault> fault_for(const std::string& body) {
    if (!hooks.fault_for || session.mode() != Testbench::Mode::replay) return std::nullopt;
    std::string digest;
    try {
      digest = llm_request_digest(body);
    } catch (const std::exception&) {
      return std::nullopt;  // not JSON: the call itself refuses it
    }
    std::optional<Fault> fault = hooks.fault_for(digest);
    if (!fault) return fault;
    {
      std::lock_guard lock(session_mutex);
      session.recorder().record(fault_record("llm_fault", *fault, "request_digest", digest));
    }
    if (hooks.on_fault_injected) hooks.on_fault_injected(*fault);
    return fault;
  }

  // The faults that stand in for the answer: an error status, silence, a closed connection.
  // False for the others (a stream cut short or slowed is served, then changed on its way).
  bool answer_with(const Fault& fault, const httplib::Request& request, httplib::Response& response,
                   const std::shared_ptr<InFlight>& in_flight) {
    switch (fault.effect) {
      case Fault::Effect::http_status: {
        const int status = static_cast<int>(fault.value);
        response.status = status;
        if (status == 429 || status == 503 || status == 529) {
          response.set_header("retry-after", "1");  // what providers send with these
        }
        send_holding(response, provider_error(request.path, status), "application/json", in_flight);
        return true;
      }
      case Fault::Effect::reset:
        drop_connection(request.remote_port, request.local_port);
        return true;
      case Fault::Effect::timeout:
        // Silent until the client gives up (its clock is the replay's: its timer fires as soon as
        // nothing else is pending), then gone; or until the proxy stops.
        while (!stopping.load() && client_still_waiting(request.remote_port, request.local_port)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        drop_connection(request.remote_port, request.local_port);
        return true;
      default:
        return false;
    }
  }

  void handle(const httplib::Request& request, httplib::Response& response) {
    auto in_flight = std::make_shared<InFlight>(hooks);
    const std::optional<Fault> fault = fault_for(request.body);
    // A request left unanswered is not under way: the client's own timer must be free to fire.
    if (fault && fault->effect == Fault::Effect::timeout) in_flight.reset();
    if (fault && answer_with(*fault, request, response, in_flight)) return;
    LlmRoute route;
    route.endpoint = upstream + request.path;
    for (const auto& [name, value] : request.headers) {
      if (relayed(name)) route.headers.push_back(name + ": " + value);
    }
    const std::string body = request.body;
    if (!llm_request_streams(body)) {
      guarded(response, [&] {
        std::lock_guard lock(session_mutex);
        LlmResponse answer = session.llm().call(body, {}, &route);
        if (hooks.on_call_served) hooks.on_call_served();
        send_holding(response, std::move(answer.body), "application/json", in_flight);
      });
      return;
    }
    // Streamed: each event goes to the client as it arrives from upstream (or from the tape).
    const bool replaying = session.mode() == Testbench::Mode::replay;
    const int client_port = request.remote_port;
    const int server_port = request.local_port;
    // cut@K: the events past the K-th are not sent; slow@MS: MS of the program's time before
    // each event after the first.
    const int64_t cut_after =
        fault && fault->effect == Fault::Effect::cut ? fault->value : INT64_MAX;
    const uint64_t slow_ms =
        fault && fault->effect == Fault::Effect::slow ? static_cast<uint64_t>(fault->value) : 0;
    response.set_chunked_content_provider(
        "text/event-stream", [this, route, body, in_flight, replaying, client_port, server_port,
                              cut_after, slow_ms](size_t, httplib::DataSink& sink) {
          httplib::Response failure;
          int64_t sent = 0;
          auto hand_over = [&](std::string_view event) {
            if (sent >= cut_after) return;
            // One event per read, the headers' too, in the recording as in its replay: a
            // recording on a loaded machine otherwise hands a late client several in one read,
            // and its replay then reads (and reads the clock) more often than it did.
            wait_until_read(client_port, server_port);
            if (slow_ms > 0 && sent > 0 && hooks.pass_time) hooks.pass_time(slow_ms);
            sink.write(event.data(), event.size());
            ++sent;
          };
          // Replay holds each event back until the next is known, so that the call is served
          // (its record made) before its last event is handed over, as a recording's record is
          // made as the upstream's last event passes. For a program under the floor, which has
          // no preload to announce its call, that record is the clock's cut (deferred: see
          // preload/clock_map.hpp).
          std::optional<std::string> held;
          guarded(failure, [&] {
            std::lock_guard lock(session_mutex);
            session.llm().call(
                body,
                [&](std::string_view event) {
                  if (!replaying) return hand_over(event);
                  if (held) hand_over(*held);
                  held = std::string(event);
                },
                &route);
            if (hooks.on_call_served) hooks.on_call_served();
            if (held) hand_over(*held);
            // The end of the stream (the client's EOF, on which an HTTP library's own thread
            // reads the clock) after the program took the last event in, in both modes.
            if (sent > 0) wait_until_read(client_port, server_port);
            if (held && hooks.before_stream_end) hooks.before_stream_end();
          });
          if (failure.status >= 400) {
            // Headers are gone already: the failure travels as a last event.
            const std::string event = "event: error\ndata: " + failure.body + "\n\n";
            sink.write(event.data(), event.size());
          }
          sink.done();
          return true;
        });
  }
};

LlmProxy::LlmProxy(Session& session, std::string upstream_base, Hooks hooks)
    : impl_(std::make_unique<Impl>(session, std::move(upstream_base), std::move(hooks))) {
  impl_->server.Post(".*", [this](const httplib::Request& request, httplib::Response& response) {
    impl_->handle(request, response);
  });
  // httplib's default adds SO_REUSEPORT, with which a second proxy (a parallel replay of the same
  // tape) could listen on the same preferred port and take half of this one's connections.
  impl_->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  for (const uint16_t preferred : impl_->hooks.preferred_ports) {
    if (impl_->server.bind_to_port("127.0.0.1", preferred)) {
      impl_->port = preferred;
      break;
    }
  }
  if (impl_->port == 0) impl_->port = impl_->server.bind_to_any_port("127.0.0.1");
  if (impl_->port <= 0) throw std::runtime_error("the LLM proxy cannot listen on 127.0.0.1");
  // Bound already: connections queue in the backlog until the listener thread accepts them.
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
}

LlmProxy::~LlmProxy() {
  stop();
}

void LlmProxy::stop() {
  impl_->stopping = true;
  detail::stop_listening(impl_->server, impl_->thread);
}

uint16_t LlmProxy::port() const {
  return static_cast<uint16_t>(impl_->port);
}

std::string LlmProxy::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port);
}

}  // namespace tapedeck
