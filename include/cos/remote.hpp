// remote.hpp: COS_REMOTE (the registry of functions that may run remotely),
// their serialization, and spawn(Spawn, f, args...), the spawn with options
// that may put a task on a VM slot.
#pragma once

#include <cstddef>
#include <istream>
#include <optional>
#include <ostream>
#include <streambuf>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <cos/detail/core.hpp>
#include <cos/detail/value_box.hpp>
#include <cos/errors.hpp>
#include <cos/export.hpp>
#include <cos/spawn.hpp>
#include <cos/spawn_options.hpp>
#include <cos/task.hpp>
#include <cos/vm.hpp>

namespace coop::detail {

// FnTraits<F> takes a function pointer type apart.
template <class F> struct FnTraits;
template <class R, class... P> struct FnTraits<R (*)(P...)> {
  using result = std::remove_cvref_t<R>;
  using args = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P> struct FnTraits<R (*)(P...) noexcept> : FnTraits<R (*)(P...)> {};

template <class T>
inline constexpr bool serializable =
    std::is_void_v<T> || (cereal::traits::is_output_serializable<T, cereal::BinaryOutputArchive>::value &&
                          cereal::traits::is_input_serializable<T, cereal::BinaryInputArchive>::value);

template <class Tuple> struct AllSerializable;
template <class... T> struct AllSerializable<std::tuple<T...>> {
  static constexpr bool value = (serializable<T> && ...);
};

// Streams over a string, without the string stream's copies and locale set-up
// on every call (serialization is on every remote call's path).
class StringSink : public std::streambuf {
 public:
  explicit StringSink(std::string& out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) out_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }

 private:
  std::string& out_;
};

class StringSource : public std::streambuf {
 public:
  explicit StringSource(const std::string& in) {
    char* p = const_cast<char*>(in.data());  // read only: get area
    setg(p, p, p + in.size());
  }
};

// StreamLease lends the calling thread's std::ostream or std::istream, pointed
// at `buf`, for one serialization: constructing a stream copies a locale,
// which costs more than serializing a call's arguments. A nested use (a
// serialize() that itself serializes) gets a stream of its own.
template <class S> class StreamLease {
 public:
  explicit StreamLease(std::streambuf* buf) {
    Cache& c = cache();
    if (c.lent) {
      own_.emplace(buf);
      stream_ = &*own_;
    } else {
      c.lent = true;
      c.stream.rdbuf(buf);  // also clears the state a previous use left
      stream_ = &c.stream;
    }
  }
  ~StreamLease() {
    if (own_) return;
    Cache& c = cache();
    c.stream.rdbuf(nullptr);
    c.lent = false;
  }
  StreamLease(const StreamLease&) = delete;
  StreamLease& operator=(const StreamLease&) = delete;
  S& get() { return *stream_; }

 private:
  struct Cache {
    S stream{nullptr};
    bool lent = false;
  };
  static Cache& cache() {
    thread_local Cache c;
    return c;
  }
  std::optional<S> own_;
  S* stream_ = nullptr;
};

template <class T> inline constexpr bool is_empty_tuple = false;
template <> inline constexpr bool is_empty_tuple<std::tuple<>> = true;

template <class T> std::string to_bytes(const T& value) {
  std::string out;
  if constexpr (!is_empty_tuple<T>) {  // cereal writes nothing for it
    StringSink sink(out);
    StreamLease<std::ostream> os(&sink);
    cereal::BinaryOutputArchive ar(os.get());
    ar(value);
  }
  return out;
}

template <class T> void from_bytes(const std::string& bytes, T& value) {
  if constexpr (!is_empty_tuple<T>) {  // as cereal, which reads nothing for it
    StringSource source(bytes);
    StreamLease<std::istream> is(&source);
    cereal::BinaryInputArchive ar(is.get());
    ar(value);
  }
}

// decode<R> turns a serialized result into a task's value.
using DecodeFn = void (*)(const std::string& bytes, ValueBox& out);
template <class R> void decode(const std::string& bytes, ValueBox& out) {
  if constexpr (std::is_void_v<R>) {
    out.emplace<void>();
  } else {
    R value{};
    from_bytes(bytes, value);
    out.emplace<R>(std::move(value));
  }
}

// Invoke runs a serialized call of F and serializes what it returns.
using Invoker = void (*)(const std::string& args, std::string& result);
template <auto F> void invoke(const std::string& args, std::string& result) {
  using T = FnTraits<decltype(F)>;
  typename T::args a;
  from_bytes(args, a);
  if constexpr (std::is_void_v<typename T::result>) {
    std::apply(F, std::move(a));
    result.clear();
  } else {
    result = to_bytes(std::apply(F, std::move(a)));
  }
}

// register_remote() records `name` -> F. A name registered twice makes the
// registry invalid: coop::init, a VM's constructor, and a Scheduler given a VM
// throw.
COS_API bool register_remote(const char* name, Invoker invoker, const void* address,
                             const char* file, int line);
// remote_name() is the registered name of a function, or nullptr.
COS_API const std::string* remote_name(const void* address);
// check_registry() throws coop::Error when a name was registered twice.
COS_API void check_registry();
// execute() runs a call in this process, as a slot does, and reports the
// outcome as a `result` message (ok with the value, or the error).
COS_API Message execute(const Call& call);
// unregistered() throws coop::NotRegistered for a function that is not.
[[noreturn]] COS_API void unregistered(const void* address, const std::type_info& type);

// has_vm() says whether the calling task's scheduler has a VM (false outside one).
COS_API bool has_vm();
// spawn_remote() starts or queues `call` on the calling task's scheduler's VM;
// the ref is invalid when a non-blocking, non-queued spawn found no free slot.
COS_API TaskRef spawn_remote(const Spawn& options, Call&& call, DecodeFn decode);
[[noreturn]] COS_API void not_remotable();

template <auto F> struct Registrar {
  using Fn = decltype(F);
  static_assert(std::is_pointer_v<Fn> && std::is_function_v<std::remove_pointer_t<Fn>>,
                "COS_REMOTE(fn): fn must name a function at namespace scope (not a lambda or member)");
  static_assert(AllSerializable<typename FnTraits<Fn>::args>::value,
                "COS_REMOTE(fn): every parameter type of fn must be serializable by cereal "
                "(add a `template <class Archive> void serialize(Archive&)` member to your types)");
  static_assert(serializable<typename FnTraits<Fn>::result>,
                "COS_REMOTE(fn): the return type of fn must be serializable by cereal "
                "(add a `template <class Archive> void serialize(Archive&)` member to your type)");
  static bool add(const char* name, const char* file, int line) {
    return register_remote(name, &invoke<F>, reinterpret_cast<const void*>(F), file, line);
  }
};

}  // namespace coop::detail

#define COS_REMOTE_CAT2(a, b) a##b
#define COS_REMOTE_CAT(a, b) COS_REMOTE_CAT2(a, b)

// COS_REMOTE(fn) registers the function `fn` under the name "fn" so that any
// process of this program can run it on a slot. Use it at namespace scope,
// once per function; argument and result types must be serializable by
// cereal. Registering two functions under one name is an error at start-up.
#define COS_REMOTE(fn)                                                       \
  [[maybe_unused]] static const bool COS_REMOTE_CAT(cos_remote_, __COUNTER__) = \
      ::coop::detail::Registrar<&fn>::add(#fn, __FILE__, __LINE__)

namespace coop {

// spawn(opt, f, args...) spawns with options. With opt.remote and a VM, the
// call is serialized and runs on a slot: f must be a function registered with
// COS_REMOTE (coop::NotRegistered otherwise), and a blocking spawn yields
// until a slot is free. Without a VM a remote spawn runs locally, as in
// PyOPUS. With opt.remote false it is a local spawn of any callable (a lambda
// too). A lambda or function object with opt.remote true is a coop::Error,
// with or without a VM, since it could never leave this process. Only tasks
// of a scheduler may call it; returns the child's Task<R>.
template <class F, class... A> auto spawn(Spawn opt, F&& f, A&&... args) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn, std::decay_t<A>...>,
                "coop::spawn: the function cannot be called with these arguments");
  if constexpr (std::is_pointer_v<Fn> && std::is_function_v<std::remove_pointer_t<Fn>>) {
    using T = detail::FnTraits<Fn>;
    using R = typename T::result;
    if (!opt.remote || !detail::has_vm()) {
      return detail::spawn_local(std::forward<F>(f), std::forward<A>(args)...);
    }
    static_assert(std::is_constructible_v<typename T::args, A&&...>,
                  "coop::spawn: the arguments do not convert to the function's parameter types");
    Fn fn = f;
    const std::string* name = detail::remote_name(reinterpret_cast<const void*>(fn));
    if (!name) detail::unregistered(reinterpret_cast<const void*>(fn), typeid(Fn));
    Call call{*name, detail::to_bytes(typename T::args(std::forward<A>(args)...))};
    return Task<R>(detail::spawn_remote(opt, std::move(call), &detail::decode<R>));
  } else {
    if (opt.remote) detail::not_remotable();
    return detail::spawn_local(std::forward<F>(f), std::forward<A>(args)...);
  }
}

}  // namespace coop
