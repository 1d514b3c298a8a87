// The slot's side of remote objects and spawner calls: the running task's
// channel (channel.hpp) in a thread-local, this_host() and this_task_id(),
// spawner calls that wait for their reply, and the loop that serves an
// object's method calls. Backend-independent: it sees only a TaskChannel.

#include <deque>
#include <utility>

#include <cos/errors.hpp>
#include <cos/object.hpp>
#include <cos/spawner.hpp>

#include "remote/channel.hpp"
#include "remote/execute.hpp"
#include "remote/wire.hpp"

namespace coop::detail {

const void* methods_of(const std::type_info& cls);                       // methods.cpp
MethodInvoker find_method(const void* methods, const std::string& name);  // methods.cpp

namespace {

using wire::Envelope;
using wire::Tag;

// SlotTask is the remote task running on this thread: its channel, and what
// arrived for someone else while a spawner call waited for its reply (an
// object's next method calls).
struct SlotTask {
  TaskChannel& channel;
  std::deque<Envelope> held{};
  std::uint64_t next_call = 0;
};

thread_local SlotTask* tls_task = nullptr;

// next() is the next envelope from the spawner that `want` accepts; others
// are held for later. nullopt: nothing more can come.
template <class Want> std::optional<Envelope> next(SlotTask& t, Want want) {
  for (auto it = t.held.begin(); it != t.held.end(); ++it) {
    if (want(*it)) {
      Envelope e = std::move(*it);
      t.held.erase(it);
      return e;
    }
  }
  for (;;) {
    std::optional<std::string> bytes = t.channel.receive();
    if (!bytes) return std::nullopt;
    Envelope e = wire::decode(*bytes);
    if (want(e)) return e;
    t.held.push_back(std::move(e));
  }
}

// run_caught() runs fn and fills `m` with how it ended, as execute() does.
template <class Fn> void run_caught(Message& m, Fn&& fn) {
  m.started = clock::now();
  m.failure = Message::Failure::exception;
  try {
    fn();
    m.ok = true;
    m.failure = Message::Failure::none;
  } catch (...) {
    record_exception(m);
  }
  m.completed = clock::now();
}

SlotTask& slot_task(const char* what) {
  if (!tls_task) throw Error(std::string(what) + ": not in a remote task");
  return *tls_task;
}

}  // namespace

Message execute(const Call& call, TaskChannel& channel) {
  SlotTask task{channel};
  SlotTask* outer = std::exchange(tls_task, &task);
  struct Restore {
    SlotTask* outer;
    ~Restore() { tls_task = outer; }
  } restore{outer};
  return execute(call);
}

bool in_remote_task() noexcept { return tls_task != nullptr; }

std::string spawner_call_bytes(Call&& call) {
  SlotTask& t = slot_task("coop::spawner_call");
  Envelope request;
  request.tag = Tag::call;
  request.seq = ++t.next_call;
  request.name = std::move(call.function);
  request.body = std::move(call.args);
  const std::string function = request.name;
  t.channel.post(wire::encode(request));
  std::uint64_t seq = request.seq;
  std::optional<Envelope> reply = next(t, [seq](const Envelope& e) { return e.tag == Tag::reply && e.seq == seq; });
  if (!reply) {
    throw Error("coop::spawner_call(" + function +
                "): the spawner can no longer answer (its scheduler ended, or this task was cancelled)");
  }
  switch (reply->failure) {
    case Message::Failure::none:
      return std::move(reply->body);
    case Message::Failure::not_registered:
      throw NotRegistered(reply->body);
    case Message::Failure::exception:
      break;
  }
  throw RemoteError(reply->error_type, reply->body, HostId(reply->name));
}

void spawner_post_bytes(Call&& call) {
  SlotTask& t = slot_task("coop::spawner_post");
  Envelope request;
  request.tag = Tag::post;
  request.name = std::move(call.function);
  request.body = std::move(call.args);
  t.channel.post(wire::encode(request));
}

void serve_object(void* object, const std::type_info& cls) {
  SlotTask& t = slot_task("coop: a remote object's server");
  const void* methods = methods_of(cls);
  t.channel.post(wire::encode(Envelope{.tag = Tag::built}));
  for (;;) {
    std::optional<Envelope> e =
        next(t, [](const Envelope& e) { return e.tag == Tag::method || e.tag == Tag::close; });
    if (!e || e->tag == Tag::close) return;
    Message m;
    MethodInvoker invoker = find_method(methods, e->name);
    if (!invoker) {
      m.started = m.completed = clock::now();
      m.failure = Message::Failure::not_registered;
      m.payload = e->name;
    } else {
      run_caught(m, [&] { invoker(object, e->body, m.payload); });
    }
    t.channel.post(wire::encode(wire::outcome(Tag::result, e->seq, std::move(m))));
  }
}

}  // namespace coop::detail

namespace coop {

std::optional<HostId> this_host() {
  if (!detail::tls_task) return std::nullopt;
  return detail::tls_task->channel.host();
}

std::optional<TaskId> this_task_id() {
  if (!detail::tls_task) return std::nullopt;
  return detail::tls_task->channel.task();
}

}  // namespace coop
