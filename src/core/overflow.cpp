#include "core/overflow.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "core/engine.hpp"

namespace coop::detail {
namespace {

constexpr std::size_t altstack_size = 64 * 1024;
// A frame larger than a page may fault below the guard page itself; a fault
// this far below a stack's bottom still counts as its overflow.
constexpr std::size_t reach_below = 256 * 1024;

struct sigaction previous_segv {};
struct sigaction previous_bus {};

// put() appends text to a buffer, async-signal-safely.
struct Line {
  char buf[256];
  std::size_t n = 0;
  void put(const char* s) {
    while (*s && n < sizeof buf) buf[n++] = *s++;
  }
  void put(unsigned long long v) {
    char digits[24];
    int k = 0;
    do {
      digits[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v && k < 24);
    while (k > 0 && n < sizeof buf) buf[n++] = digits[--k];
  }
};

void pass_on(int sig, siginfo_t* info, void* context) {
  const struct sigaction& prev = sig == SIGBUS ? previous_bus : previous_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, info, context);
    return;
  }
  if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
    return;
  }
  // The default: returning re-runs the faulting instruction, which now kills.
  ::signal(sig, SIG_DFL);
}

void on_fault(int sig, siginfo_t* info, void* context) {
  long long tid = 0;
  std::size_t size = 0;
  if (Engine::overflow_at(info->si_addr, reach_below, tid, size)) {
    Line line;
    line.put("cos: task ");
    line.put(static_cast<unsigned long long>(tid));
    line.put(" overflowed its ");
    line.put(static_cast<unsigned long long>(size));
    line.put("-byte stack (it hit the guard page below it); raise Options::stack_size\n");
    [[maybe_unused]] auto w = ::write(2, line.buf, line.n);
    ::signal(sig, SIG_DFL);
    return;
  }
  pass_on(sig, info, context);
}

// Installs on_fault unless it is already the handler (a test framework may
// have put its own in meanwhile: then that one is the one passed on to).
[[maybe_unused]] void install_handler(int sig, struct sigaction& previous) {
  struct sigaction now {};
  if (::sigaction(sig, nullptr, &now) == 0 && (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == &on_fault) return;
  struct sigaction sa {};
  sa.sa_sigaction = &on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  ::sigaction(sig, &sa, &previous);
}

}  // namespace

OverflowGuard::OverflowGuard() {
#if !defined(__SANITIZE_ADDRESS__)  // ASan reports stack overflows itself
  if (::sigaltstack(nullptr, &old_) == 0 && (old_.ss_flags & SS_DISABLE)) {
    void* p = ::mmap(nullptr, altstack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      stack_t ss{};
      ss.ss_sp = p;
      ss.ss_size = altstack_size;
      if (::sigaltstack(&ss, nullptr) == 0) {
        altstack_ = p;
      } else {
        ::munmap(p, altstack_size);
      }
    }
  }
  install_handler(SIGSEGV, previous_segv);
  install_handler(SIGBUS, previous_bus);
#endif
}

OverflowGuard::~OverflowGuard() {
  if (!altstack_) return;
  ::sigaltstack(&old_, nullptr);
  ::munmap(altstack_, altstack_size);
}

}  // namespace coop::detail
