// journal.cpp: reading and appending the dispatch journal (see
// cos/detail/journal.hpp for the format and what it promises).
#include <cos/detail/journal.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cos/errors.hpp>

#include "posix/fd.hpp"

namespace coop::detail {
namespace {

constexpr std::string_view header = "cos dispatch journal 1\n";
constexpr std::string_view record_magic = "CJR1";
// A body is 28 fixed bytes, then the host and the value; this bounds a
// length that a corrupt file could claim.
constexpr std::uint32_t max_body = 1u << 30;

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

template <class T> void put(std::string& out, T v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

// Reader takes fixed-size fields and strings out of a body, checking bounds.
struct Reader {
  std::string_view in;
  bool ok = true;
  template <class T> T get() {
    T v{};
    if (in.size() < sizeof v) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data(), sizeof v);
    in.remove_prefix(sizeof v);
    return v;
  }
  std::string bytes(std::uint64_t n) {
    if (in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

std::string where(const std::filesystem::path& path) { return "coop::dispatch: journal '" + path.string() + "'"; }

}  // namespace

std::uint64_t call_digest(const Call& call) {
  std::uint64_t h = fnv1a(call.function);
  h = fnv1a(std::string_view("\0", 1), h);
  return fnv1a(call.args, h);
}

Journal::Journal(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(posix::errno_text((where(path) + ": open").c_str()));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    posix::close_fd(fd_);
    if (e == EWOULDBLOCK) throw Error(where(path) + " is in use by another dispatch");
    errno = e;
    throw Error(posix::errno_text((where(path) + ": flock").c_str()));
  }
  try {
    read_existing();
  } catch (...) {
    posix::close_fd(fd_);
    throw;
  }
}

Journal::~Journal() { posix::close_fd(fd_); }

// read_existing() reads the file, keeps its whole records, and leaves the
// file ending after the last of them, with the header written if it was
// missing or cut short.
void Journal::read_existing() {
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(posix::errno_text((where(path_) + ": read").c_str()));
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  std::size_t keep = 0;  // bytes that are whole: the header and whole records
  if (text.size() < header.size() && header.substr(0, text.size()) == text) {
    // Empty, or a header cut short: start afresh.
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0 || !posix::write_all(fd_, header)) {
      throw Error(posix::errno_text((where(path_) + ": write").c_str()));
    }
    return;
  }
  if (text.compare(0, header.size(), header) != 0) {
    throw Error(where(path_) + " is not a cos dispatch journal (its first line is not '" +
                std::string(header.substr(0, header.size() - 1)) + "')");
  }
  std::size_t pos = header.size();
  keep = pos;
  while (pos < text.size()) {
    std::string_view rest(text.data() + pos, text.size() - pos);
    if (rest.size() >= record_magic.size() && rest.substr(0, record_magic.size()) != record_magic) {
      throw Error(where(path_) + " is corrupt at byte " + std::to_string(pos) + " (no record starts there)");
    }
    Reader head{rest.size() >= 8 ? rest.substr(4) : std::string_view{}};
    std::uint32_t len = head.get<std::uint32_t>();
    if (!head.ok) break;  // cut short inside the record's head
    if (len > max_body) throw Error(where(path_) + " is corrupt at byte " + std::to_string(pos) + " (a record's length)");
    std::size_t total = 8 + std::size_t{len} + 8;
    if (rest.size() < total) break;  // cut short
    std::string_view body = rest.substr(8, len);
    std::uint64_t sum = 0;
    std::memcpy(&sum, rest.data() + 8 + len, sizeof sum);
    bool last = pos + total == text.size();
    if (sum != fnv1a(body)) {
      if (last) break;  // the record being written when the process died
      throw Error(where(path_) + " is corrupt at byte " + std::to_string(pos) + " (a record's checksum)");
    }
    Reader r{body};
    JournalRecord rec;
    rec.index = static_cast<std::size_t>(r.get<std::uint64_t>());
    rec.digest = r.get<std::uint64_t>();
    rec.run_ns = r.get<std::int64_t>();
    rec.host = r.bytes(r.get<std::uint32_t>());
    rec.value = r.bytes(r.get<std::uint64_t>());
    if (!r.ok || !r.in.empty()) {
      throw Error(where(path_) + " is corrupt at byte " + std::to_string(pos) + " (a record's fields)");
    }
    records_[rec.index] = std::move(rec);
    pos += total;
    keep = pos;
  }
  if (keep < text.size() && ::ftruncate(fd_, static_cast<off_t>(keep)) != 0) {
    throw Error(posix::errno_text((where(path_) + ": ftruncate").c_str()));
  }
  if (::lseek(fd_, static_cast<off_t>(keep), SEEK_SET) < 0) {
    throw Error(posix::errno_text((where(path_) + ": lseek").c_str()));
  }
}

void Journal::append(const JournalRecord& rec) {
  std::string body;
  put<std::uint64_t>(body, rec.index);
  put<std::uint64_t>(body, rec.digest);
  put<std::int64_t>(body, rec.run_ns);
  put<std::uint32_t>(body, static_cast<std::uint32_t>(rec.host.size()));
  body += rec.host;
  put<std::uint64_t>(body, rec.value.size());
  body += rec.value;
  if (body.size() > max_body) throw Error(where(path_) + ": a result of over 1 GiB cannot be journaled");
  std::string out(record_magic);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(body.size()));
  out += body;
  put<std::uint64_t>(out, fnv1a(body));
  if (!posix::write_all(fd_, out)) throw Error(posix::errno_text((where(path_) + ": write").c_str()));
}

}  // namespace coop::detail
