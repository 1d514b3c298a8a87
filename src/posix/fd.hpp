// fd.hpp: small POSIX helpers for file descriptors and processes, shared by
// the backends and the `cos` tool (one copy of each, here).
#pragma once

#include <string>
#include <string_view>

#include <cos/export.hpp>

namespace coop::posix {

// close_fd() closes fd if it is open and sets it to -1.
COS_API void close_fd(int& fd) noexcept;

// open_pidfd() is a pidfd of `pid` (readable once the process ends), with
// FD_CLOEXEC, or -1 on kernels without pidfd_open.
COS_API int open_pidfd(int pid) noexcept;

// write_all() writes every byte of `bytes` to fd, retrying on EINTR and short
// writes. On a socket it sends with MSG_NOSIGNAL (no SIGPIPE). Returns false
// with errno set when the peer is gone or the write fails. Blocks the thread
// while fd is full (use it on descriptors that cannot stall the caller).
COS_API bool write_all(int fd, std::string_view bytes, bool socket = false) noexcept;

// errno_text(what) is "what: strerror(errno)".
COS_API std::string errno_text(const char* what);

}  // namespace coop::posix

namespace coop::posix {

// kill_tree() ends the process tree under `root`: it stops (SIGSTOP) every
// descendant it finds by walking /proc/<pid>/task/*/children (or, on
// kernels without that file, the parent ids of /proc/*/stat), walking again
// until a pass finds nothing new, so that none can fork away meanwhile, and
// then SIGKILLs them all. With `include_root` the root is stopped first and
// killed last; without, the root is left alone (a subreaper cleaning up
// below itself: its orphans come back to it, and later passes find them).
// Returns how many processes it killed (the root included). Does not wait
// for them: their parents (or the subreaper, or init) reap them.
COS_API int kill_tree(int root, bool include_root) noexcept;

}  // namespace coop::posix
