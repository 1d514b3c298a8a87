// The registry of remote classes and their methods (COS_REMOTE_CLASS,
// COS_REMOTE_METHOD). Filled by static initializers before main and only
// read afterwards, like the registry of functions (registry.cpp); methods
// are found by name on the slot and by member pointer in the spawner.
#include <cos/object.hpp>

#include <map>
#include <mutex>
#include <typeindex>

#include "posix/text.hpp"

namespace coop::detail {
namespace {

struct MethodEntry {
  std::string name;
  MethodInvoker invoker;
  const std::type_info* type;
  MethodMatch match;
  std::string where;
};

struct ClassEntry {
  std::string name;
  const std::type_info* ctor = nullptr;
  std::vector<MethodEntry> methods;
  std::string duplicates;  // methods registered twice under one name
};

struct Classes {
  std::mutex mutex;
  std::map<std::type_index, ClassEntry> by_type;
};

Classes& classes() {
  static Classes* c = new Classes;  // never destroyed: workers use it until exit
  return *c;
}

}  // namespace

bool register_class(const std::type_info& cls, const char* name, const std::type_info& ctor) {
  Classes& c = classes();
  std::lock_guard lock(c.mutex);
  ClassEntry& e = c.by_type[std::type_index(cls)];
  e.name = name;
  e.ctor = &ctor;
  return true;
}

bool register_method(const std::type_info& cls, const char* name, MethodInvoker invoker, const std::type_info& type,
                     MethodMatch match, const char* file, int line) {
  Classes& c = classes();
  std::lock_guard lock(c.mutex);
  ClassEntry& e = c.by_type[std::type_index(cls)];
  std::string where = std::string(file) + ":" + std::to_string(line);
  for (const MethodEntry& m : e.methods) {
    if (m.name == name) {
      e.duplicates += "\n  '" + std::string(name) + "' at " + m.where + " and at " + where;
      return false;
    }
  }
  e.methods.push_back(MethodEntry{name, invoker, &type, match, where});
  return true;
}

const std::string& class_name(const std::type_info& cls, const char* type_name, const std::type_info& ctor) {
  Classes& c = classes();
  auto it = c.by_type.find(std::type_index(cls));
  if (it == c.by_type.end() || !it->second.ctor) {
    throw NotRegistered("class " + posix::demangle(type_name) +
                        " (register it with COS_REMOTE_CLASS(T, constructor argument types...))");
  }
  const ClassEntry& e = it->second;
  if (!e.duplicates.empty()) {
    throw Error("coop: COS_REMOTE_METHOD registered a method of " + e.name + " twice:" + e.duplicates);
  }
  if (*e.ctor != ctor) {
    throw Error("coop::make_remote<" + e.name + ">: the arguments " + posix::demangle(ctor.name()) +
                " are not the constructor arguments " + posix::demangle(e.ctor->name()) +
                " that COS_REMOTE_CLASS registered (pass exactly those types, or make the COS_REMOTE_CLASS "
                "line visible here, in the class's namespace, so that they convert)");
  }
  return e.name;
}

const std::string& method_name(const std::type_info& cls, const std::string& class_name, const std::type_info& type,
                               const void* member_pointer) {
  Classes& c = classes();
  auto it = c.by_type.find(std::type_index(cls));
  if (it != c.by_type.end()) {
    for (const MethodEntry& m : it->second.methods) {
      if (*m.type == type && m.match(member_pointer)) return m.name;
    }
  }
  throw NotRegistered("a method of " + class_name + " of type " + posix::demangle(type.name()) +
                      " (register it with COS_REMOTE_METHOD(" + class_name + ", name))");
}

// methods_of() is the registry entry of `cls` (nullptr when it has none);
// find_method() the method `name` in it, or nullptr. The slot looks the class
// up once and each call's method by name.
const void* methods_of(const std::type_info& cls) {
  Classes& c = classes();
  auto it = c.by_type.find(std::type_index(cls));
  return it == c.by_type.end() ? nullptr : &it->second;
}

MethodInvoker find_method(const void* methods, const std::string& name) {
  if (!methods) return nullptr;
  for (const MethodEntry& m : static_cast<const ClassEntry*>(methods)->methods) {
    if (m.name == name) return m.invoker;
  }
  return nullptr;
}

}  // namespace coop::detail
