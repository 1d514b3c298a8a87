// frame.hpp: the framed protocol between a ProcessVM and its worker processes.
//
// A frame is a 16-byte header (magic "COS1", kind, payload length, all in the
// machine's byte order: both ends are the same program on the same machine)
// followed by the payload. Payloads are encoded by hand with bounds checks
// rather than with cereal, so that a corrupt length can never make a reader
// allocate more than the frame it already holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cos/errors.hpp>
#include <cos/vm.hpp>

#include "backends/process/output_counts.hpp"

namespace coop::detail {

enum class FrameKind : std::uint32_t {
  hello = 1,   // worker -> spawner: ready to serve (payload: its pid)
  call = 2,    // spawner -> worker: run this call (task id, Call)
  result = 3,  // worker -> spawner: the call's outcome (task id, result fields)
  post = 4,     // worker -> spawner: the running task posts bytes (task id, bytes)
  deliver = 5,  // spawner -> worker: bytes for the running task (task id, bytes)
  // Pipelining (VM::queue): a worker may hold calls that start after the
  // one it runs.
  queue = 6,      // spawner -> worker: run this call after the ones before it (as `call`)
  withdraw = 7,   // spawner -> worker: drop this queued call if it has not begun (task id)
  started = 8,    // worker -> spawner: a queued call began (task id, start time)
  withdrawn = 9,  // worker -> spawner: a queued call was dropped, never run (task id)
  // Between MpiVM's rank 0 and its serving ranks (src/backends/mpi/), one
  // frame per MPI message; `call` above carries the calls, `queue` the
  // calls queued behind a rank's running task, `withdraw` takes one back
  // (the rank answers with reports: started and withdrawn are Message kinds),
  // and `cancel` also names a queued call.
  open = 10,      // rank 0 -> rank: a session begins (payload: isolate, one byte)
  opened = 11,    // rank -> rank 0: ready for calls (payload: empty, or why it is not)
  cancel = 12,    // rank 0 -> rank: stop this task if it still runs (task id)
  report = 13,    // rank -> rank 0: what its tasks did (whole Messages, encode_reports)
  release = 14,   // rank 0 -> rank: the session ends: stop any task, then confirm
  released = 15,  // rank -> rank 0: nothing of the session is left on this rank
  stop = 16,      // rank 0 -> rank: the program ends: exit
};

inline constexpr std::uint32_t frame_magic = 0x31534f43;  // "COS1" in little endian
inline constexpr std::size_t frame_header_size = 16;
// max_frame_payload bounds one frame: a larger length is taken for corruption.
inline constexpr std::uint64_t max_frame_payload = std::uint64_t{256} << 20;

// FrameError: bytes that are not a valid frame (bad magic, unknown kind,
// oversized length, a payload that does not decode).
class FrameError : public Error {
 public:
  using Error::Error;
};

struct Frame {
  FrameKind kind = FrameKind::hello;
  std::string payload{};
};

// FrameView is a frame whose payload stays in its FrameReader's buffer.
struct FrameView {
  FrameKind kind = FrameKind::hello;
  std::string_view payload{};
};

// encode_frame() is the header followed by the payload; throws FrameError when
// the payload is larger than max_frame_payload.
std::string encode_frame(FrameKind kind, std::string_view payload);

// FrameReader cuts a byte stream into frames. Feed it whatever read()
// returned; next() returns each complete frame once. It checks a header as
// soon as its 16 bytes are in, so garbage is rejected before its payload is
// awaited or stored.
class FrameReader {
 public:
  explicit FrameReader(std::uint64_t max_payload = max_frame_payload) : max_payload_(max_payload) {}
  void feed(const char* data, std::size_t size);
  // next() is the next complete frame, or nullopt; throws FrameError on a bad header.
  std::optional<Frame> next();
  // next_view() is next() without a copy of the payload: the view holds
  // until the next call of feed(), next() or next_view().
  std::optional<FrameView> next_view();
  // buffered() counts bytes held that do not yet form a frame.
  std::size_t buffered() const { return buffer_.size() - pos_; }

 private:
  void compact();  // drops what the last frame handed out consumed
  std::string buffer_;
  std::size_t pos_ = 0;
  std::uint64_t max_payload_;
};

// The payloads. decode_* throw FrameError when the bytes do not decode exactly.
std::string encode_hello(std::int64_t pid);
std::int64_t decode_hello(std::string_view payload);

// A call frame also names the slot's host, for coop::this_host() in the task.
std::string encode_call(std::uint64_t task, const Call& call, std::string_view host = {});
void decode_call(std::string_view payload, std::uint64_t& task, Call& call, std::string* host = nullptr);
// append_call_frame() appends encode_frame(kind, encode_call(...)) to `out`
// (kind: call or queue) without a string of its own: a slot's bytes to send.
void append_call_frame(std::string& out, FrameKind kind, std::uint64_t task, const Call& call, std::string_view host);

// Between MpiVM's ranks a `queue` frame holds one or more calls, in order,
// each as its length and its call payload (encode_call, no host): rank 0
// sends every call it queued on a rank since it last waited in one MPI
// message. append_queued_call() appends one and returns the bytes it added
// (throws FrameError, adding nothing, for a call larger than
// max_frame_payload); decode_queued_call() decodes the one at `at` and
// returns where the next begins.
// queued_call_size() is what append_queued_call() would add.
std::size_t append_queued_call(std::string& out, std::uint64_t task, const Call& call);
std::size_t queued_call_size(const Call& call);
std::size_t decode_queued_call(std::string_view payload, std::size_t at, std::uint64_t& task, Call& call);

// post and deliver frames: a task id and bytes.
std::string encode_task_bytes(std::uint64_t task, std::string_view bytes);
void decode_task_bytes(std::string_view payload, std::uint64_t& task, std::string& bytes);

// A result frame carries the fields a worker knows: failure (one byte, the
// Message::Failure value; `ok` is derived from it), payload, error_type,
// started, completed. The spawner adds the task, host and output.
std::string encode_result(std::uint64_t task, const Message& message);
void decode_result(std::string_view payload, std::uint64_t& task, Message& message);
// encode_result_frame() is encode_frame(FrameKind::result, encode_result(...)) in one allocation.
std::string encode_result_frame(std::uint64_t task, const Message& message);

// A report frame carries a whole Message from a serving rank: its kind and
// task, the result fields, output and reason (the host is rank 0's to add).
std::string encode_report(const Message& message);
Message decode_report(std::string_view payload);
// A report frame holds one or more reports, in order, so that a rank tells
// rank 0 a result and the start of its next queued call in one MPI message.
std::string encode_reports(const std::vector<Message>& messages);
std::vector<Message> decode_reports(std::string_view payload);
// decode_next_report() decodes the report at `at` of a report frame's
// payload into `out` and returns where the next begins (the payload's size
// after the last): a reader takes them one by one, without a vector.
std::size_t decode_next_report(std::string_view payload, std::size_t at, Message& out);

// started frames: a task id, when it began, and where the output of the
// task before it ends in the worker's stdout and stderr (output_counts.hpp).
std::string encode_started(std::uint64_t task, clock::time_point started, const process::OutputCut& cut);
void decode_started(std::string_view payload, std::uint64_t& task, clock::time_point& started,
                    process::OutputCut& cut);

// A task id alone (cancel, withdraw, withdrawn).
std::string encode_task(std::uint64_t task);
std::uint64_t decode_task(std::string_view payload);

}  // namespace coop::detail
