// Randomness: getrandom, getentropy, arc4random*, syscall(SYS_getrandom) (OpenSSL's way) and
// reads of /dev/urandom and /dev/random are served from a deterministic stream instead of the
// kernel's, in record and replay alike, so that a replay draws what the recording drew.
//
// The stream is BLAKE3's extendable output, keyed by the run's seed (32 bytes the supervisor
// draws when recording and puts on the tape once, as an `entropy` record; a replay reads it back)
// over the process's place in the tree: the root is "0", the k-th child it forks "0.k", an image
// a process execs in place of itself "0x". A process's draws take consecutive ranges of its
// stream, so the tape does not grow with the bytes drawn, and processes never share bytes.
// Each thread a process starts draws from a stream of its own, "<place>/t<k>" for its k-th
// (thread_hooks.cpp numbers them), so that threads drawing side by side get their own bytes
// whatever the order they draw in this time; a tape from before that (its entropy record lacks
// "threads") has every thread of a process share its stream, as then.
#include <blake3.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "preload/clock_map.hpp"
#include "preload/entropy_stream.hpp"
#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

namespace {

constexpr size_t kKeyMax = 512;

struct EntropyStream {
  bool on = false;
  uint8_t seed[BLAKE3_KEY_LEN] = {};
  char key[kKeyMax] = {};  // the process's place in the tree
  blake3_hasher keyed{};   // seed-keyed, the place absorbed: finalize_seek reads the stream
  std::atomic<uint64_t> offset{0};
  std::atomic<uint64_t> forks{0};
  uint64_t fork_index = 0;  // the one the forking thread took, for its child
};
constinit EntropyStream stream;

bool per_thread_streams = false;  // TAPEDECK_ENTROPY_THREADS

// The calling thread's own stream, for the thread (ThreadKey, packed) it was opened for: a
// forked child's threads are others.
struct ThreadStream {
  uint64_t key = 0;
  blake3_hasher keyed;
  uint64_t offset = 0;
};
thread_local ThreadStream thread_stream __attribute__((tls_model("initial-exec")));

void rekey() {
  entropy_stream::open(stream.keyed, stream.seed, stream.key);
  stream.offset.store(0, std::memory_order_relaxed);
}

// Descriptors open on /dev/urandom or /dev/random.
constinit FdSet entropy_fds;

bool is_entropy_fd(int fd) {
  return stream.on && entropy_fds.contains(fd);
}

void before_fork() {
  stream.fork_index = stream.forks.fetch_add(1, std::memory_order_relaxed);
}

void after_fork_child() {
  const size_t size = strlen(stream.key);
  snprintf(stream.key + size, kKeyMax - size, ".%llu",
           static_cast<unsigned long long>(stream.fork_index));
  stream.forks.store(0, std::memory_order_relaxed);
  rekey();
}

// A FILE over the stream, for fopen("/dev/urandom"): fread goes through libc's own read.
ssize_t cookie_read(void*, char* buffer, size_t size) {
  draw_entropy(buffer, size);
  return static_cast<ssize_t>(size);
}

}  // namespace

void start_entropy(const char* seed_hex, const char* key, bool per_thread) {
  if (seed_hex == nullptr || !entropy_stream::seed_from_hex(seed_hex, stream.seed)) return;
  per_thread_streams = per_thread;
  snprintf(stream.key, kKeyMax, "%s", key != nullptr && *key != '\0' ? key : "0");
  rekey();
  stream.on = true;
  pthread_atfork(before_fork, nullptr, after_fork_child);
}

bool entropy_on() {
  return stream.on;
}

const char* process_place() {
  return stream.on ? stream.key : "0";
}

void draw_entropy(void* out, size_t size) {
  if (per_thread_streams) {
    const uint64_t key = thread_identity();
    const uint32_t number = ThreadKey::unpack(key).number;
    // (A thread libc started itself has no number of its own: it shares its process's stream,
    // whose draws never repeat, rather than a stream another such thread would repeat.)
    if (number != 0 && number != kUnnumberedThread) {
      if (thread_stream.key != key) {
        char place[kKeyMax + 16];
        snprintf(place, sizeof place, "%s/t%u", stream.key, number);
        entropy_stream::open(thread_stream.keyed, stream.seed, place);
        thread_stream.key = key;
        thread_stream.offset = 0;
      }
      blake3_hasher_finalize_seek(&thread_stream.keyed, thread_stream.offset,
                                  static_cast<uint8_t*>(out), size);
      thread_stream.offset += size;
      return;
    }
  }
  const uint64_t at = stream.offset.fetch_add(size, std::memory_order_relaxed);
  blake3_hasher_finalize_seek(&stream.keyed, at, static_cast<uint8_t*>(out), size);
}

const char* entropy_exec_entry() {
  static char entry[kKeyMax + 32];
  snprintf(entry, sizeof entry, "TAPEDECK_ENTROPY_KEY=%sx", stream.key);
  return entry;
}

void note_entropy_fd(int fd, const char* path) {
  if (!stream.on || path == nullptr) return;
  if (strcmp(path, "/dev/urandom") == 0 || strcmp(path, "/dev/random") == 0) entropy_fds.add(fd);
}

void forget_entropy_fd(int fd) {
  entropy_fds.remove(fd);
}

FILE* open_entropy_file(const char* path) {
  if (!stream.on || path == nullptr ||
      (strcmp(path, "/dev/urandom") != 0 && strcmp(path, "/dev/random") != 0)) {
    return nullptr;
  }
  cookie_io_functions_t functions{cookie_read, nullptr, nullptr, nullptr};
  return fopencookie(nullptr, "r", functions);
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

ssize_t getrandom(void* buffer, size_t size, unsigned int flags) {
  if (!entropy_on()) return ensure(real.getrandom, "getrandom")(buffer, size, flags);
  draw_entropy(buffer, size);
  return static_cast<ssize_t>(size);
}

int getentropy(void* buffer, size_t size) {
  if (!entropy_on()) return ensure(real.getentropy, "getentropy")(buffer, size);
  if (size > 256) {  // as the kernel's getentropy
    errno = EIO;
    return -1;
  }
  draw_entropy(buffer, size);
  return 0;
}

uint32_t arc4random(void) {
  if (!entropy_on()) return ensure(real.arc4random, "arc4random")();
  uint32_t value;
  draw_entropy(&value, sizeof value);
  return value;
}

void arc4random_buf(void* buffer, size_t size) {
  if (!entropy_on()) return ensure(real.arc4random_buf, "arc4random_buf")(buffer, size);
  draw_entropy(buffer, size);
}

uint32_t arc4random_uniform(uint32_t upper) {
  if (!entropy_on()) return ensure(real.arc4random_uniform, "arc4random_uniform")(upper);
  if (upper < 2) return 0;
  // Rejection sampling: no value is likelier than another.
  const uint32_t floor = static_cast<uint32_t>(-upper) % upper;
  uint32_t value;
  do {
    draw_entropy(&value, sizeof value);
  } while (value < floor);
  return value % upper;
}

// OpenSSL (and so Node) asks the kernel for randomness through syscall(2), and libuv closes
// files through it: those and the other calls the hooks serve go to them (serve_libc_syscall);
// every other number passes on.
long syscall(long number, ...) {
  va_list args;
  va_start(args, number);
  long a[6];
  for (long& arg : a) arg = va_arg(args, long);
  va_end(args);
  if (number == SYS_getrandom && entropy_on()) {
    draw_entropy(reinterpret_cast<void*>(a[0]), static_cast<size_t>(a[1]));
    return a[1];
  }
  if (long result = 0; serve_libc_syscall(number, a, result)) {
    if (result < 0 && result > -4096) {
      errno = static_cast<int>(-result);
      return -1;
    }
    return result;
  }
  return ensure(real.syscall, "syscall")(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

ssize_t read(int fd, void* buffer, size_t size) {
  note_proxy_read(fd);
  if (is_entropy_fd(fd)) {
    draw_entropy(buffer, size);
    return static_cast<ssize_t>(size);
  }
  return ensure(real.read, "read")(fd, buffer, size);
}

ssize_t __read_chk(int fd, void* buffer, size_t size, size_t) {
  return read(fd, buffer, size);
}

ssize_t pread(int fd, void* buffer, size_t size, off_t offset) {
  if (is_entropy_fd(fd)) return read(fd, buffer, size);
  return ensure(real.pread, "pread")(fd, buffer, size, offset);
}

ssize_t pread64(int fd, void* buffer, size_t size, off64_t offset) {
  if (is_entropy_fd(fd)) return read(fd, buffer, size);
  return ensure(real.pread64, "pread64")(fd, buffer, size, offset);
}

ssize_t readv(int fd, const struct iovec* parts, int count) {
  note_proxy_read(fd);
  if (!is_entropy_fd(fd)) return ensure(real.readv, "readv")(fd, parts, count);
  ssize_t total = 0;
  for (int i = 0; i < count; ++i) {
    draw_entropy(parts[i].iov_base, parts[i].iov_len);
    total += static_cast<ssize_t>(parts[i].iov_len);
  }
  return total;
}

}  // extern "C"
