// What running remote tasks post to the spawner (vm.hpp's `post` messages):
// a remote object's news goes to its ObjectSink (object.cpp); a spawner call
// runs its function as a local task of this scheduler and, for
// spawner_call, sends the outcome back to the task.
#include <cstdio>
#include <string>
#include <vector>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "backends/host_name.hpp"
#include "remote/execute.hpp"
#include "remote/pool.hpp"

namespace coop::detail {

using wire::Envelope;
using wire::Tag;

void RemotePool::on_post(TaskRecord* rec, Message&& m) {
  RemoteTask& job = task_of(rec);
  Envelope e;
  try {
    e = wire::decode(m.payload);
  } catch (const Error& error) {
    std::fprintf(stderr, "cos: task %lld (%s): %s\n", static_cast<long long>(rec->tid), job.call.function.c_str(),
                 error.what());
    return;
  }
  switch (e.tag) {
    case Tag::built:
    case Tag::result:
      if (job.object) job.object->on_post(std::move(e));
      return;
    case Tag::call:
    case Tag::post:
      run_spawner_call(m.task, rec->tid, std::move(e));
      return;
    case Tag::reply:
    case Tag::method:
    case Tag::close:
      break;
  }
  std::fprintf(stderr, "cos: task %lld (%s) posted a message that only a spawner sends; ignored\n",
               static_cast<long long>(rec->tid), job.call.function.c_str());
}

// run_spawner_call() runs the posted call as a detached local task of this
// scheduler, behind the tasks ready now (so posts from one task start in the
// order posted). A spawner_call's outcome goes back to the task, which is
// blocked waiting for it; a spawner_post's exception is reported at
// shutdown, like any exception that no join collected.
void RemotePool::run_spawner_call(const TaskId& task, Tid tid, Envelope&& e) {
  spawn_detached(false, [vm = vm_, task, tid, e = std::move(e)]() mutable {
    Message r = execute_in_spawner(Call{e.name, std::move(e.body)});
    if (e.tag == Tag::call) {
      Envelope reply = wire::outcome(Tag::reply, e.seq, std::move(r));
      reply.name = this_host_name();
      vm->send(task, wire::encode(reply));
      return;
    }
    if (r.failure == Message::Failure::not_registered) throw NotRegistered(r.payload);
    if (r.failure == Message::Failure::exception) {
      throw RemoteError(r.error_type,
                        "spawner_post(" + e.name + ") from task " + std::to_string(tid) + ": " + r.payload,
                        HostId(this_host_name()));
    }
  });
}

void RemotePool::draining(std::size_t live) {
  if (objects_.empty() || live != objects_.size()) return;
  std::vector<ObjectSink*> open(objects_.begin(), objects_.end());
  for (ObjectSink* o : open) o->close();
}

}  // namespace coop::detail
