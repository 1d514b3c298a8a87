#include "backends/process/frame.hpp"

#include <cerrno>
#include <cstring>

namespace coop::detail {
namespace {

struct Header {
  std::uint32_t magic;
  std::uint32_t kind;
  std::uint64_t length;
};
static_assert(sizeof(Header) == frame_header_size);

bool known_kind(std::uint32_t kind) {
  switch (static_cast<FrameKind>(kind)) {
    case FrameKind::hello:
    case FrameKind::call:
    case FrameKind::result:
    case FrameKind::post:
    case FrameKind::deliver:
    case FrameKind::queue:
    case FrameKind::withdraw:
    case FrameKind::started:
    case FrameKind::withdrawn:
    case FrameKind::open:
    case FrameKind::opened:
    case FrameKind::cancel:
    case FrameKind::report:
    case FrameKind::release:
    case FrameKind::released:
    case FrameKind::stop:
      return true;
  }
  return false;
}

// Writer builds a payload in one allocation of `size` bytes (what the
// caller adds up), after room for a frame header when it is to be a whole
// frame (framed(), which fills the header in: no second copy).
class Writer {
 public:
  explicit Writer(std::size_t size = 0, bool with_header = false) {
    out_.reserve(size + (with_header ? frame_header_size : 0));
    if (with_header) out_.resize(frame_header_size);
    header_ = with_header;
  }
  template <class T> void num(T v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void bytes(std::string_view s) {
    num<std::uint64_t>(s.size());
    out_.append(s);
  }
  // open_bytes() begins bytes() whose content the caller appends next (no
  // string of its own); close_bytes() writes their length in front.
  std::size_t open_bytes() {
    num<std::uint64_t>(0);
    return out_.size();
  }
  void close_bytes(std::size_t from) {
    const std::uint64_t n = out_.size() - from;
    std::memcpy(out_.data() + from - sizeof n, &n, sizeof n);
  }
  std::string take() { return std::move(out_); }
  std::string framed(FrameKind kind);

 private:
  std::string out_;
  bool header_ = false;
};

// Reader reads what Writer wrote and refuses to read past the end, so a
// corrupt length is an error, never an allocation.
class Reader {
 public:
  Reader(std::string_view in, const char* what) : in_(in), what_(what) {}
  template <class T> T num() {
    T v;
    need(sizeof v);
    std::memcpy(&v, in_.data(), sizeof v);
    in_.remove_prefix(sizeof v);
    return v;
  }
  std::string bytes() { return std::string(view()); }
  // view() is bytes() without a copy: it points into the input.
  std::string_view view() {
    auto n = num<std::uint64_t>();
    need(n);
    std::string_view s = in_.substr(0, n);
    in_.remove_prefix(n);
    return s;
  }
  // at() is how much of `whole` (the input this reader began with) is read.
  std::size_t at(std::string_view whole) const { return static_cast<std::size_t>(in_.data() - whole.data()); }
  void done() const {
    if (!in_.empty()) fail(std::to_string(in_.size()) + " bytes left over");
  }
  bool empty() const { return in_.empty(); }

 private:
  void need(std::uint64_t n) const {
    if (n > in_.size()) fail("truncated");
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw FrameError(std::string("coop: corrupt ") + what_ + " frame (" + why + ")");
  }
  std::string_view in_;
  const char* what_;
};

std::int64_t ticks(clock::time_point t) { return t.time_since_epoch().count(); }
clock::time_point at(std::int64_t ticks) { return clock::time_point(clock::duration(ticks)); }

}  // namespace

namespace {

void check_size(std::size_t payload) {
  if (payload > max_frame_payload) {
    throw FrameError("coop: a message of " + std::to_string(payload) + " bytes is larger than the limit of " +
                     std::to_string(max_frame_payload) + " bytes between processes");
  }
}

}  // namespace

std::string Writer::framed(FrameKind kind) {
  const std::size_t payload = out_.size() - frame_header_size;
  check_size(payload);
  Header h{frame_magic, static_cast<std::uint32_t>(kind), payload};
  std::memcpy(out_.data(), &h, sizeof h);
  return std::move(out_);
}

std::string encode_frame(FrameKind kind, std::string_view payload) {
  check_size(payload.size());
  Header h{frame_magic, static_cast<std::uint32_t>(kind), payload.size()};
  std::string out;
  out.reserve(sizeof h + payload.size());
  out.append(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(payload);
  return out;
}

void FrameReader::compact() {
  if (pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  } else if (pos_ > (1u << 16) && pos_ > buffer_.size() / 2) {
    // Drop consumed bytes once they dominate, so a long stream does not grow the buffer.
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
}

void FrameReader::feed(const char* data, std::size_t size) {
  compact();
  buffer_.append(data, size);
}

std::optional<FrameView> FrameReader::next_view() {
  compact();
  if (buffered() < frame_header_size) return std::nullopt;
  Header h;
  std::memcpy(&h, buffer_.data() + pos_, sizeof h);
  if (h.magic != frame_magic) {
    throw FrameError("coop: corrupt frame (bad magic number; not a cos worker protocol stream)");
  }
  if (!known_kind(h.kind)) {
    throw FrameError("coop: corrupt frame (unknown message kind " + std::to_string(h.kind) + ")");
  }
  if (h.length > max_payload_) {
    throw FrameError("coop: corrupt or oversized frame (" + std::to_string(h.length) +
                     " bytes, the limit is " + std::to_string(max_payload_) + ")");
  }
  if (buffered() - frame_header_size < h.length) return std::nullopt;
  FrameView f{static_cast<FrameKind>(h.kind),
              std::string_view(buffer_.data() + pos_ + frame_header_size, static_cast<std::size_t>(h.length))};
  pos_ += frame_header_size + h.length;
  return f;
}

std::optional<Frame> FrameReader::next() {
  std::optional<FrameView> v = next_view();
  if (!v) return std::nullopt;
  return Frame{v->kind, std::string(v->payload)};
}

std::string encode_hello(std::int64_t pid) {
  Writer w;
  w.num(pid);
  return w.take();
}

std::int64_t decode_hello(std::string_view payload) {
  Reader r(payload, "hello");
  auto pid = r.num<std::int64_t>();
  r.done();
  return pid;
}

namespace {

// The payload of a call frame: the task id, then each field as its length
// and its bytes (decode_call() reads them back).
std::size_t call_payload_size(const Call& call, std::string_view host) {
  return 5 * 8 + call.function.size() + call.args.size() + call.mirrors.size() + host.size();
}

void append_call_payload(std::string& out, std::uint64_t task, const Call& call, std::string_view host) {
  auto num = [&out](std::uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  num(task);
  for (std::string_view field : {std::string_view(call.function), std::string_view(call.args),
                                 std::string_view(call.mirrors), host}) {
    num(field.size());
    out.append(field);
  }
}


std::size_t result_size(const Message& m) { return 8 + 1 + 2 * 8 + m.payload.size() + m.error_type.size() + 2 * 8; }

void write_result(Writer& w, std::uint64_t task, const Message& m) {
  w.num(task);
  // A producer that set only `ok` still sends a consistent pair.
  Message::Failure failure = m.ok ? Message::Failure::none
                             : m.failure == Message::Failure::none ? Message::Failure::exception
                                                                   : m.failure;
  w.num<std::uint8_t>(static_cast<std::uint8_t>(failure));
  w.bytes(m.payload);
  w.bytes(m.error_type);
  w.num<std::int64_t>(ticks(m.started));
  w.num<std::int64_t>(ticks(m.completed));
}

Writer result_writer(std::uint64_t task, const Message& m, bool with_header) {
  Writer w(result_size(m), with_header);
  write_result(w, task, m);
  return w;
}

// A report: its kind, the result fields (as bytes), output and reason.
std::size_t report_size(const Message& m) { return 1 + 8 + result_size(m) + 8 + m.output.size() + 8 + m.reason.size(); }

void write_report(Writer& w, const Message& m) {
  w.num<std::uint8_t>(static_cast<std::uint8_t>(m.kind));
  const std::size_t result = w.open_bytes();
  write_result(w, m.task.value(), m);
  w.close_bytes(result);
  w.bytes(m.output);
  w.bytes(m.reason);
}

Message read_report(std::string_view payload) {
  Reader r(payload, "report");
  auto kind = r.num<std::uint8_t>();
  if (kind > static_cast<std::uint8_t>(Message::Kind::withdrawn)) {
    throw FrameError("coop: corrupt report frame (unknown message kind " + std::to_string(kind) + ")");
  }
  Message m;
  std::uint64_t task = 0;
  decode_result(r.view(), task, m);
  m.kind = static_cast<Message::Kind>(kind);
  m.task = TaskId(task);
  m.output = r.bytes();
  m.reason = r.bytes();
  r.done();
  return m;
}

}  // namespace

std::string encode_call(std::uint64_t task, const Call& call, std::string_view host) {
  std::string out;
  out.reserve(call_payload_size(call, host));
  append_call_payload(out, task, call, host);
  return out;
}

void append_call_frame(std::string& out, FrameKind kind, std::uint64_t task, const Call& call, std::string_view host) {
  const std::size_t payload = call_payload_size(call, host);
  check_size(payload);
  const Header h{frame_magic, static_cast<std::uint32_t>(kind), payload};
  out.append(reinterpret_cast<const char*>(&h), sizeof h);
  append_call_payload(out, task, call, host);
}

void decode_call(std::string_view payload, std::uint64_t& task, Call& call, std::string* host) {
  Reader r(payload, "call");
  task = r.num<std::uint64_t>();
  call.function = r.bytes();
  call.args = r.bytes();
  call.mirrors = r.bytes();
  std::string h = r.bytes();
  if (host) *host = std::move(h);
  r.done();
}

std::size_t append_queued_call(std::string& out, std::uint64_t task, const Call& call) {
  const std::uint64_t payload = call_payload_size(call, {});
  check_size(payload);
  out.append(reinterpret_cast<const char*>(&payload), sizeof payload);
  append_call_payload(out, task, call, {});
  return sizeof payload + payload;
}

std::size_t queued_call_size(const Call& call) { return sizeof(std::uint64_t) + call_payload_size(call, {}); }

std::size_t decode_queued_call(std::string_view payload, std::size_t at, std::uint64_t& task, Call& call) {
  std::uint64_t length = 0;
  if (at > payload.size() || payload.size() - at < sizeof length) {
    throw FrameError("coop: corrupt queue frame (no call at byte " + std::to_string(at) + ")");
  }
  std::memcpy(&length, payload.data() + at, sizeof length);
  at += sizeof length;
  if (payload.size() - at < length) throw FrameError("coop: corrupt queue frame (a call longer than the frame)");
  decode_call(payload.substr(at, static_cast<std::size_t>(length)), task, call);
  return at + static_cast<std::size_t>(length);
}

std::string encode_task_bytes(std::uint64_t task, std::string_view bytes) {
  Writer w;
  w.num(task);
  w.bytes(bytes);
  return w.take();
}

void decode_task_bytes(std::string_view payload, std::uint64_t& task, std::string& bytes) {
  Reader r(payload, "post or deliver");
  task = r.num<std::uint64_t>();
  bytes = r.bytes();
  r.done();
}

std::string encode_result(std::uint64_t task, const Message& m) { return result_writer(task, m, false).take(); }

std::string encode_result_frame(std::uint64_t task, const Message& m) {
  return result_writer(task, m, true).framed(FrameKind::result);
}

void decode_result(std::string_view payload, std::uint64_t& task, Message& m) {
  Reader r(payload, "result");
  task = r.num<std::uint64_t>();
  auto failure = r.num<std::uint8_t>();
  if (failure > static_cast<std::uint8_t>(Message::Failure::not_registered)) {
    throw FrameError("coop: corrupt result frame (unknown failure kind " + std::to_string(failure) + ")");
  }
  m.failure = static_cast<Message::Failure>(failure);
  m.ok = m.failure == Message::Failure::none;
  m.payload = r.bytes();
  m.error_type = r.bytes();
  m.started = at(r.num<std::int64_t>());
  m.completed = at(r.num<std::int64_t>());
  r.done();
}

std::string encode_report(const Message& m) {
  Writer w(report_size(m));
  write_report(w, m);
  return w.take();
}

Message decode_report(std::string_view payload) { return read_report(payload); }

std::string encode_reports(const std::vector<Message>& messages) {
  std::size_t size = 0;
  for (const Message& m : messages) size += 8 + report_size(m);
  Writer w(size);
  for (const Message& m : messages) {
    const std::size_t report = w.open_bytes();
    write_report(w, m);
    w.close_bytes(report);
  }
  return w.take();
}

std::size_t decode_next_report(std::string_view payload, std::size_t at, Message& out) {
  if (at > payload.size()) throw FrameError("coop: corrupt report frame (no message at byte " + std::to_string(at) + ")");
  Reader r(payload.substr(at), "report");
  out = read_report(r.view());
  return at + r.at(payload.substr(at));
}

std::vector<Message> decode_reports(std::string_view payload) {
  std::vector<Message> out;
  for (std::size_t at = 0; at < payload.size();) at = decode_next_report(payload, at, out.emplace_back());
  if (out.empty()) throw FrameError("coop: corrupt report frame (no message)");
  return out;
}

std::string encode_started(std::uint64_t task, clock::time_point started, const process::OutputCut& cut) {
  Writer w;
  w.num(task);
  w.num<std::int64_t>(ticks(started));
  w.num(cut.at[0]);
  w.num(cut.at[1]);
  return w.take();
}

void decode_started(std::string_view payload, std::uint64_t& task, clock::time_point& started,
                    process::OutputCut& cut) {
  Reader r(payload, "started");
  task = r.num<std::uint64_t>();
  started = at(r.num<std::int64_t>());
  cut.at[0] = r.num<std::uint64_t>();
  cut.at[1] = r.num<std::uint64_t>();
  r.done();
}

std::string encode_task(std::uint64_t task) {
  Writer w;
  w.num(task);
  return w.take();
}

std::uint64_t decode_task(std::string_view payload) {
  Reader r(payload, "task");
  auto task = r.num<std::uint64_t>();
  r.done();
  return task;
}

}  // namespace coop::detail
