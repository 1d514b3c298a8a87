// remote.hpp: COS_REMOTE, the registry of functions that may run remotely.
#pragma once

#include <cstddef>
#include <istream>
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

#include <cos/detail/value_box.hpp>
#include <cos/export.hpp>
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

template <class T> std::string to_bytes(const T& value) {
  std::string out;
  StringSink sink(out);
  std::ostream os(&sink);
  {
    cereal::BinaryOutputArchive ar(os);
    ar(value);
  }
  return out;
}

template <class T> void from_bytes(const std::string& bytes, T& value) {
  StringSource source(bytes);
  std::istream is(&source);
  cereal::BinaryInputArchive ar(is);
  ar(value);
}

// decode<R> turns a serialized result into a task's value.
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
