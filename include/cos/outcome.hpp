// outcome.hpp: Outcome<R>, a value or the exception that took its place.
#pragma once

#include <exception>
#include <utility>
#include <variant>

#include <cos/errors.hpp>

namespace coop {

// Outcome<R> is what a job produced: its value, or the exception it threw.
// get() returns the value or rethrows (with the original type for local jobs,
// as coop::RemoteError for remote ones).
template <class R> class Outcome {
 public:
  Outcome() = default;
  static Outcome value(R v) {
    Outcome o;
    o.v_.template emplace<1>(std::move(v));
    return o;
  }
  static Outcome failure(std::exception_ptr e) {
    Outcome o;
    o.v_.template emplace<2>(std::move(e));
    return o;
  }
  bool ok() const { return v_.index() == 1; }
  explicit operator bool() const { return ok(); }
  // error() is the exception, or nullptr when there is a value.
  std::exception_ptr error() const { return v_.index() == 2 ? std::get<2>(v_) : nullptr; }
  R& get() & {
    check();
    return std::get<1>(v_);
  }
  const R& get() const& {
    check();
    return std::get<1>(v_);
  }
  R&& get() && {
    check();
    return std::get<1>(std::move(v_));
  }

 private:
  void check() const {
    if (v_.index() == 2) std::rethrow_exception(std::get<2>(v_));
    if (v_.index() == 0) throw Error("coop::Outcome: empty");
  }
  std::variant<std::monostate, R, std::exception_ptr> v_;
};

template <> class Outcome<void> {
 public:
  static Outcome value() {
    Outcome o;
    o.done_ = true;
    return o;
  }
  static Outcome failure(std::exception_ptr e) {
    Outcome o;
    o.done_ = true;
    o.error_ = std::move(e);
    return o;
  }
  bool ok() const { return done_ && !error_; }
  explicit operator bool() const { return ok(); }
  std::exception_ptr error() const { return error_; }
  void get() const {
    if (error_) std::rethrow_exception(error_);
    if (!done_) throw Error("coop::Outcome: empty");
  }

 private:
  bool done_ = false;
  std::exception_ptr error_;
};

}  // namespace coop
