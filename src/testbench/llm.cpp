// The LLM axis: request digests over a canonical JSON form, libcurl for recording, responses
// served by digest for replay, server-sent events handed back event by event.
#include <curl/curl.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <mutex>

#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/testbench.hpp"

namespace tapedeck {

namespace {

// Top-level request fields that are credentials or change from run to run.
constexpr std::string_view kLeftOut[] = {"api_key", "user", "metadata", "stream_options"};

void canonical(simdjson::dom::element value, LineBuffer& out, bool top_level) {
  using simdjson::dom::element_type;
  switch (value.type()) {
    case element_type::OBJECT: {
      std::vector<std::pair<std::string_view, simdjson::dom::element>> fields;
      const simdjson::dom::object object = value.get_object().value_unsafe();
      for (auto field : object) {
        if (top_level &&
            std::find(std::begin(kLeftOut), std::end(kLeftOut), field.key) != std::end(kLeftOut)) {
          continue;
        }
        fields.emplace_back(field.key, field.value);
      }
      std::stable_sort(fields.begin(), fields.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      out.put_char('{');
      for (size_t i = 0; i < fields.size(); ++i) {
        if (i) out.put_char(',');
        out.put_json_string(fields[i].first);
        out.put_char(':');
        canonical(fields[i].second, out, false);
      }
      out.put_char('}');
      return;
    }
    case element_type::ARRAY: {
      out.put_char('[');
      bool first = true;
      const simdjson::dom::array array = value.get_array().value_unsafe();
      for (auto item : array) {
        if (!first) out.put_char(',');
        first = false;
        canonical(item, out, false);
      }
      out.put_char(']');
      return;
    }
    case element_type::STRING:
      out.put_json_string(value.get_string().value_unsafe());
      return;
    case element_type::INT64:
      out.put_int(value.get_int64().value_unsafe());
      return;
    case element_type::UINT64:
      out.put_uint(value.get_uint64().value_unsafe());
      return;
    case element_type::DOUBLE: {
      char digits[32];
      auto end =
          std::to_chars(digits, digits + sizeof digits, value.get_double().value_unsafe()).ptr;
      out.put(std::string_view(digits, static_cast<size_t>(end - digits)));
      return;
    }
    case element_type::BOOL:
      out.put(value.get_bool().value_unsafe() ? "true" : "false");
      return;
    case element_type::NULL_VALUE:
      out.put("null");
      return;
  }
}

bool asks_for_stream(simdjson::dom::element root) {
  bool stream = false;
  return !root["stream"].get(stream) && stream;
}

// One parse of the request: its canonical form, and whether it asks for a streamed answer.
struct CanonicalRequest {
  std::string text;
  bool streamed = false;
};

CanonicalRequest canonicalize(std::string_view request_json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(request_json.data(), request_json.size()).get(root)) {
    throw std::invalid_argument("an LLM request must be JSON");
  }
  LineBuffer out;
  canonical(root, out, true);
  return {std::string(out.view()), asks_for_stream(root)};
}

// Server-sent events end with a blank line; each event is handed back with its terminator.
class EventSplitter {
 public:
  explicit EventSplitter(const LlmClient::OnChunk& on_event) : on_event_(on_event) {}
  void feed(std::string_view bytes) {
    pending_.append(bytes);
    size_t end;
    while ((end = pending_.find("\n\n")) != std::string::npos) {
      on_event_(std::string_view(pending_).substr(0, end + 2));
      pending_.erase(0, end + 2);
    }
  }
  void finish() {
    if (!pending_.empty()) on_event_(pending_);
    pending_.clear();
  }

 private:
  const LlmClient::OnChunk& on_event_;
  std::string pending_;
};

struct Transfer {
  std::string body;
  EventSplitter* events = nullptr;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const std::string_view bytes(data, size * count);
  transfer->body.append(bytes);
  if (transfer->events != nullptr) transfer->events->feed(bytes);
  return bytes.size();
}

LlmResponse post(const LlmOptions& options, const LlmRoute* route, const std::string& body,
                 const LlmClient::OnChunk& on_chunk, bool streamed) {
  static std::once_flag curl_ready;
  std::call_once(curl_ready, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (curl == nullptr) throw std::runtime_error("libcurl could not start");
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (route != nullptr) {
    for (const std::string& header : route->headers)
      headers = curl_slist_append(headers, header.c_str());
  } else if (!options.api_key.empty()) {
    const std::string auth = options.auth_header == "Authorization"
                                 ? "Authorization: Bearer " + options.api_key
                                 : options.auth_header + ": " + options.api_key;
    headers = curl_slist_append(headers, auth.c_str());
  }
  if (route == nullptr) {
    for (const std::string& header : options.extra_headers) {
      headers = curl_slist_append(headers, header.c_str());
    }
  }
  const std::string& endpoint = route != nullptr ? route->endpoint : options.endpoint;
  Transfer transfer;
  EventSplitter events(on_chunk);
  if (streamed && on_chunk) transfer.events = &events;
  curl_easy_setopt(curl, CURLOPT_URL, endpoint.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode code = curl_easy_perform(curl);
  LlmResponse response;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) {
    throw std::runtime_error("LLM request to " + endpoint + " failed: " + curl_easy_strerror(code));
  }
  if (transfer.events != nullptr) events.finish();
  response.body = std::move(transfer.body);
  return response;
}

}  // namespace

std::string first_difference(std::string_view recorded, std::string_view replayed) {
  size_t prefix = 0;
  while (prefix < recorded.size() && prefix < replayed.size() &&
         recorded[prefix] == replayed[prefix]) {
    ++prefix;
  }
  const size_t from = prefix > 40 ? prefix - 40 : 0;
  const auto excerpt = [&](std::string_view text) {
    std::string shown = from > 0 ? "…" : "";
    for (const char c : text.substr(from, 120)) shown += c == '\n' ? ' ' : c;
    return shown + (from + 120 < text.size() ? "…" : "");
  };
  return "at byte " + std::to_string(prefix) + ":\n  recorded: " + excerpt(recorded) +
         "\n  replay:   " + excerpt(replayed);
}

std::string abbreviated(std::string_view text, size_t most) {
  if (text.size() <= most) return std::string(text);
  return std::string(text.substr(0, most)) + "… (" + std::to_string(text.size()) + " bytes)";
}

std::string llm_canonical_request(std::string_view request_json) {
  return canonicalize(request_json).text;
}

bool llm_request_streams(std::string_view request_json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  return !parser.parse(request_json.data(), request_json.size()).get(root) && asks_for_stream(root);
}

std::string llm_request_digest(std::string_view request_json) {
  return content_hash(llm_canonical_request(request_json));
}

LlmResponse LlmClient::call(const std::string& request_json, const OnChunk& on_chunk,
                            const LlmRoute* route) {
  // Named, not bound: a structured binding cannot be captured by fetch_upstream below (C++20).
  const CanonicalRequest canonical = canonicalize(request_json);
  const std::string& request = canonical.text;
  const bool streamed = canonical.streamed;
  const std::string digest = content_hash(request);
  Recorder& recorder = *session_.recorder_;
  LlmResponse response;

  // The call made for real, upstream: in a recording, and in a replay that records its misses.
  auto fetch_upstream = [&] {
    // The credentials this call carries must not come back on the tape inside an answer (an
    // error that quotes the key, say).
    recorder.add_secret(options_.api_key);
    if (route != nullptr) {
      for (const std::string& header : route->headers) {
        const size_t colon = header.find(':');
        std::string name = header.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (colon == std::string::npos ||
            (name != "authorization" && name != "x-api-key" && name != "x-goog-api-key")) {
          continue;
        }
        std::string value = header.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        if (value.rfind("Bearer ", 0) == 0) value.erase(0, 7);
        recorder.add_secret(value);
      }
    }
    const std::string& endpoint = route != nullptr ? route->endpoint : options_.endpoint;
    session_.network_.require(endpoint);
    response = post(options_, route, request_json, on_chunk, streamed);
    if (response.status < 200 || response.status > 299) {
      throw std::runtime_error("LLM endpoint " + endpoint + " answered " +
                               std::to_string(response.status) + ": " +
                               response.body.substr(0, 300));
    }
    session_.llm_requests_.emplace(digest, request);
  };

  if (session_.mode_ == Testbench::Mode::record) {
    fetch_upstream();
  } else {
    auto found = session_.llm_calls_.find(digest);
    // Skip recordings already served out of order (serve_next_in_order).
    while (found != session_.llm_calls_.end() && !found->second.empty() &&
           session_.llm_served_.count(found->second.front())) {
      found->second.pop_front();
    }
    const kind::LlmCall* served = nullptr;
    if (found != session_.llm_calls_.end() && !found->second.empty()) {
      served = found->second.front();
      found->second.pop_front();
    } else if (options_.on_miss == LlmOptions::OnMiss::serve_next_in_order) {
      for (const kind::LlmCall* call : session_.llm_in_order_) {
        if (!session_.llm_served_.count(call)) {
          served = call;
          break;
        }
      }
    }
    if (served == nullptr && options_.on_miss == LlmOptions::OnMiss::record) {
      fetch_upstream();  // a request the tape does not hold goes upstream and is recorded
    } else if (served == nullptr) {
      // The nearest recorded request: the longest shared start and end of the canonical forms.
      std::string nearest_digest, nearest;
      size_t best = 0;
      for (const auto& [recorded_digest, calls] : session_.llm_calls_) {
        std::string recorded_request;
        try {
          recorded_request = cas::read_entry(session_.recorded_->cas_dir(), recorded_digest);
        } catch (const TapeError&) {
          continue;  // recorded without its request (or by another tool)
        }
        size_t shared = 0;
        while (shared < recorded_request.size() && shared < request.size() &&
               recorded_request[shared] == request[shared]) {
          ++shared;
        }
        if (nearest_digest.empty() || shared > best) {
          best = shared;
          nearest_digest = recorded_digest;
          nearest = std::move(recorded_request);
        }
      }
      throw ReplayMiss(
          "replay sent an LLM request the tape does not hold" +
              std::string(found != session_.llm_calls_.end() ? " again" : "") + " (digest " +
              digest + ")" +
              (nearest_digest.empty() ? std::string("; no recorded request to compare it with")
                                      : "; nearest recorded request (digest " + nearest_digest +
                                            ") differs " + first_difference(nearest, request)),
          request, nearest);
    } else {
      session_.llm_served_.insert(served);
      response.status = 200;
      response.body = session_.recorded_->resolve(served->response);
      session_.llm_requests_.emplace(digest, request);
      if (streamed && on_chunk) {
        EventSplitter events(on_chunk);
        size_t begin = 0;
        // The recorded stream, handed back at the event boundaries it had.
        while (begin < response.body.size()) {
          size_t end = response.body.find("\n\n", begin);
          end = end == std::string::npos ? response.body.size() : end + 2;
          events.feed(std::string_view(response.body).substr(begin, end - begin));
          begin = end;
        }
        events.finish();
      }
    }
  }
  // Made before the proxy ends the answer's body: a client sees its end only after the record.
  recorder.record(kind::LlmCall{digest, recorder.payload_from_bytes(response.body)});
  return response;
}

}  // namespace tapedeck
