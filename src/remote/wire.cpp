// The envelopes of remote objects and spawner calls (wire.hpp), encoded by
// hand (fixed fields, then length-prefixed strings, in the machine's byte
// order: both ends are the same program): every object call crosses twice,
// and a stream-based archive costs more than the rest of the encoding.
#include "remote/wire.hpp"

#include <cstring>

#include <cos/errors.hpp>

namespace coop::detail::wire {
namespace {

struct Fixed {
  std::uint8_t tag;
  std::uint8_t failure;
  std::uint16_t pad;
  std::uint32_t name_size;
  std::uint64_t seq;
  std::int64_t started;
  std::int64_t completed;
  std::uint64_t body_size;
  std::uint64_t error_type_size;
};

[[noreturn]] void corrupt(const char* why) {
  throw Error(std::string("coop: a corrupt message between a remote task and its spawner (") + why + ")");
}

}  // namespace

std::string encode(const Envelope& e) {
  Fixed f{static_cast<std::uint8_t>(e.tag),
          static_cast<std::uint8_t>(e.failure),
          0,
          static_cast<std::uint32_t>(e.name.size()),
          e.seq,
          e.started.time_since_epoch().count(),
          e.completed.time_since_epoch().count(),
          e.body.size(),
          e.error_type.size()};
  std::string out;
  out.reserve(sizeof f + e.name.size() + e.body.size() + e.error_type.size());
  out.append(reinterpret_cast<const char*>(&f), sizeof f);
  out.append(e.name);
  out.append(e.body);
  out.append(e.error_type);
  return out;
}

Envelope decode(const std::string& bytes) {
  Fixed f;
  if (bytes.size() < sizeof f) corrupt("truncated");
  std::memcpy(&f, bytes.data(), sizeof f);
  if (f.tag < static_cast<std::uint8_t>(Tag::built) || f.tag > static_cast<std::uint8_t>(Tag::close)) {
    corrupt("unknown kind");
  }
  if (f.failure > static_cast<std::uint8_t>(Message::Failure::not_registered)) corrupt("unknown failure");
  const std::uint64_t rest = bytes.size() - sizeof f;
  if (f.name_size > rest || f.body_size > rest - f.name_size ||
      f.error_type_size != rest - f.name_size - f.body_size) {
    corrupt("bad lengths");
  }
  Envelope e;
  e.tag = static_cast<Tag>(f.tag);
  e.failure = static_cast<Message::Failure>(f.failure);
  e.seq = f.seq;
  e.started = clock::time_point(clock::duration(f.started));
  e.completed = clock::time_point(clock::duration(f.completed));
  const char* p = bytes.data() + sizeof f;
  e.name.assign(p, f.name_size);
  p += f.name_size;
  e.body.assign(p, f.body_size);
  p += f.body_size;
  e.error_type.assign(p, f.error_type_size);
  return e;
}

Envelope outcome(Tag tag, std::uint64_t seq, Message&& m) {
  Envelope e;
  e.tag = tag;
  e.seq = seq;
  e.failure = m.failure;
  e.body = std::move(m.payload);
  e.error_type = std::move(m.error_type);
  e.started = m.started;
  e.completed = m.completed;
  return e;
}

}  // namespace coop::detail::wire
