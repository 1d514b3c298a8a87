// errors.hpp: every error cos throws derives from coop::Error.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <cos/export.hpp>
#include <cos/ids.hpp>

namespace coop {

// Error is a misuse or failure that cos reports (bad arguments, joining what
// is not yours, calls outside a scheduler, ...).
class COS_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// NotRegistered: a remote call named a function that no COS_REMOTE registered.
class COS_API NotRegistered : public Error {
 public:
  explicit NotRegistered(std::string function);
  const std::string& function() const { return function_; }

 private:
  std::string function_;
};

// RemoteError: a remote task threw. It carries the original exception's type
// name and message, and the host it ran on.
class COS_API RemoteError : public Error {
 public:
  RemoteError(std::string type, std::string message, std::optional<HostId> host);
  const std::string& type() const { return type_; }
  const std::string& message() const { return message_; }
  const std::optional<HostId>& host() const { return host_; }

 private:
  std::string type_;
  std::string message_;
  std::optional<HostId> host_;
};

// WorkerLost: the slot running a task died (after every allowed retry).
class COS_API WorkerLost : public Error {
 public:
  using Error::Error;
};

// Timeout: a remote task ran past its Spawn::timeout and was stopped.
class COS_API Timeout : public Error {
 public:
  using Error::Error;
};

// Cancelled: a task was cancelled before it produced a result.
class COS_API Cancelled : public Error {
 public:
  using Error::Error;
};

}  // namespace coop
