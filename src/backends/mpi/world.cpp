// world.cpp: the MPI job as cos sees it: finding the launcher without MPI,
// initialising MPI from coop::init (ranks 1..n-1 serve from there, rank 0
// returns and stops them at exit), the host of every rank, and frames sent
// and received over MPI without ever blocking in MPI's progress loop. The
// MPI calls themselves are libcos_mpi.so's (library.hpp), loaded only here.
#include "backends/mpi/world.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <cstring>

#include <cos/errors.hpp>
#include <cos/mpi_vm.hpp>

#include "backends/host_name.hpp"
#include "backends/mpi/fork_server.hpp"
#include "backends/mpi/hook.hpp"
#include "backends/mpi/library.hpp"
#include "posix/time_slice.hpp"

namespace coop::detail::mpi {
namespace {

// A frame is one MPI message on cos's own communicator: its kind is the
// message's tag and its payload the message's bytes (MPI keeps the bounds),
// so neither side copies bytes to add or strip a frame header.
constexpr int first_kind = static_cast<int>(FrameKind::hello), last_kind = static_cast<int>(FrameKind::stop);

// The module's table, once mpi_init_hook() has loaded it.
const Library* lib = nullptr;

// env_int() is the environment variable `name` as a non-negative number, or -1.
int env_int(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return -1;
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (*end != '\0' || v < 0 || v > 1 << 24) return -1;
  return static_cast<int>(v);
}

void check(int rc, const char* what) {
  if (rc != library_ok) throw Error(std::string("coop::MpiVM: ") + what + " failed: " + lib->error_text(rc));
}

// The name of this rank's host: COS_HOST, or MPI_Get_processor_name.
std::string own_host() {
  if (const char* h = std::getenv("COS_HOST"); h && *h) return h;
  std::string name = lib->processor_name();
  return name.empty() ? this_host_name() : name;
}

// gather_hosts() gives rank 0 the host of every rank (a collective call,
// made once by every rank in coop::init). A host name is cut at
// host_width - 1 bytes, as MPI_MAX_PROCESSOR_NAME cuts processor names.
constexpr std::size_t host_width = 257;
std::vector<std::string> gather_hosts(int rank, int size) {
  std::string mine = world().host;
  char buf[host_width] = {};
  std::memcpy(buf, mine.data(), std::min<std::size_t>(mine.size(), host_width - 1));
  std::vector<char> all;
  check(lib->gather(buf, static_cast<int>(host_width), &all), "MPI_Gather");
  std::vector<std::string> hosts;
  if (rank == 0) {
    for (int r = 0; r < size; ++r) hosts.emplace_back(all.data() + static_cast<std::size_t>(r) * host_width);
  }
  return hosts;
}

// job_token() is a name for this job that rank 0 makes up (its pid and a
// random number) and gives every rank: the doorbells' names start with it.
std::string job_token(int rank) {
  char token[64] = {};
  if (rank == 0) {
    std::random_device random;
    std::snprintf(token, sizeof token, "%d-%08x%08x", static_cast<int>(::getpid()), random(), random());
  }
  check(lib->bcast(token, sizeof token), "MPI_Bcast");
  token[sizeof token - 1] = '\0';
  return token;
}

}  // namespace

Launcher launcher() {
  Launcher l;
  int rank = env_int("OMPI_COMM_WORLD_RANK"), size = env_int("OMPI_COMM_WORLD_SIZE");
  if (rank < 0 || size <= 0) rank = env_int("PMI_RANK"), size = env_int("PMI_SIZE");
  if (rank < 0 || size <= 0) {
    rank = env_int("PMIX_RANK");
    size = env_int("SLURM_NTASKS");
    if (size <= 0) size = env_int("SLURM_NPROCS");
  }
  if (rank >= 0 && size > 0 && rank < size) {
    l.present = true;
    l.rank = rank;
    l.size = size;
  }
  return l;
}

bool launcher_variable(std::string_view entry) {
  for (std::string_view prefix : {"OMPI_COMM_WORLD_", "PMI_RANK=", "PMI_SIZE=", "PMIX_RANK="}) {
    if (entry.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

World& world() {
  static World w;
  return w;
}

void send(int dest, FrameKind kind, std::string payload) {
  if (payload.size() > max_frame_payload) {
    throw FrameError("coop::MpiVM: a message of " + std::to_string(payload.size()) +
                     " bytes is larger than the limit of " + std::to_string(max_frame_payload) + " bytes between ranks");
  }
  check(lib->isend(dest, static_cast<int>(kind), std::move(payload)), "MPI_Isend");
  // Not completed here: a small frame leaves at once (eager), and the next
  // poll, which comes while this process waits anyway, frees the request.
  ring(dest);  // if it naps on its doorbell
}

void progress() { check(lib->progress(), "MPI_Test"); }

std::size_t pending_sends() { return lib->pending(); }

bool frame_arrived() {
  bool arrived = false;
  check(lib->probe(&arrived), "MPI_Iprobe");
  return arrived;
}

std::optional<Incoming> poll(int source) {
  if (lib->pending() > 0) progress();
  bool got = false;
  int tag = 0;
  Incoming in;
  check(lib->take(source, &got, &in.source, &tag, &in.frame.payload), "MPI_Improbe or MPI_Mrecv");
  if (!got) return std::nullopt;
  if (tag < first_kind || tag > last_kind) {
    throw FrameError("coop::MpiVM: a message from rank " + std::to_string(in.source) + " has tag " +
                     std::to_string(tag) + ", which is no kind of frame");
  }
  in.frame.kind = static_cast<FrameKind>(tag);
  return in;
}

void end_job(int status) {
  World& w = world();
  if (!w.initialised || w.finalized) return;
  w.finalized = true;
  if (status == 0) {
    lib->finalize();
  } else {
    lib->abort(status);
  }
}

void finish_sends() {
  Backoff wait;
  while (pending_sends() > 0) {
    progress();
    wait.pause();
  }
}

void stop_ranks() {
  World& w = world();
  if (!w.initialised || w.finalized || w.rank != 0) return;
  // At exit nothing may throw (std::terminate): an MPI error here is told,
  // and MPI_Abort ends the job instead of leaving ranks behind.
  try {
    end_live_session();
    for (int r = 1; r < w.size; ++r) send(r, FrameKind::stop, {});
    finish_sends();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coop::MpiVM: ending the job: %s\n", e.what());
    end_job(1);
    return;
  }
  end_job(0);
}

}  // namespace coop::detail::mpi

namespace coop::detail {

// mpi_init_hook() is coop::init's part under a launcher: MPI_Init (after a
// serving rank has started its fork server, so that no fork ever happens
// in a process that initialised MPI), the hosts, then serve or return.
void mpi_init_hook() {
  using namespace mpi;
  Launcher l = launcher();
  World& w = world();
  if (!l.present || w.initialised) return;
  // Loaded before the fork server starts: a module that cannot be loaded
  // is an error on every rank, before any process is started.
  lib = &mpi_library();
  if (l.rank > 0) start_fork_server();
  // Ranks pass frames on and run for microseconds at a time: on EEVDF a
  // rank woken by a result otherwise waits for a busy worker's slice to
  // end. 5 ms jobs, 2 worker ranks, isolate on, 2 cores: dispatch
  // efficiency 0.75-0.91 without (a woken process waited 0.66 ms for a core
  // on average, `perf sched latency`), 0.97-0.99 with. The fork server
  // (forked above) and what it starts keep the default.
  posix::ask_time_slice(rank_time_slice);
  check(lib->init(&w.rank, &w.size), "MPI_Init_thread");
  w.initialised = true;
  w.host = own_host();
  w.hosts = gather_hosts(w.rank, w.size);
  std::string token = job_token(w.rank);
  open_doorbell(token, w.rank, w.size);
  check(lib->barrier(), "MPI_Barrier");  // every rank of this machine has the page
  forget_doorbell_name(token);
  lib->quiet_polls();  // the collective start-up is over: from here on cos never blocks in MPI
  if (w.rank > 0) serve_rank();
  std::atexit([] { stop_ranks(); });
}

}  // namespace coop::detail

namespace coop {

bool under_mpi() { return detail::mpi::launcher().present; }

int mpi_rank() {
  auto& w = detail::mpi::world();
  return w.initialised ? w.rank : detail::mpi::launcher().rank;
}

int mpi_size() {
  auto& w = detail::mpi::world();
  return w.initialised ? w.size : detail::mpi::launcher().size;
}

std::vector<std::string> mpi_rank_hosts() { return detail::mpi::world().hosts; }

}  // namespace coop
