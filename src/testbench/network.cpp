#include <charconv>

#include "tapedeck/testbench.hpp"

namespace tapedeck {

namespace {

struct HostPort {
  std::string host;
  std::optional<uint16_t> port;
};

std::optional<uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(value);
}

// "host", "host:port", "[v6]" or "[v6]:port"; hosts compare lowercase.
std::optional<HostPort> split_host_port(std::string_view text) {
  HostPort out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port_text = rest.substr(1);
    }
  } else {
    const size_t colon = text.rfind(':');
    out.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) port_text = text.substr(colon + 1);
  }
  if (out.host.empty()) return std::nullopt;
  for (char& c : out.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!port_text.empty() || text.back() == ':') {
    out.port = parse_port(port_text);
    if (!out.port) return std::nullopt;
  }
  return out;
}

// scheme://[user@]host[:port]/… -> host and port (the scheme's when none is written).
std::pair<std::string, uint16_t> target_of(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) throw NetworkDenied("denied: `" + url + "` is not a URL");
  const std::string scheme = url.substr(0, scheme_end);
  std::string_view rest = std::string_view(url).substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
  auto target = split_host_port(rest);
  if (!target) throw NetworkDenied("denied: cannot tell the host of `" + url + "`");
  return {target->host, target->port.value_or(scheme == "https" ? 443 : scheme == "http" ? 80 : 0)};
}

}  // namespace

NetworkPolicy::Rule NetworkPolicy::parse(const std::string& rule) {
  std::string_view text = rule;
  const bool subdomains = text.rfind("*.", 0) == 0;
  if (subdomains) text.remove_prefix(2);
  auto parsed = split_host_port(text);
  if (!parsed || parsed->host.find('*') != std::string::npos) {
    throw std::invalid_argument("network rule `" + rule + "` is not host, *.domain or host:port");
  }
  return Rule{std::move(parsed->host), parsed->port, subdomains};
}

std::string NetworkPolicy::rule_for(const std::string& url) {
  const auto [host, port] = target_of(url);
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

NetworkPolicy& NetworkPolicy::allow(const std::string& rule) {
  parse(rule);
  rules_.push_back(rule);
  return *this;
}

std::optional<std::string> NetworkPolicy::allowing_rule(const std::string& host,
                                                        uint16_t port) const {
  std::string wanted = host;
  for (char& c : wanted) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const std::string& rule : rules_) {
    const Rule allowed = parse(rule);
    if (allowed.port && *allowed.port != port) continue;
    const bool matches = allowed.subdomains
                             ? wanted.size() > allowed.host.size() + 1 &&
                                   wanted.compare(wanted.size() - allowed.host.size(),
                                                  allowed.host.size(), allowed.host) == 0 &&
                                   wanted[wanted.size() - allowed.host.size() - 1] == '.'
                             : wanted == allowed.host;
    if (matches) return rule;
  }
  return std::nullopt;
}

void NetworkPolicy::require(const std::string& url) const {
  const auto [host, port] = target_of(url);
  if (allowing_rule(host, port)) return;
  std::string rules;
  for (const std::string& rule : rules_) rules += (rules.empty() ? "" : ", ") + rule;
  throw NetworkDenied("denied: " + host + ":" + std::to_string(port) +
                      " matches no rule of the allowlist (" +
                      (rules.empty() ? std::string("empty: the network is closed") : rules) + ")");
}

}  // namespace tapedeck
