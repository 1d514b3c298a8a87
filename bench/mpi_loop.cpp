// mpi_loop.cpp: the baseline of bench/mpi.cpp: the plainest MPI
// request/reply loop, what a hand-written MPI pool of the same ranks would
// do at best. `mpirun -n N mpi_loop TASKS WARMUP`: rank 0 keeps one 32-byte
// request in flight per worker rank (MPI_Isend, then MPI_Waitany over the
// replies) and prints the wall time per task in ns; ranks 1..N-1 answer
// each request with a reply of the same size (blocking MPI_Recv and
// MPI_Send, which spin: the fastest way, and the one that burns a core).
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr int request_size = 32;
constexpr int work_tag = 1, stop_tag = 2;

void serve() {
  char buf[request_size];
  for (;;) {
    MPI_Status st;
    MPI_Recv(buf, request_size, MPI_BYTE, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
    if (st.MPI_TAG == stop_tag) return;
    MPI_Send(buf, request_size, MPI_BYTE, 0, work_tag, MPI_COMM_WORLD);
  }
}

// run() makes `tasks` round trips over the workers, one in flight on each.
void run(int workers, int tasks) {
  std::vector<MPI_Request> replies(static_cast<std::size_t>(workers), MPI_REQUEST_NULL);
  std::vector<char> in(static_cast<std::size_t>(workers) * request_size), out(request_size);
  int sent = 0, done = 0;
  auto post = [&](int w) {
    MPI_Send(out.data(), request_size, MPI_BYTE, w + 1, work_tag, MPI_COMM_WORLD);
    MPI_Irecv(in.data() + w * request_size, request_size, MPI_BYTE, w + 1, work_tag, MPI_COMM_WORLD,
              &replies[static_cast<std::size_t>(w)]);
    ++sent;
  };
  for (int w = 0; w < workers && sent < tasks; ++w) post(w);
  while (done < tasks) {
    int w = 0;
    MPI_Waitany(workers, replies.data(), &w, MPI_STATUS_IGNORE);
    ++done;
    if (sent < tasks) post(w);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank > 0) {
    serve();
  } else {
    int tasks = argc > 1 ? std::atoi(argv[1]) : 100000;
    int warmup = argc > 2 ? std::atoi(argv[2]) : 1000;
    run(size - 1, warmup);
    auto t0 = std::chrono::steady_clock::now();
    run(size - 1, tasks);
    double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%.1f\n", ns / tasks);
    std::fflush(stdout);
    char stop[request_size] = {};
    for (int r = 1; r < size; ++r) MPI_Send(stop, request_size, MPI_BYTE, r, stop_tag, MPI_COMM_WORLD);
  }
  MPI_Finalize();
  return 0;
}
