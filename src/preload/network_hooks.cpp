// connect: the internet is denied unless allowed (--allow, resolved by the supervisor);
// loopback to tapedeck's own LLM proxy passes, and so do Unix sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

bool allowed(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    const uint16_t port = ntohs(in->sin_port);
    const bool loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    if (loopback && port == config.proxy_port && port != 0) return true;
    for (size_t i = 0; i < config.allowed_count; ++i) {
      const Allowed& rule = config.allowed[i];
      if (rule.family == AF_INET && memcmp(rule.address, &in->sin_addr, 4) == 0 &&
          (rule.port == 0 || rule.port == port))
        return true;
    }
    return false;
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    const uint16_t port = ntohs(in6->sin6_port);
    static const uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const auto* bytes = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
    const bool loopback = memcmp(bytes, kLoopback, 16) == 0 ||
                          (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && bytes[12] == 127);
    if (loopback && port == config.proxy_port && port != 0) return true;
    for (size_t i = 0; i < config.allowed_count; ++i) {
      const Allowed& rule = config.allowed[i];
      if (rule.family == AF_INET6 && memcmp(rule.address, &in6->sin6_addr, 16) == 0 &&
          (rule.port == 0 || rule.port == port))
        return true;
    }
    return false;
  }
  return true;  // Unix sockets and the like stay on this machine
}

void describe_denied(const sockaddr* address) {
  char host[64] = "?";
  uint16_t port = 0;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    const auto* b = reinterpret_cast<const uint8_t*>(&in->sin_addr);
    snprintf(host, sizeof host, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    port = ntohs(in->sin_port);
  } else {
    snprintf(host, sizeof host, "an IPv6 address");
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(address)->sin6_port);
  }
  char line[256];
  snprintf(line, sizeof line,
           "tapedeck: network denied: connect to %s:%u (the testbench denies by default; "
           "allow it with --allow HOST[:PORT])\n",
           host, port);
  report(line);
}

void parse_allowed(const char* list) {
  // "family/hex-address/port,…" written by the supervisor, which resolved the host names.
  while (list != nullptr && *list != '\0' && config.allowed_count < kMaxAllowed) {
    Allowed rule{};
    unsigned family = 0;
    char hex[33] = {};
    unsigned port = 0;
    if (sscanf(list, "%u/%32[0-9a-f]/%u", &family, hex, &port) == 3) {
      rule.family = static_cast<sa_family_t>(family);
      for (size_t i = 0; i < 16 && hex[2 * i] != '\0'; ++i) {
        unsigned byte = 0;
        sscanf(hex + 2 * i, "%2x", &byte);
        rule.address[i] = static_cast<uint8_t>(byte);
      }
      rule.port = static_cast<uint16_t>(port);
      config.allowed[config.allowed_count++] = rule;
    }
    list = strchr(list, ',');
    if (list != nullptr) ++list;
  }
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int connect(int fd, const struct sockaddr* address, socklen_t length) {
  if (config.active && !config.floor && address != nullptr && !in_hook && !allowed(address)) {
    HookScope scope;
    describe_denied(address);
    errno = ECONNREFUSED;
    return -1;
  }
  return ensure(real.connect, "connect")(fd, address, length);
}

}  // extern "C"
