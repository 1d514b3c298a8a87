// world.cpp: the MPI job as cos sees it: finding the launcher without MPI,
// initialising MPI from coop::init (ranks 1..n-1 serve from there, rank 0
// returns and stops them at exit), the host of every rank, and frames sent
// and received over MPI without ever blocking in MPI's progress loop.
#include "backends/mpi/world.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <cstring>
#include <list>

#include <cos/errors.hpp>
#include <cos/mpi_vm.hpp>

#include "backends/host_name.hpp"
#include "backends/mpi/fork_server.hpp"
#include "backends/mpi/hook.hpp"

namespace coop::detail::mpi {
namespace {

// A frame is one MPI message on cos's own communicator: its kind is the
// message's tag and its payload the message's bytes (MPI keeps the bounds),
// so neither side copies bytes to add or strip a frame header.
MPI_Comm cos_comm = MPI_COMM_NULL;
constexpr int first_kind = static_cast<int>(FrameKind::hello), last_kind = static_cast<int>(FrameKind::stop);

struct PendingSend {
  MPI_Request request = MPI_REQUEST_NULL;
  std::string bytes;
};
std::list<PendingSend>& sends() {
  static std::list<PendingSend> s;
  return s;
}

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
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int n = 0;
    MPI_Error_string(rc, text, &n);
    throw Error(std::string("coop::MpiVM: ") + what + " failed: " + text);
  }
}

// The name of this rank's host: COS_HOST, or MPI_Get_processor_name.
std::string own_host() {
  if (const char* h = std::getenv("COS_HOST"); h && *h) return h;
  char name[MPI_MAX_PROCESSOR_NAME + 1] = {};
  int n = 0;
  if (MPI_Get_processor_name(name, &n) == MPI_SUCCESS && n > 0) return std::string(name, static_cast<std::size_t>(n));
  return this_host_name();
}

// gather_hosts() gives rank 0 the host of every rank (a collective call,
// made once by every rank in coop::init).
std::vector<std::string> gather_hosts(int rank, int size) {
  std::string mine = world().host;
  char buf[MPI_MAX_PROCESSOR_NAME + 1] = {};
  std::memcpy(buf, mine.data(), std::min<std::size_t>(mine.size(), MPI_MAX_PROCESSOR_NAME));
  std::vector<char> all(rank == 0 ? static_cast<std::size_t>(size) * sizeof buf : 0);
  check(MPI_Gather(buf, sizeof buf, MPI_CHAR, all.data(), sizeof buf, MPI_CHAR, 0, cos_comm), "MPI_Gather");
  std::vector<std::string> hosts;
  if (rank == 0) {
    for (int r = 0; r < size; ++r) hosts.emplace_back(all.data() + static_cast<std::size_t>(r) * sizeof buf);
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
  check(MPI_Bcast(token, sizeof token, MPI_CHAR, 0, cos_comm), "MPI_Bcast");
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
  auto& list = sends();
  list.push_back(PendingSend{MPI_REQUEST_NULL, std::move(payload)});
  PendingSend& p = list.back();
  check(MPI_Isend(p.bytes.data(), static_cast<int>(p.bytes.size()), MPI_BYTE, dest, static_cast<int>(kind), cos_comm,
                  &p.request),
        "MPI_Isend");
  // Not completed here: a small frame leaves at once (eager), and the next
  // poll, which comes while this process waits anyway, frees the request.
  ring(dest);  // if it naps on its doorbell
}

void progress() {
  auto& list = sends();
  for (auto it = list.begin(); it != list.end();) {
    int done = 0;
    check(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    it = done ? list.erase(it) : std::next(it);
  }
}

std::size_t pending_sends() { return sends().size(); }

bool frame_arrived() {
  // Twice: Open MPI's MPI_Iprobe matches what has already been taken in and
  // only then runs the progress engine (which takes in what has arrived
  // since), so one call can miss a frame that is there.
  for (int i = 0; i < 2; ++i) {
    int flag = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, cos_comm, &flag, &status), "MPI_Iprobe");
    if (flag) return true;
  }
  return false;
}

std::optional<Incoming> poll(int source) {
  if (!sends().empty()) progress();
  int flag = 0;
  MPI_Status status;
  MPI_Message message;
  // A matched probe: the receive takes the very message probed, without
  // matching it again.
  check(MPI_Improbe(source < 0 ? MPI_ANY_SOURCE : source, MPI_ANY_TAG, cos_comm, &flag, &message, &status),
        "MPI_Improbe");
  if (!flag) return std::nullopt;
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  Incoming in{status.MPI_SOURCE, Frame{static_cast<FrameKind>(status.MPI_TAG), std::string(static_cast<std::size_t>(count), '\0')}};
  check(MPI_Mrecv(in.frame.payload.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE), "MPI_Mrecv");
  if (status.MPI_TAG < first_kind || status.MPI_TAG > last_kind) {
    throw FrameError("coop::MpiVM: a message from rank " + std::to_string(status.MPI_SOURCE) + " has tag " +
                     std::to_string(status.MPI_TAG) + ", which is no kind of frame");
  }
  return in;
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
    w.finalized = true;
    MPI_Abort(MPI_COMM_WORLD, 1);
    return;
  }
  w.finalized = true;
  MPI_Comm_free(&cos_comm);
  MPI_Finalize();
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
  if (l.rank > 0) start_fork_server();
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &cos_comm), "MPI_Comm_dup");
  MPI_Comm_rank(cos_comm, &w.rank);
  MPI_Comm_size(cos_comm, &w.size);
  w.initialised = true;
  w.host = own_host();
  w.hosts = gather_hosts(w.rank, w.size);
  std::string token = job_token(w.rank);
  open_doorbell(token, w.rank, w.size);
  check(MPI_Barrier(cos_comm), "MPI_Barrier");  // every rank of this machine has the page
  forget_doorbell_name(token);
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
