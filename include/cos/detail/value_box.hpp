// value_box.hpp: the type-erased outcome of a task: a value of any movable
// type, or the exception the task threw. Private to cos.
#pragma once

#include <cstddef>
#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <cos/export.hpp>
#include <cos/ids.hpp>

namespace coop::detail {

// ValueBox holds what a task produced. Small values that move without
// throwing live inline (no allocation for the common case); others on the heap.
class COS_API ValueBox {
 public:
  ValueBox() = default;
  ValueBox(ValueBox&& other) noexcept { steal(other); }
  ValueBox& operator=(ValueBox&& other) noexcept {
    if (this != &other) {
      reset();
      steal(other);
    }
    return *this;
  }
  ~ValueBox() { reset(); }

  template <class T, class... A> void emplace(A&&... args) {
    reset();
    if constexpr (!std::is_void_v<T>) {
      if constexpr (fits_inline<T>) {
        ::new (static_cast<void*>(buf_)) T(std::forward<A>(args)...);
      } else {
        *reinterpret_cast<T**>(buf_) = new T(std::forward<A>(args)...);
      }
    }
    ops_ = &ops_for<T>;
    state_ = State::value;
  }
  void set_error(std::exception_ptr e) noexcept {
    reset();
    error_ = std::move(e);
    state_ = State::error;
  }

  void clear() noexcept {
    if (state_ != State::empty) reset();
  }

  bool has_value() const { return state_ == State::value; }
  bool has_error() const { return state_ == State::error; }
  const std::exception_ptr& error() const { return error_; }

  // peek<T>() is the value, left in place, or nullptr when there is none of
  // that type (an error, or taken).
  template <class T> const T* peek() const {
    if (state_ != State::value || (ops_ != &ops_for<T> && ops_->type != typeid(T))) return nullptr;
    return fits_inline<T> ? std::launder(reinterpret_cast<const T*>(buf_)) : *reinterpret_cast<T* const*>(buf_);
  }

  // take<T>(tid) moves the value out, rethrows the task's exception, or throws
  // coop::Error when T is not the type the task returned or it was taken.
  template <class T> T take(Tid tid) {
    if (state_ == State::error) {
      state_ = State::taken;
      std::rethrow_exception(std::exchange(error_, nullptr));
    }
    check<T>(tid);
    state_ = State::taken;
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      T* p = fits_inline<T> ? std::launder(reinterpret_cast<T*>(buf_))
                            : *reinterpret_cast<T**>(buf_);
      T out(std::move(*p));
      destroy_value();
      return out;
    }
  }

 private:
  static constexpr std::size_t inline_size = 32;
  template <class T>
  static constexpr bool fits_inline =
      sizeof(T) <= inline_size && alignof(T) <= alignof(std::max_align_t) &&
      std::is_nothrow_move_constructible_v<T>;

  struct Ops {
    void (*destroy)(void* buf);
    void (*move)(void* dst, void* src);  // move-constructs dst from src, destroys src
    const std::type_info& type;
  };
  template <class T> static void destroy_fn(void* buf) {
    if constexpr (!std::is_void_v<T>) {
      if constexpr (fits_inline<T>) {
        std::launder(reinterpret_cast<T*>(buf))->~T();
      } else {
        delete *reinterpret_cast<T**>(buf);
      }
    }
  }
  template <class T> static void move_fn(void* dst, void* src) {
    if constexpr (!std::is_void_v<T>) {
      if constexpr (fits_inline<T>) {
        T* s = std::launder(reinterpret_cast<T*>(src));
        ::new (dst) T(std::move(*s));
        s->~T();
      } else {
        *reinterpret_cast<T**>(dst) = *reinterpret_cast<T**>(src);
      }
    }
  }
  template <class T>
  static constexpr Ops ops_for{&destroy_fn<T>, &move_fn<T>, typeid(T)};

  template <class T> void check(Tid tid) const {
    if (state_ != State::value) throw_taken(tid);
    if (ops_ != &ops_for<T> && ops_->type != typeid(T)) throw_type(tid, typeid(T));
  }
  [[noreturn]] void throw_taken(Tid tid) const;
  [[noreturn]] void throw_type(Tid tid, const std::type_info& wanted) const;

  void destroy_value() noexcept {
    ops_->destroy(buf_);
    ops_ = nullptr;
  }
  void reset() noexcept {
    if (state_ == State::value) destroy_value();
    if (state_ == State::error) error_ = nullptr;
    state_ = State::empty;
  }
  void steal(ValueBox& other) noexcept {
    state_ = other.state_;
    if (state_ == State::error) error_ = std::move(other.error_);
    ops_ = other.ops_;
    if (state_ == State::value) other.ops_->move(buf_, other.buf_);
    other.ops_ = nullptr;
    other.state_ = State::empty;
  }

  enum class State : unsigned char { empty, value, error, taken };
  alignas(std::max_align_t) unsigned char buf_[inline_size];
  const Ops* ops_ = nullptr;
  std::exception_ptr error_;
  State state_ = State::empty;
};

}  // namespace coop::detail
