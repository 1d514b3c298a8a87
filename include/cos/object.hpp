// object.hpp: remote objects (OMUSE's code instances, MSL-Network services,
// Ray's actors): a long-lived instance of a class on one slot, whose method
// calls run one at a time in the order made, each returning a Task<R>.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <cos/detail/core.hpp>
#include <cos/errors.hpp>
#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/remote.hpp>
#include <cos/spawn.hpp>
#include <cos/spawn_options.hpp>
#include <cos/task.hpp>

namespace coop::detail {

// ClassTag<T>: its `tag` is the address under which T's object server is
// registered; its type lets COS_REMOTE_CLASS declare T's constructor
// arguments where argument-dependent lookup finds them.
template <class T> struct ClassTag {
  static inline const char tag = 0;
};

// MethodTraits<M> takes a pointer to a member function apart.
template <class M> struct MethodTraits;
template <class R, class C, class... P> struct MethodTraits<R (C::*)(P...)> {
  using result = std::remove_cvref_t<R>;
  using owner = C;
  using args = std::tuple<std::decay_t<P>...>;
};
template <class R, class C, class... P> struct MethodTraits<R (C::*)(P...) const> : MethodTraits<R (C::*)(P...)> {};
template <class R, class C, class... P> struct MethodTraits<R (C::*)(P...) noexcept> : MethodTraits<R (C::*)(P...)> {};
template <class R, class C, class... P>
struct MethodTraits<R (C::*)(P...) const noexcept> : MethodTraits<R (C::*)(P...)> {};

// The registry of remote classes and their methods (src/remote/methods.cpp),
// filled by COS_REMOTE_CLASS and COS_REMOTE_METHOD before main.
using MethodInvoker = void (*)(void* object, const std::string& args, std::string& result);
using MethodMatch = bool (*)(const void* member_pointer);
COS_API bool register_class(const std::type_info& cls, const char* name, const std::type_info& ctor);
COS_API bool register_method(const std::type_info& cls, const char* name, MethodInvoker invoker,
                             const std::type_info& type, MethodMatch match, const char* file, int line);
// class_name() is the registered name of `cls`; throws coop::NotRegistered
// for a class without COS_REMOTE_CLASS, and coop::Error when `ctor` (the
// tuple of argument types given) is not the registered constructor's.
COS_API const std::string& class_name(const std::type_info& cls, const char* type_name, const std::type_info& ctor);
// method_name() is the registered name of the method *member_pointer of
// `cls`; throws coop::NotRegistered for one without COS_REMOTE_METHOD.
COS_API const std::string& method_name(const std::type_info& cls, const std::string& class_name,
                                       const std::type_info& type, const void* member_pointer);
// serve_object() runs on the slot: it serves the method calls that the
// spawner sends to `object`, one at a time, until the object is closed.
COS_API void serve_object(void* object, const std::type_info& cls);

template <class T, class Ctor> struct ClassRegistrar {
  static_assert(std::is_class_v<T>, "COS_REMOTE_CLASS(T, args...): T must be a class");
  static_assert(AllSerializable<Ctor>::value,
                "COS_REMOTE_CLASS(T, args...): every constructor argument type must be serializable by cereal");
  static_assert(std::is_constructible_v<Ctor> && std::is_move_constructible_v<Ctor>,
                "COS_REMOTE_CLASS(T, args...): constructor argument types must be default-constructible "
                "and movable, as for COS_REMOTE");
  static void serve(const std::string& args, std::string& result) {
    Ctor a;
    from_bytes(args, a);
    std::unique_ptr<T> object =
        std::apply([](auto&&... x) { return std::make_unique<T>(std::move(x)...); }, std::move(a));
    serve_object(object.get(), typeid(T));
    result.clear();
  }
  static bool add(const char* name, const char* file, int line) {
    return register_class(typeid(T), name, typeid(Ctor)) &&
           register_remote(name, &serve, &ClassTag<T>::tag, file, line);
  }
};

template <class T, class M, M method> struct MethodRegistrar {
  using Traits = MethodTraits<M>;
  static_assert(std::is_base_of_v<typename Traits::owner, T>, "COS_REMOTE_METHOD(T, m): m is not a method of T");
  static_assert(AllSerializable<typename Traits::args>::value,
                "COS_REMOTE_METHOD(T, m): every parameter type of m must be serializable by cereal");
  static_assert(serializable<typename Traits::result>,
                "COS_REMOTE_METHOD(T, m): the return type of m must be serializable by cereal");
  static void invoke(void* object, const std::string& args, std::string& result) {
    typename Traits::args a;
    from_bytes(args, a);
    T& self = *static_cast<T*>(object);
    auto run = [&self](auto&&... x) -> decltype(auto) { return (self.*method)(std::move(x)...); };
    if constexpr (std::is_void_v<typename Traits::result>) {
      std::apply(run, std::move(a));
      result.clear();
    } else {
      result = to_bytes(std::apply(run, std::move(a)));
    }
  }
  static bool matches(const void* member_pointer) { return *static_cast<const M*>(member_pointer) == method; }
  static bool add(const char* name, const char* file, int line) {
    return register_method(typeid(T), name, &invoke, typeid(M), &matches, file, line);
  }
};

// The constructor arguments COS_REMOTE_CLASS declared, when its declaration
// is visible here; otherwise the arguments as given (checked at run time).
template <class T>
concept declared_class = requires { cos_remote_class(ClassTag<T>{}); };
template <class T, class... A> struct CtorArgs {
  using type = std::tuple<std::decay_t<A>...>;
};
template <declared_class T, class... A> struct CtorArgs<T, A...> {
  using type = decltype(cos_remote_class(ClassTag<T>{}));
};

// The spawner's side of a remote object (src/remote/object.cpp).
class ObjectState;
// make_object() starts T's object server with the serialized constructor
// call and yields until the object is built on its slot; throws what a
// remote spawn throws, or coop::RemoteError when the constructor threw.
COS_API std::shared_ptr<ObjectState> make_object(const Spawn& where, Call&& ctor);
// call_object() sends a method call and returns the call's task (a child of
// the caller) at once; it ends when the result comes back.
COS_API TaskRef call_object(ObjectState& object, const std::string& method, std::string&& args, DecodeFn decode);
COS_API std::optional<HostId> object_host(const ObjectState& object);
COS_API void close_object(ObjectState& object) noexcept;

// An object kept in the spawner (no VM, or .remote = false): its calls are
// local tasks that take turns in the order made.
template <class T> struct LocalObject {
  std::unique_ptr<T> value;
  std::uint64_t issued = 0;   // calls made
  std::uint64_t serving = 0;  // the call whose turn it is
  std::vector<std::pair<std::uint64_t, Waiter*>> parked;

  void wait_turn(std::uint64_t seq) {
    while (serving != seq) {
      Waiter w;
      parked.emplace_back(seq, &w);
      w.wait();
    }
  }
  void pass_turn() {
    ++serving;
    for (auto it = parked.begin(); it != parked.end(); ++it) {
      if (it->first == serving) {
        Waiter* w = it->second;
        parked.erase(it);
        w->notify();
        return;
      }
    }
  }
};

}  // namespace coop::detail

#define COS_REMOTE_CLASS_CAT2(a, b) a##b
#define COS_REMOTE_CLASS_CAT(a, b) COS_REMOTE_CLASS_CAT2(a, b)

// COS_REMOTE_CLASS(T, CtorArgs...) lets make_remote<T> build T(CtorArgs...)
// on any slot of any process of this program: use it once, at namespace
// scope (in T's namespace, so that make_remote converts its arguments to
// CtorArgs; elsewhere they must have exactly those types). The argument
// types must be serializable by cereal.
#define COS_REMOTE_CLASS(T, ...)                                                         \
  [[maybe_unused]] inline std::tuple<__VA_ARGS__> cos_remote_class(::coop::detail::ClassTag<T>) { return {}; } \
  [[maybe_unused]] static const bool COS_REMOTE_CLASS_CAT(cos_remote_class_, __COUNTER__) = \
      ::coop::detail::ClassRegistrar<T, std::tuple<__VA_ARGS__>>::add(#T, __FILE__, __LINE__)

// COS_REMOTE_METHOD(T, m) makes the method T::m callable on a Remote<T> (by
// its name "m", so every process finds it). One overload per name: an
// overloaded m does not compile. Parameter and result types must be
// serializable by cereal.
#define COS_REMOTE_METHOD(T, m)                                                             \
  [[maybe_unused]] static const bool COS_REMOTE_CLASS_CAT(cos_remote_method_, __COUNTER__) = \
      ::coop::detail::MethodRegistrar<T, decltype(&T::m), &T::m>::add(#m, __FILE__, __LINE__)

namespace coop {

// Remote<T> is the move-only handle of an object that make_remote<T> built.
// Calls on one object run one at a time, in the order made, on the slot that
// holds it (or, kept in the spawner, as local tasks that take turns). A
// method that throws fails that call only (coop::RemoteError, as a remote
// task's exception). If the object's worker dies, every pending and later
// call fails with coop::WorkerLost naming the object: no call is re-run on
// a fresh instance that lacks the lost state. Use it on its scheduler's
// thread, from any of its tasks; a call's Task<R> belongs to the task that
// made the call.
//
// Example:
//   COS_REMOTE_CLASS(Model, Config);  COS_REMOTE_METHOD(Model, step);
//   auto m = coop::make_remote<Model>({.remote = true}, config);
//   auto t = m.call(&Model::step, 0.1);   // a Task<double>; never waits
//   double y = m.sync(&Model::step, 0.1); // after t, then this one
template <class T> class Remote {
 public:
  Remote() = default;
  Remote(Remote&& o) noexcept
      : remote_(std::move(o.remote_)), local_(std::move(o.local_)), name_(std::exchange(o.name_, nullptr)) {}
  Remote& operator=(Remote&& o) noexcept {
    if (this != &o) {
      close();
      remote_ = std::move(o.remote_);
      local_ = std::move(o.local_);
      name_ = std::exchange(o.name_, nullptr);
    }
    return *this;
  }
  Remote(const Remote&) = delete;
  Remote& operator=(const Remote&) = delete;
  // The destructor closes the object (see close()).
  ~Remote() { close(); }

  // call(&T::m, args...) calls the registered method m with args and returns
  // its Task<R> at once (never waits, not even for earlier calls); join()
  // gives the value or rethrows. Throws coop::NotRegistered for a method
  // without COS_REMOTE_METHOD, coop::Error on a closed handle.
  template <class M, class... A> auto call(M method, A&&... args) {
    using Traits = detail::MethodTraits<M>;
    using R = typename Traits::result;
    static_assert(std::is_base_of_v<typename Traits::owner, T>, "Remote<T>::call: the method is not a method of T");
    static_assert(std::is_constructible_v<typename Traits::args, A&&...>,
                  "Remote<T>::call: the arguments do not convert to the method's parameter types");
    if (!name_) throw Error("Remote::call: the object is closed (or was never made)");
    // The registry is fixed once main runs: remember the last method's name.
    static thread_local M last_method{};
    static thread_local const std::string* last_name = nullptr;
    if (!last_name || !(last_method == method)) {
      last_name = &detail::method_name(typeid(T), *name_, typeid(M), &method);
      last_method = method;
    }
    const std::string& name = *last_name;
    typename Traits::args a(std::forward<A>(args)...);
    if (local_) {
      std::uint64_t seq = local_->issued++;
      return detail::spawn_local([object = local_, seq, method, a = std::move(a)]() mutable -> R {
        object->wait_turn(seq);
        struct Pass {
          detail::LocalObject<T>& o;
          ~Pass() { o.pass_turn(); }
        } pass{*object};
        T& self = *object->value;
        return std::apply([&self, method](auto&&... x) -> R { return (self.*method)(std::move(x)...); },
                          std::move(a));
      });
    }
    return Task<R>(detail::call_object(*remote_, name, detail::to_bytes(a), &detail::decode<R>));
  }

  // sync(&T::m, args...) is call(...).join(): it waits (yielding) for the
  // earlier calls on this object and this one, then returns its value.
  template <class M, class... A> auto sync(M method, A&&... args) {
    return call(method, std::forward<A>(args)...).join();
  }

  // host() is the host of the slot that holds the object; nullopt when it
  // lives in the spawner (or the handle is closed).
  std::optional<HostId> host() const { return remote_ ? detail::object_host(*remote_) : std::nullopt; }

  // close() destroys the object after the calls already made (their tasks
  // still end with their results) and frees its slot once it has; later
  // calls throw coop::Error. Never waits; the destructor does the same. An
  // object that nobody closed is closed when its scheduler ends, once no
  // other task runs.
  void close() noexcept {
    if (remote_) detail::close_object(*remote_);
    remote_.reset();
    local_.reset();  // pending local calls keep the object until they end
    name_ = nullptr;
  }

 private:
  template <class U, class... A> friend Remote<U> make_remote(Spawn where, A&&... args);
  std::shared_ptr<detail::ObjectState> remote_;
  std::shared_ptr<detail::LocalObject<T>> local_;
  const std::string* name_ = nullptr;  // the registered class name; null when closed
};

// make_remote<T>(where, ctor_args...) builds T(ctor_args...) as a remote
// object. `where` is as for a spawn: .remote = true (and a VM) puts it on a
// slot, yielding until one is free (of .host, if given, and by .priority),
// then until T is built there; .remote = false, or no VM, keeps it in the
// spawner. A remote object occupies its slot until it is closed. Throws
// coop::NotRegistered for a class without COS_REMOTE_CLASS, coop::Error for
// arguments of other types than registered (when COS_REMOTE_CLASS is not
// visible here) and for options an object cannot keep (block = false, a
// timeout, retries: an object is never silently re-made), and
// coop::RemoteError when T's constructor threw on the slot (in the spawner
// the constructor's own exception).
template <class T, class... A> Remote<T> make_remote(Spawn where, A&&... args) {
  using Args = typename detail::CtorArgs<T, A...>::type;
  static_assert(std::is_constructible_v<Args, A&&...>,
                "coop::make_remote<T>: the arguments do not convert to the constructor arguments that "
                "COS_REMOTE_CLASS(T, ...) declares");
  Remote<T> r;
  const std::string& name = detail::class_name(typeid(T), typeid(T).name(), typeid(Args));
  if (!where.remote || !detail::has_vm()) {
    r.local_ = std::make_shared<detail::LocalObject<T>>();
    r.local_->value = std::apply([](auto&&... x) { return std::make_unique<T>(std::move(x)...); },
                                 Args(std::forward<A>(args)...));
  } else {
    r.remote_ = detail::make_object(where, Call{name, detail::to_bytes(Args(std::forward<A>(args)...))});
  }
  r.name_ = &name;
  return r;
}

}  // namespace coop
