#include <cos/errors.hpp>

namespace coop {

namespace {
// A plain name can be quoted in the fix; an address cannot.
bool is_name(const std::string& s) {
  return !s.empty() && s.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:") ==
                           std::string::npos;
}
}  // namespace

NotRegistered::NotRegistered(std::string function)
    : Error(is_name(function)
                ? "coop: function '" + function + "' is not registered for remote calls (add COS_REMOTE(" +
                      function + ") at namespace scope, in every program that runs it)"
                : "coop: the function " + function +
                      " is not registered for remote calls (add COS_REMOTE(its name) at namespace scope)"),
      function_(std::move(function)) {}

namespace {
std::string remote_what(const std::string& type, const std::string& message,
                        const std::optional<HostId>& host) {
  std::string s = type + ": " + message;
  if (host) s += " (on host " + host->name() + ")";
  return s;
}
}  // namespace

RemoteError::RemoteError(std::string type, std::string message, std::optional<HostId> host)
    : Error(remote_what(type, message, host)),
      type_(std::move(type)),
      message_(std::move(message)),
      host_(std::move(host)) {}

}  // namespace coop
