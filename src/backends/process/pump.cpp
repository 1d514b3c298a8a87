// pump.cpp: the one poll that moves a ProcessVM's bytes: call frames out to
// the workers (what the call pipe could not take at once), hello and
// result frames in from them, and their stdout and stderr forwarded a line
// at a time and kept per task.
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <string_view>
#include <utility>

#include <cos/errors.hpp>

#include "backends/process/impl.hpp"
#include "posix/fd.hpp"

namespace coop {
namespace {

using namespace std::chrono_literals;
using detail::Frame;
using detail::FrameError;
using detail::FrameKind;
using detail::process::Slot;
using detail::process::Source;
using detail::process::Watch;
using detail::process::State;
using detail::process::max_partial_line;
using detail::process::max_task_output;
using posix::close_fd;
using posix::errno_text;

// epoll_wait_for() is epoll_pwait2 (a timeout in nanoseconds: receive()'s
// timeouts are finer than milliseconds), or on kernels before Linux 5.11,
// and where a seccomp filter refuses it, epoll_wait with the timeout
// rounded up to whole milliseconds. `timeout` null: without limit.
int epoll_wait_for(int epoll, epoll_event* events, int room, const timespec* timeout) {
  static bool fine_timeouts = true;
  if (fine_timeouts) {
    int n = ::epoll_pwait2(epoll, events, room, timeout, nullptr);
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
    fine_timeouts = false;
  }
  int ms = -1;
  if (timeout) {
    long long ns = static_cast<long long>(timeout->tv_sec) * 1'000'000'000 + timeout->tv_nsec;
    ms = static_cast<int>(std::min<long long>((ns + 999'999) / 1'000'000, 1 << 30));
  }
  return ::epoll_wait(epoll, events, room, ms);
}

}  // namespace

// handle_frame() takes one frame from the worker of `s`; returns false when
// the frame made the VM give the worker up (it was lost).
bool ProcessVM::Impl::handle_frame(Slot& s, const detail::FrameView& f) {
  try {
    switch (f.kind) {
      case FrameKind::hello: {
        auto pid = detail::decode_hello(f.payload);
        if (s.state != State::starting || pid <= 0 || pid == s.pid) throw FrameError("coop: unexpected hello frame");
        s.worker = static_cast<pid_t>(pid);
        s.state = State::idle;
        s.failed_starts = 0;
        if (s.pending) {
          ready.push_back(std::move(*s.pending));
          s.pending.reset();
        } else {
          slot_freed = true;
        }
        return true;
      }
      case FrameKind::result: {
        std::uint64_t task = 0;
        Message m;
        detail::decode_result(f.payload, task, m);
        if (s.state != State::busy || task == 0 || task != s.task) throw FrameError("coop: unexpected result frame");
        m.kind = Message::Kind::result;
        m.task = TaskId(task);
        {
          clock::duration run = std::max(clock::duration(0), m.completed - m.started);
          typical_run = typical_run ? (3 * *typical_run + run) / 4 : run;
        }
        m.host = hosts[s.host];
        s.task = 0;
        s.runs_long = false;
        if (!s.queued.empty()) {
          // The worker may begin a queued call now: its `started` says
          // where this task's output ends.
          s.held_result = std::move(m);
          return true;
        }
        // The worker flushed its output before it sent the result, and runs
        // nothing after it: take it all in.
        if (!s.output_polled) {
          drain(s, Source::out);
          drain(s, Source::err);
        }
        m.output = claim_output(s, nullptr);
        ready.push_back(std::move(m));
        settle(s);  // idle
        return true;
      }
      case FrameKind::started: {
        std::uint64_t task = 0;
        clock::time_point started;
        detail::process::OutputCut cut;
        detail::decode_started(f.payload, task, started, cut);
        return on_started(s, task, started, cut);
      }
      case FrameKind::withdrawn:
        on_withdrawn(s, detail::decode_task(f.payload));
        return true;
      case FrameKind::post: {
        std::uint64_t task = 0;
        Message m;
        detail::decode_task_bytes(f.payload, task, m.payload);
        if (s.state != State::busy || task == 0 || task != s.task) throw FrameError("coop: unexpected post frame");
        m.kind = Message::Kind::post;
        m.task = TaskId(task);
        m.host = hosts[s.host];
        ready.push_back(std::move(m));
        return true;
      }
      default:  // call, deliver, and the kinds between MpiVM's ranks: never from a worker
        throw FrameError("coop: unexpected frame of kind " + std::to_string(static_cast<unsigned>(f.kind)) +
                         " from a worker");
    }
  } catch (const FrameError& e) {
    lose(s, std::string("the worker sent a corrupt frame: ") + e.what());
    return false;
  }
  return true;
}

bool ProcessVM::Impl::handle_frames(Slot& s) {
  try {
    while (auto f = s.reader.next_view()) {
      if (!handle_frame(s, *f)) return false;
      // Only the first frame was in the pipe when the wait saw it readable
      // (and the output written before it with it); the output of a later
      // one may still be in the pipes.
      s.output_polled = false;
    }
  } catch (const FrameError& e) {
    lose(s, std::string("the worker sent a corrupt frame: ") + e.what());
    return false;
  }
  return true;
}

void ProcessVM::Impl::on_results(Slot& s) {
  char buf[1 << 16];
  ssize_t n = ::read(s.results, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n > 0) {
    s.reader.feed(buf, static_cast<std::size_t>(n));
    handle_frames(s);
    return;
  }
  lose(s, "");  // end of stream or a broken pipe: the worker is gone
}

// drain() reads what the pipe holds now; `to_end` also reads on until the
// end of the stream shows, for a worker that is gone or going. A short read
// emptied the pipe: without `to_end` it ends the drain (a read more would
// only say EAGAIN). Each read is counted in the slot's OutputCounts, which
// the worker reads to say where a task's output ends.
void ProcessVM::Impl::drain(Slot& s, Source which, bool to_end) {
  int& fd = which == Source::out ? s.out : s.err;
  const int stream = which == Source::out ? 0 : 1;
  char buf[1 << 16];
  while (fd >= 0) {
    detail::process::begin_read(s.counts);
    ssize_t n = ::read(fd, buf, sizeof buf);
    const std::size_t got = n > 0 ? static_cast<std::size_t>(n) : 0;
    s.taken[stream] += got;
    detail::process::end_read(s.counts, stream, got);
    if (n > 0) {
      keep_output(s, which, buf, got);
      if (!to_end && got < sizeof buf) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) close_watched(fd);
    break;
  }
}

// keep_output() forwards whole lines to the spawner's stdout or stderr (one
// write per batch, so lines of different workers do not mix) and, while
// the slot is busy, keeps the bytes for the task that wrote them (see
// claim_output()), up to max_task_output.
void ProcessVM::Impl::keep_output(Slot& s, Source which, const char* data, std::size_t size) {
  if (size == 0) return;
  if (s.state == State::busy) {
    const int stream = which == Source::out ? 0 : 1;
    const std::uint64_t end = s.taken[stream];  // drain() counted these bytes already
    std::size_t keep = std::min(size, max_task_output - std::min(max_task_output, s.unclaimed_bytes));
    if (keep < size) s.output_dropped = true;
    if (keep > 0) {
      const std::uint64_t kept_end = end - (size - keep);
      if (!s.unclaimed.empty() && s.unclaimed.back().stream == stream &&
          s.unclaimed.back().end == kept_end - keep) {
        s.unclaimed.back().bytes.append(data, keep);
        s.unclaimed.back().end = kept_end;
      } else {
        s.unclaimed.push_back(Slot::Chunk{stream, kept_end, std::string(data, keep)});
      }
      s.unclaimed_bytes += keep;
    }
  }
  std::string& line = which == Source::out ? s.out_line : s.err_line;
  int fd = which == Source::out ? 1 : 2;
  line.append(data, size);
  std::size_t end = line.rfind('\n');
  if (end != std::string::npos) {
    posix::write_all(fd, std::string_view(line).substr(0, end + 1));
    line.erase(0, end + 1);
  }
  if (line.size() > max_partial_line) {
    posix::write_all(fd, line);
    line.clear();
  }
}

// claim_output() takes the output of the task that ends at `cut` (the
// positions in stdout and stderr where the next one's begins; nullptr: all
// that has been read) out of what the slot holds, in the order read.
std::string ProcessVM::Impl::claim_output(Slot& s, const detail::process::OutputCut* cut) {
  std::string output;
  if (s.unclaimed.empty() && !s.output_dropped) return output;  // most tasks print nothing
  if (!cut) {
    for (const Slot::Chunk& c : s.unclaimed) output += c.bytes;
    s.unclaimed.clear();
  } else {
    // The chunks that stay (the next tasks' bytes) keep their order.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < s.unclaimed.size(); ++i) {
      Slot::Chunk& c = s.unclaimed[i];
      const std::uint64_t start = c.end - c.bytes.size(), limit = cut->at[c.stream];
      if (c.end <= limit) {
        output += c.bytes;
        continue;
      }
      if (start < limit) {
        const std::size_t mine = static_cast<std::size_t>(limit - start);
        output.append(c.bytes, 0, mine);
        c.bytes.erase(0, mine);
      }
      if (kept != i) s.unclaimed[kept] = std::move(c);
      ++kept;
    }
    s.unclaimed.resize(kept);
  }
  s.unclaimed_bytes -= std::min(s.unclaimed_bytes, output.size());
  if (s.output_dropped) {
    output += "\n[coop: output truncated]\n";
    if (s.unclaimed.empty()) s.output_dropped = false;
  }
  return output;
}

// release_held() hands on the result that waited for the worker's next
// `started` (with its cut) or for the slot to hold no more calls (nullptr),
// with its output.
void ProcessVM::Impl::release_held(Slot& s, const detail::process::OutputCut* cut) {
  if (!s.held_result) return;
  // The worker took the cut before it sent it: those bytes are in the pipes.
  if (!cut || s.taken[0] < cut->at[0]) drain(s, Source::out);
  if (!cut || s.taken[1] < cut->at[1]) drain(s, Source::err);
  Message m = std::move(*s.held_result);
  s.held_result.reset();
  m.output = claim_output(s, cut);
  ready.push_back(std::move(m));
}

void ProcessVM::Impl::flush_partial_lines(Slot& s) {
  for (auto [line, fd] : {std::pair{&s.out_line, 1}, std::pair{&s.err_line, 2}}) {
    if (line->empty()) continue;
    line->push_back('\n');
    posix::write_all(fd, *line);
    line->clear();
  }
}

bool ProcessVM::Impl::anything_to_wait_for() const {
  return std::any_of(slots.begin(), slots.end(), [](const Slot& s) {
    return s.state != State::idle && s.state != State::down;
  });
}

// send_frame() sends one more frame to the worker of `s` (a call, a queued
// call, a withdraw, a delivery): what the call pipe takes now goes at once,
// the rest waits in `unsent`, behind what already waits there, for pump().
// A worker found gone is lost (its task gets worker_lost).
//
// `hold` keeps the frame back until the next pump() (or a frame sent
// without it), so that the calls queued on a busy worker between two waits
// go in one write: a queued call is not needed before the running task
// ends, and the spawner waits (pumps) again before it can learn that end.
void ProcessVM::Impl::send_frame(Slot& s, std::string frame, bool hold) {
  if (s.has_unsent()) {
    s.unsent.append(frame);
  } else {
    s.unsent = std::move(frame);
    s.unsent_from = 0;
  }
  send_appended(s, hold);
}

// append_call() adds a call frame to what waits to go to the worker of `s`
// (written in place: no string per call); throws FrameError, having added
// nothing, when the call is too large. send_appended() sends it as
// send_frame() does.
void ProcessVM::Impl::append_call(Slot& s, FrameKind kind, std::uint64_t task, const Call& call) {
  if (!s.has_unsent()) {
    s.unsent.clear();
    s.unsent_from = 0;
  }
  detail::append_call_frame(s.unsent, kind, task, call, hosts[s.host].name());
}

void ProcessVM::Impl::send_appended(Slot& s, bool hold) {
  if (hold) {
    s.held = true;
    any_held = true;
    return;
  }
  s.held = false;
  if (!flush_unsent(s)) lose(s, "");
}

// send_held() sends the frames that send_frame() held back.
void ProcessVM::Impl::send_held() {
  if (!any_held) return;
  any_held = false;
  for (Slot& s : slots) {
    if (!s.held) continue;
    s.held = false;
    if (!flush_unsent(s)) lose(s, "");
  }
}

// flush_unsent() sends what the call pipe of `s` takes without blocking;
// returns false when the write fails.
bool ProcessVM::Impl::flush_unsent(Slot& s) {
  while (s.has_unsent()) {
    // The call pipe is non-blocking on this side, and never without a
    // reader (the spawner holds one), so a worker that is gone raises no
    // SIGPIPE: its end shows on the result pipe and pidfd instead.
    ssize_t n = ::write(s.calls, s.unsent.data() + s.unsent_from, s.unsent.size() - s.unsent_from);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      return false;
    }
    s.unsent_from += static_cast<std::size_t>(n);
  }
  s.unsent.clear();
  if (s.unsent.capacity() > (std::size_t{1} << 20)) s.unsent = std::string();  // a call of many megabytes is not kept per slot
  s.unsent_from = 0;
  return true;
}

// watch() adds the descriptors of the worker that `s` just started to the
// epoll set; the result pipe first, as pump() handles output before results.
void ProcessVM::Impl::watch(Slot& s) {
  const std::size_t index = static_cast<std::size_t>(&s - slots.data());
  for (auto [fd, source] : {std::pair{s.results, Source::results}, std::pair{s.out, Source::out},
                            std::pair{s.err, Source::err}, std::pair{s.pidfd, Source::pidfd}}) {
    if (fd < 0) continue;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = Watch{index, static_cast<std::uint32_t>(s.generation), source}.pack();
    if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &e) != 0) throw Error(errno_text("coop::ProcessVM: epoll_ctl"));
  }
  s.calls_watched = false;
}

// watch_calls() has pump() wait for room in the call pipe of `s` (on) or not.
void ProcessVM::Impl::watch_calls(Slot& s, bool on) {
  if (on == s.calls_watched || s.calls < 0) return;
  epoll_event e{};
  e.events = EPOLLOUT;
  e.data.u64 =
      Watch{static_cast<std::size_t>(&s - slots.data()), static_cast<std::uint32_t>(s.generation), Source::calls}
          .pack();
  if (::epoll_ctl(epoll, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s.calls, &e) != 0) {
    throw Error(errno_text("coop::ProcessVM: epoll_ctl"));
  }
  s.calls_watched = on;
}

// close_watched() takes a descriptor out of the epoll set and closes it.
// Closing alone would not do: the set watches the open pipe, which lives on
// while any process still holds a copy of it.
void ProcessVM::Impl::close_watched(int& fd) {
  if (fd < 0) return;
  ::epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nullptr);  // ENOENT when it was not watched
  close_fd(fd);
}

// pump() waits up to `timeout` (negative: without limit) for any worker to
// have something, or for a call pipe with unsent bytes to take more, and
// handles what it finds.
void ProcessVM::Impl::pump(std::chrono::nanoseconds timeout) {
  send_held();
  std::optional<clock::time_point> next_deadline;
  for (Slot& s : slots) {
    if (s.state == State::down) continue;
    if (s.state == State::starting && (!next_deadline || s.deadline < *next_deadline)) next_deadline = s.deadline;
    watch_calls(s, s.has_unsent());
  }
  if (next_deadline) {
    auto until = std::max(std::chrono::nanoseconds(0), *next_deadline - clock::now());
    if (timeout < 0ns || until < timeout) timeout = until;
  }
  events.resize(std::max<std::size_t>(16, slots.size() * 5));
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout >= 0ns) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  // Results come microseconds after their calls while tasks are short: a
  // short spin (AdaptiveSpin, 20 us) then saves a sleep and a wake-up per
  // result. While workers hold queued calls: 7-9 us per empty task instead
  // of 11.5-12.5 (ProcessVM(2), interleaved runs). With one call per slot
  // it pays since an idle worker spins for its next call too (worker.cpp):
  // 4.2-4.4 us per empty task instead of 7-16 us on ProcessVM(2), 4.3-4.7
  // instead of 6.5-7.4 on ProcessVM(4) (2 cores; before the worker's spin,
  // the spawner's made them slower). A wait that outlasts the window (long
  // tasks) sends the next ones straight to sleep (AdaptiveSpin).
  int n = 0;
  const int room = static_cast<int>(events.size());
  timespec zero{};
  const bool spun = (timeout < 0ns || timeout >= 20us) &&
                    spin.wait([&] { return (n = epoll_wait_for(epoll, events.data(), room, &zero)) != 0; });
  if (!spun) n = epoll_wait_for(epoll, events.data(), room, tsp);
  if (n < 0) {
    if (errno == EINTR) return;
    throw Error(errno_text("coop::ProcessVM: epoll_wait"));
  }
  auto slot_of = [this](const Watch& w) -> Slot* {
    Slot& s = slots[w.slot];
    return s.state != State::down && static_cast<std::uint32_t>(s.generation) == w.generation ? &s : nullptr;
  };
  // Output first, so that a result carries everything its task wrote (the
  // worker wrote it before the result: its pipe became ready first, and
  // one wait reports every descriptor that was ready by then).
  for (int k = 0; k < n; ++k) {
    Watch w = Watch::unpack(events[static_cast<std::size_t>(k)].data.u64);
    if (w.source != Source::out && w.source != Source::err) continue;
    if (Slot* s = slot_of(w)) drain(*s, w.source);
  }
  for (int k = 0; k < n; ++k) {
    Watch w = Watch::unpack(events[static_cast<std::size_t>(k)].data.u64);
    if (w.source == Source::out || w.source == Source::err) continue;
    Slot* s = slot_of(w);
    if (!s) continue;
    switch (w.source) {
      case Source::results:
        s->output_polled = true;
        on_results(*s);
        s->output_polled = false;
        break;
      case Source::calls:
        // EPOLLERR or EPOLLHUP also land here: the send then fails and says so.
        if (!flush_unsent(*s)) lose(*s, "");
        break;
      default:
        lose(*s, "");
        break;
    }
  }
  check_start_deadlines();
}

}  // namespace coop
