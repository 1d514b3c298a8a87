#include <cos/remote.hpp>

#include <cxxabi.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <cos/errors.hpp>

#include "posix/text.hpp"
#include "remote/execute.hpp"
#include "remote/storage.hpp"
#include "remote/symbol_name.hpp"

namespace coop::detail {
using posix::demangle;
namespace {

struct Entry {
  std::string name;
  Invoker invoker;
  const void* address;
  std::string where;
};

// The registry is filled by static initializers (before main, or when a
// library is dlopen'ed) and only read afterwards. The mutex serializes
// registrations with each other; lookups (remote_name, execute, which slot
// threads run at once) take no lock, so a library with COS_REMOTE functions
// must not be dlopen'ed while remote tasks run.
struct Registry {
  std::mutex mutex;
  std::unordered_map<std::string, Entry> by_name;
  std::unordered_map<const void*, const Entry*> by_address;
  std::string duplicates;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: workers use it until exit
  return *r;
}

}  // namespace

bool register_remote(const char* name, Invoker invoker, const void* address, const char* file,
                     int line) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::string where = std::string(file) + ":" + std::to_string(line);
  auto [it, inserted] = r.by_name.try_emplace(name, Entry{name, invoker, address, where});
  if (!inserted) {
    r.duplicates += "\n  '" + std::string(name) + "' at " + it->second.where + " and at " + where;
    return false;
  }
  r.by_address[address] = &it->second;
  return true;
}

const std::string* remote_name(const void* address) {
  Registry& r = registry();
  auto it = r.by_address.find(address);
  return it == r.by_address.end() ? nullptr : &it->second->name;
}

void check_registry() {
  Registry& r = registry();
  if (!r.duplicates.empty()) {
    throw Error("coop: COS_REMOTE registered a name twice (names must be unique):" + r.duplicates);
  }
}

void unregistered(const void* address, const std::type_info& type) {
  std::string name = symbol_name(address);
  // A demangled name ends with its parameter list; COS_REMOTE takes the bare name.
  int depth = 0;
  for (std::size_t i = name.size(); i-- > 0;) {
    if (name[i] == ')') ++depth;
    if (name[i] == '(' && --depth == 0) {
      name.erase(i);
      break;
    }
  }
  if (name.empty()) {
    std::ostringstream os;
    os << demangle(type) << " at " << address;
    name = os.str();
  }
  throw NotRegistered(name);
}

void record_exception(Message& m) {
  try {
    throw;
  } catch (const std::exception& e) {
    m.error_type = demangle(typeid(e));
    m.payload = e.what();
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    m.error_type = t ? demangle(*t) : "unknown";
    m.payload = "an exception of type " + m.error_type + " (not derived from std::exception)";
  }
}

namespace {

// run() is execute() with the task's storage, if it has one (a remote task
// on a slot), prepared before the function runs and ended after it.
Message run(const Call& call, TaskStorage* storage) {
  Message m;
  m.kind = Message::Kind::result;
  m.started = clock::now();
  const Entry* entry = nullptr;
  {
    Registry& r = registry();
    auto it = r.by_name.find(call.function);
    if (it != r.by_name.end()) entry = &it->second;
  }
  if (!entry) {
    m.failure = Message::Failure::not_registered;
    m.error_type = "coop::NotRegistered";
    m.payload = call.function;
  } else {
    m.failure = Message::Failure::exception;
    try {
      if (storage) storage->prepare();
      entry->invoker(call.args, m.payload);
      m.ok = true;
      m.failure = Message::Failure::none;
    } catch (...) {
      record_exception(m);
    }
  }
  if (storage) storage->end(m.failure == Message::Failure::none);
  m.completed = clock::now();
  return m;
}

}  // namespace

Message execute(const Call& call) {
  TaskStorage storage(call.mirrors, call.function);  // its scratch and mirrors (storage.cpp)
  return run(call, &storage);
}

Message execute_in_spawner(const Call& call) { return run(call, nullptr); }

}  // namespace coop::detail
