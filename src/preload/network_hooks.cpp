// connect: the internet is denied unless allowed (--allow, resolved by the supervisor);
// loopback to tapedeck's own LLM proxy passes, and so do Unix sockets. getaddrinfo: a name is
// resolved only when it is local (numeric, localhost, /etc/hosts) or --allow names it; any other
// fails at once (EAI_NONAME), as the connect would. A lookup goes out on the network (the C
// library's own sockets, which no hook sees) and takes real time in a thread of its own: a
// tracing exporter's lookup of api.openai.com raced the program's timers, so a replay's order
// of its retries and its shutdown timer was not the recording's. The first send of each
// request to the proxy (write, writev, send, sendto, sendmsg; reads mark the next send a new
// request) announces it, with the clock reads batched before it.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <strings.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

bool to_proxy(const sockaddr* address) {
  if (config.proxy_port == 0) return false;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127 && ntohs(in->sin_port) == config.proxy_port;
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
    return ntohs(in6->sin6_port) == config.proxy_port &&
           (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
            (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && bytes[12] == 127));
  }
  return false;
}

bool allowed(const sockaddr* address) {
  if (to_proxy(address)) return true;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    const uint16_t port = ntohs(in->sin_port);
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

// Connections to the LLM proxy. An LLM call cuts the clock where its request is sent, in record
// and in replay alike: the first send of a request (the first since the connection was opened
// or last read from; HTTP/1.1 clients do not pipeline) announces it.
constinit FdSet proxy_fds;
constinit FdSet proxy_requests_sent;  // a request went out; nothing was read since

void before_send(int fd) {
  if (!proxy_fds.contains(fd) || in_hook || !config.active) return;
  if (proxy_requests_sent.contains(fd)) return;  // the same request, written in parts
  proxy_requests_sent.add(fd);
  HookScope scope;
  const int saved = errno;
  announce_llm_request();
  errno = saved;
}

void note_proxy_read(int fd) {
  if (proxy_fds.contains(fd)) proxy_requests_sent.remove(fd);
}

void forget_proxy_fd(int fd) {
  proxy_fds.remove(fd);
  proxy_requests_sent.remove(fd);
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

namespace {

bool names_match(const char* name, const char* candidate, size_t length) {
  return strlen(name) == length && strncasecmp(name, candidate, length) == 0;
}

bool numeric(const char* name) {
  unsigned char address[16];
  return inet_pton(AF_INET, name, address) == 1 || inet_pton(AF_INET6, name, address) == 1;
}

bool localhost(const char* name) {
  const size_t length = strlen(name);
  constexpr char kSuffix[] = ".localhost";
  return strcasecmp(name, "localhost") == 0 ||
         (length > sizeof kSuffix - 1 &&
          strcasecmp(name + length - (sizeof kSuffix - 1), kSuffix) == 0);
}

// Whether /etc/hosts names it (answered from the file, never the network).
bool in_hosts_file(const char* name) {
  FILE* hosts = fopen("/etc/hosts", "re");
  if (hosts == nullptr) return false;
  char line[1024];
  bool found = false;
  while (!found && fgets(line, sizeof line, hosts) != nullptr) {
    if (char* comment = strchr(line, '#')) *comment = '\0';
    char* rest = nullptr;
    strtok_r(line, " \t\r\n", &rest);  // the address
    for (char* field = strtok_r(nullptr, " \t\r\n", &rest); field != nullptr && !found;
         field = strtok_r(nullptr, " \t\r\n", &rest)) {
      found = strcasecmp(field, name) == 0;
    }
  }
  fclose(hosts);
  return found;
}

bool allowed_name(const char* name) {
  for (const char* at = config.allowed_names; *at != '\0';) {
    const char* end = strchr(at, ',');
    const size_t length = end != nullptr ? static_cast<size_t>(end - at) : strlen(at);
    if (names_match(name, at, length)) return true;
    if (end == nullptr) break;
    at = end + 1;
  }
  return false;
}

}  // namespace

// Whether a lookup of `name` may go ahead (see the top of this file).
bool may_resolve(const char* name) {
  return numeric(name) || localhost(name) || allowed_name(name) || in_hosts_file(name);
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

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                struct addrinfo** found) {
  auto* real_getaddrinfo = ensure(real.getaddrinfo, "getaddrinfo");
  if (!config.active || in_hook || node == nullptr ||
      (hints != nullptr && (hints->ai_flags & AI_NUMERICHOST) != 0)) {
    return real_getaddrinfo(node, service, hints, found);
  }
  HookScope scope;
  if (may_resolve(node)) return real_getaddrinfo(node, service, hints, found);
  char line[320];
  snprintf(line, sizeof line,
           "tapedeck: network denied: resolving %.200s (the testbench resolves only local names "
           "and the hosts --allow names)\n",
           node);
  report(line);
  return EAI_NONAME;
}

int connect(int fd, const struct sockaddr* address, socklen_t length) {
  if (config.active && !config.floor && address != nullptr && !in_hook && !allowed(address)) {
    HookScope scope;
    describe_denied(address);
    errno = ECONNREFUSED;
    return -1;
  }
  const int result = ensure(real.connect, "connect")(fd, address, length);
  if (address != nullptr && (result == 0 || errno == EINPROGRESS) && to_proxy(address)) {
    proxy_fds.add(fd);
    proxy_requests_sent.remove(fd);
  }
  return result;
}

ssize_t write(int fd, const void* bytes, size_t size) {
  before_send(fd);
  return ensure(real.write, "write")(fd, bytes, size);
}

ssize_t writev(int fd, const struct iovec* parts, int count) {
  before_send(fd);
  return ensure(real.writev, "writev")(fd, parts, count);
}

ssize_t send(int fd, const void* bytes, size_t size, int flags) {
  before_send(fd);
  return ensure(real.send, "send")(fd, bytes, size, flags);
}

ssize_t sendto(int fd, const void* bytes, size_t size, int flags, const struct sockaddr* to,
               socklen_t to_length) {
  before_send(fd);
  return ensure(real.sendto, "sendto")(fd, bytes, size, flags, to, to_length);
}

ssize_t sendmsg(int fd, const struct msghdr* message, int flags) {
  before_send(fd);
  return ensure(real.sendmsg, "sendmsg")(fd, message, flags);
}

ssize_t recv(int fd, void* bytes, size_t size, int flags) {
  note_proxy_read(fd);
  return ensure(real.recv, "recv")(fd, bytes, size, flags);
}

ssize_t recvfrom(int fd, void* bytes, size_t size, int flags, struct sockaddr* from,
                 socklen_t* from_length) {
  note_proxy_read(fd);
  return ensure(real.recvfrom, "recvfrom")(fd, bytes, size, flags, from, from_length);
}

ssize_t recvmsg(int fd, struct msghdr* message, int flags) {
  note_proxy_read(fd);
  return ensure(real.recvmsg, "recvmsg")(fd, message, flags);
}

}  // extern "C"
