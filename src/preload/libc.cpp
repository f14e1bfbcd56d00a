// The real libc entry points the hooks pass calls on to: resolved once, at load (see ensure()
// for calls that come before).
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

#define TAPEDECK_REAL(name) reinterpret_cast<decltype(&::name)>(resolve(#name))

void* resolve(const char* name) {
  return dlsym(RTLD_NEXT, name);
}

constinit Real real;

void resolve_all() {
  real.clock_gettime = TAPEDECK_REAL(clock_gettime);
  real.gettimeofday = TAPEDECK_REAL(gettimeofday);
  real.time = TAPEDECK_REAL(time);
  real.nanosleep = TAPEDECK_REAL(nanosleep);
  real.poll = TAPEDECK_REAL(poll);
  real.ppoll = TAPEDECK_REAL(ppoll);
  real.select = TAPEDECK_REAL(select);
  real.pselect = TAPEDECK_REAL(pselect);
  real.epoll_wait = TAPEDECK_REAL(epoll_wait);
  real.epoll_pwait = TAPEDECK_REAL(epoll_pwait);
  real.sem_timedwait = TAPEDECK_REAL(sem_timedwait);
  real.sem_clockwait = reinterpret_cast<decltype(real.sem_clockwait)>(resolve("sem_clockwait"));
  real.pthread_cond_timedwait = TAPEDECK_REAL(pthread_cond_timedwait);
  real.pthread_cond_clockwait =
      reinterpret_cast<decltype(real.pthread_cond_clockwait)>(resolve("pthread_cond_clockwait"));
  real.clock_nanosleep = TAPEDECK_REAL(clock_nanosleep);
  real.usleep = TAPEDECK_REAL(usleep);
  real.sleep = TAPEDECK_REAL(sleep);
  real.open = reinterpret_cast<int (*)(const char*, int, ...)>(resolve("open"));
  real.openat = reinterpret_cast<int (*)(int, const char*, int, ...)>(resolve("openat"));
  real.fopen = TAPEDECK_REAL(fopen);
  real.close = TAPEDECK_REAL(close);
  real.fclose = TAPEDECK_REAL(fclose);
  real.unlink = TAPEDECK_REAL(unlink);
  real.unlinkat = TAPEDECK_REAL(unlinkat);
  real.remove = TAPEDECK_REAL(remove);
  real.rename = TAPEDECK_REAL(rename);
  real.mkdir = TAPEDECK_REAL(mkdir);
  real.opendir = TAPEDECK_REAL(opendir);
  real.mkdirat = TAPEDECK_REAL(mkdirat);
  real.renameat = TAPEDECK_REAL(renameat);
  real.renameat2 = reinterpret_cast<int (*)(int, const char*, int, const char*, unsigned int)>(
      resolve("renameat2"));
  real.stat = reinterpret_cast<int (*)(const char*, struct stat*)>(resolve("stat"));
  real.lstat = reinterpret_cast<int (*)(const char*, struct stat*)>(resolve("lstat"));
  real.fstatat = reinterpret_cast<int (*)(int, const char*, struct stat*, int)>(resolve("fstatat"));
  real.access = TAPEDECK_REAL(access);
  real.execve = TAPEDECK_REAL(execve);
  real.execvpe = TAPEDECK_REAL(execvpe);
  real.posix_spawn = TAPEDECK_REAL(posix_spawn);
  real.fork = TAPEDECK_REAL(fork);
  real.pthread_create = TAPEDECK_REAL(pthread_create);
  real.waitpid = TAPEDECK_REAL(waitpid);
  real.wait4 = TAPEDECK_REAL(wait4);
  real.waitid = TAPEDECK_REAL(waitid);
  real.exit_now = TAPEDECK_REAL(_exit);
  real.connect = TAPEDECK_REAL(connect);
  real.getaddrinfo = TAPEDECK_REAL(getaddrinfo);
  real.write = TAPEDECK_REAL(write);
  real.writev = TAPEDECK_REAL(writev);
  real.send = TAPEDECK_REAL(send);
  real.sendto = TAPEDECK_REAL(sendto);
  real.sendmsg = TAPEDECK_REAL(sendmsg);
  real.recv = TAPEDECK_REAL(recv);
  real.recvfrom = TAPEDECK_REAL(recvfrom);
  real.recvmsg = TAPEDECK_REAL(recvmsg);
  real.rmdir = TAPEDECK_REAL(rmdir);
  real.statx = TAPEDECK_REAL(statx);
  real.faccessat = TAPEDECK_REAL(faccessat);
  real.eaccess = TAPEDECK_REAL(eaccess);
  real.euidaccess = TAPEDECK_REAL(euidaccess);
  real.chdir = TAPEDECK_REAL(chdir);
  real.chmod = TAPEDECK_REAL(chmod);
  real.fchmodat = TAPEDECK_REAL(fchmodat);
  real.chown = TAPEDECK_REAL(chown);
  real.lchown = TAPEDECK_REAL(lchown);
  real.fchownat = TAPEDECK_REAL(fchownat);
  real.symlink = TAPEDECK_REAL(symlink);
  real.symlinkat = TAPEDECK_REAL(symlinkat);
  real.readlink = TAPEDECK_REAL(readlink);
  real.readlinkat = TAPEDECK_REAL(readlinkat);
  real.link = TAPEDECK_REAL(link);
  real.linkat = TAPEDECK_REAL(linkat);
  real.truncate = TAPEDECK_REAL(truncate);
  real.truncate64 = TAPEDECK_REAL(truncate64);
  real.utime = TAPEDECK_REAL(utime);
  real.utimes = TAPEDECK_REAL(utimes);
  real.lutimes = TAPEDECK_REAL(lutimes);
  real.utimensat = TAPEDECK_REAL(utimensat);
  real.futimens = TAPEDECK_REAL(futimens);
  real.mkfifo = TAPEDECK_REAL(mkfifo);
  real.mknod = TAPEDECK_REAL(mknod);
  real.mkstemp = TAPEDECK_REAL(mkstemp);
  real.mkostemp = TAPEDECK_REAL(mkostemp);
  real.mkstemps = TAPEDECK_REAL(mkstemps);
  real.mkostemps = TAPEDECK_REAL(mkostemps);
  real.mkdtemp = TAPEDECK_REAL(mkdtemp);
  real.getcwd = TAPEDECK_REAL(getcwd);
  real.realpath = TAPEDECK_REAL(realpath);
  real.getrandom = TAPEDECK_REAL(getrandom);
  real.getentropy = TAPEDECK_REAL(getentropy);
  real.arc4random = TAPEDECK_REAL(arc4random);
  real.arc4random_buf = TAPEDECK_REAL(arc4random_buf);
  real.arc4random_uniform = TAPEDECK_REAL(arc4random_uniform);
  real.syscall = TAPEDECK_REAL(syscall);
  real.sigaction = reinterpret_cast<decltype(real.sigaction)>(resolve("sigaction"));
  real.read = TAPEDECK_REAL(read);
  real.pread = TAPEDECK_REAL(pread);
  real.pread64 = TAPEDECK_REAL(pread64);
  real.readv = TAPEDECK_REAL(readv);
  real.getxattr = TAPEDECK_REAL(getxattr);
  real.lgetxattr = TAPEDECK_REAL(lgetxattr);
  real.setxattr = TAPEDECK_REAL(setxattr);
  real.lsetxattr = TAPEDECK_REAL(lsetxattr);
  real.listxattr = TAPEDECK_REAL(listxattr);
  real.llistxattr = TAPEDECK_REAL(llistxattr);
  real.removexattr = TAPEDECK_REAL(removexattr);
  real.lremovexattr = TAPEDECK_REAL(lremovexattr);
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
