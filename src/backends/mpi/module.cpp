// module.cpp: libcos_mpi.so, the MPI calls of the MPI backend (see
// library.hpp). It depends on libmpi only, never on libcos: libcos loads it
// with dlopen under a launcher and calls it through the table below.
#include <mpi.h>

#include <cstdlib>
#include <list>
#include <string>
#include <vector>

#include "backends/mpi/library.hpp"

namespace coop::detail::mpi {
namespace {

static_assert(MPI_SUCCESS == library_ok);

// cos's own communicator, so a program's own MPI messages never mix with
// cos's frames.
MPI_Comm cos_comm = MPI_COMM_NULL;

struct PendingSend {
  MPI_Request request = MPI_REQUEST_NULL;
  std::string bytes;
};
// A list: each send's bytes stay where MPI was told they are.
std::list<PendingSend>& sends() {
  static std::list<PendingSend> s;
  return s;
}

// Open MPI's progress engine yields the core in every poll that finds
// nothing when the job has more ranks than cores (mpi_yield_when_idle),
// also in the polls a serving rank makes between two queued calls (two per
// task, to see a withdraw first): a context switch per poll. cos yields in
// its own waits (Backoff), so while it serves it turns Open MPI's off
// (quiet_polls), but only after the start-up's collectives and back on for
// MPI_Finalize: blocking collectives would spin against each other on a
// shared core (0.15 s more per job of 8 ranks on 2 cores when it was off
// from MPI_Init on). Empty tasks, 4 ranks without isolate on 2 cores:
// 2.1-2.7 us per task -> 1.7-1.9 us. The switch is an Open MPI internal
// (opal_progress.h, there since 1.x), linked weakly: under another MPI it
// is null and nothing changes.
extern "C" bool opal_progress_set_yield_when_idle(bool yield) __attribute__((weak));
bool yield_before = false;
bool yield_changed = false;

void quiet_polls() {
  if (!opal_progress_set_yield_when_idle || yield_changed || std::getenv("OMPI_MCA_mpi_yield_when_idle")) return;
  yield_before = opal_progress_set_yield_when_idle(false);
  yield_changed = true;
}

int init(int* rank, int* size) {
  int provided = 0;
  if (int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided); rc != MPI_SUCCESS) return rc;
  if (int rc = MPI_Comm_dup(MPI_COMM_WORLD, &cos_comm); rc != MPI_SUCCESS) return rc;
  if (int rc = MPI_Comm_rank(cos_comm, rank); rc != MPI_SUCCESS) return rc;
  return MPI_Comm_size(cos_comm, size);
}

std::string error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int n = 0;
  if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(n));
}

std::string processor_name() {
  char name[MPI_MAX_PROCESSOR_NAME + 1] = {};
  int n = 0;
  if (MPI_Get_processor_name(name, &n) != MPI_SUCCESS || n <= 0) return {};
  return std::string(name, static_cast<std::size_t>(n));
}

int gather(const char* mine, int width, std::vector<char>* all) {
  int rank = 0, size = 1;
  MPI_Comm_rank(cos_comm, &rank);
  MPI_Comm_size(cos_comm, &size);
  all->assign(rank == 0 ? static_cast<std::size_t>(size) * static_cast<std::size_t>(width) : 0, '\0');
  return MPI_Gather(mine, width, MPI_CHAR, all->data(), width, MPI_CHAR, 0, cos_comm);
}

int bcast(char* bytes, int n) { return MPI_Bcast(bytes, n, MPI_CHAR, 0, cos_comm); }

int barrier() { return MPI_Barrier(cos_comm); }

int isend(int dest, int tag, std::string&& bytes) {
  auto& list = sends();
  list.push_back(PendingSend{MPI_REQUEST_NULL, std::move(bytes)});
  PendingSend& p = list.back();
  int rc = MPI_Isend(p.bytes.data(), static_cast<int>(p.bytes.size()), MPI_BYTE, dest, tag, cos_comm, &p.request);
  if (rc != MPI_SUCCESS) list.pop_back();
  return rc;
}

int progress() {
  auto& list = sends();
  for (auto it = list.begin(); it != list.end();) {
    int done = 0;
    if (int rc = MPI_Test(&it->request, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS) return rc;
    it = done ? list.erase(it) : std::next(it);
  }
  return MPI_SUCCESS;
}

std::size_t pending() { return sends().size(); }

int probe(bool* arrived) {
  // Twice: Open MPI's MPI_Iprobe matches what has already been taken in and
  // only then runs the progress engine (which takes in what has arrived
  // since), so one call can miss a message that is there.
  *arrived = false;
  for (int i = 0; i < 2 && !*arrived; ++i) {
    int flag = 0;
    MPI_Status status;
    if (int rc = MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, cos_comm, &flag, &status); rc != MPI_SUCCESS) return rc;
    *arrived = flag != 0;
  }
  return MPI_SUCCESS;
}

int take(int source, bool* got, int* from, int* tag, std::string* bytes) {
  *got = false;
  int flag = 0;
  MPI_Status status;
  MPI_Message message;
  // A matched probe: the receive takes the very message probed, without
  // matching it again.
  int rc = MPI_Improbe(source < 0 ? MPI_ANY_SOURCE : source, MPI_ANY_TAG, cos_comm, &flag, &message, &status);
  if (rc != MPI_SUCCESS || !flag) return rc;
  int count = 0;
  if ((rc = MPI_Get_count(&status, MPI_BYTE, &count)) != MPI_SUCCESS) return rc;
  bytes->assign(static_cast<std::size_t>(count), '\0');
  if ((rc = MPI_Mrecv(bytes->data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE)) != MPI_SUCCESS) return rc;
  *got = true;
  *from = status.MPI_SOURCE;
  *tag = status.MPI_TAG;
  return MPI_SUCCESS;
}

int finalize() {
  if (yield_changed) {
    opal_progress_set_yield_when_idle(yield_before);
    yield_changed = false;
  }
  if (cos_comm != MPI_COMM_NULL) MPI_Comm_free(&cos_comm);
  return MPI_Finalize();
}

void abort_job(int status) { MPI_Abort(MPI_COMM_WORLD, status); }

const Library table{library_version, init,    error_text, processor_name, gather,   bcast,     barrier,
                    isend,           progress, pending,   probe,          take,     finalize, abort_job,
                    quiet_polls};

}  // namespace
}  // namespace coop::detail::mpi

extern "C" __attribute__((visibility("default"))) const coop::detail::mpi::Library* cos_mpi_library() {
  return &coop::detail::mpi::table;
}
