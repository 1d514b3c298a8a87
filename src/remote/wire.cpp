// The envelopes of remote objects and spawner calls (wire.hpp), in cereal's
// binary format.
#include "remote/wire.hpp"

#include <cos/errors.hpp>
#include <cos/remote.hpp>

namespace coop::detail::wire {
namespace {

// Flat, so that both ends read exactly what the other wrote.
struct Flat {
  std::uint8_t tag = 0;
  std::uint64_t seq = 0;
  std::string name, body;
  std::uint8_t failure = 0;
  std::string error_type;
  std::int64_t started = 0, completed = 0;
  template <class Archive> void serialize(Archive& ar) { ar(tag, seq, name, body, failure, error_type, started, completed); }
};

}  // namespace

std::string encode(const Envelope& e) {
  Flat f{static_cast<std::uint8_t>(e.tag),  e.seq,  e.name, e.body, static_cast<std::uint8_t>(e.failure),
         e.error_type, e.started.time_since_epoch().count(), e.completed.time_since_epoch().count()};
  return to_bytes(f);
}

Envelope decode(const std::string& bytes) {
  Flat f;
  try {
    from_bytes(bytes, f);
  } catch (const std::exception& ex) {
    throw Error(std::string("coop: a corrupt message between a remote task and its spawner: ") + ex.what());
  }
  if (f.tag < static_cast<std::uint8_t>(Tag::built) || f.tag > static_cast<std::uint8_t>(Tag::close) ||
      f.failure > static_cast<std::uint8_t>(Message::Failure::not_registered)) {
    throw Error("coop: a corrupt message between a remote task and its spawner (unknown kind)");
  }
  Envelope e;
  e.tag = static_cast<Tag>(f.tag);
  e.seq = f.seq;
  e.name = std::move(f.name);
  e.body = std::move(f.body);
  e.failure = static_cast<Message::Failure>(f.failure);
  e.error_type = std::move(f.error_type);
  e.started = clock::time_point(clock::duration(f.started));
  e.completed = clock::time_point(clock::duration(f.completed));
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
