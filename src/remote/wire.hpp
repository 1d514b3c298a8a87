// wire.hpp: the bytes a running remote task and its spawner exchange through
// VM::send() and `post` messages (channel.hpp): remote objects' method calls
// and results, and spawner calls and their replies. Both ends are the same
// program, so one Envelope, encoded by hand, serves every kind.
#pragma once

#include <cstdint>
#include <string>

#include <cos/vm.hpp>

namespace coop::detail::wire {

enum class Tag : std::uint8_t {
  built = 1,   // slot -> spawner: the object's constructor returned
  result = 2,  // slot -> spawner: a method call ended (seq, outcome)
  call = 3,    // slot -> spawner: spawner_call (seq, function name, args)
  post = 4,    // slot -> spawner: spawner_post (function name, args); no reply
  reply = 5,   // spawner -> slot: a spawner call ended (seq, outcome, spawner's host)
  method = 6,  // spawner -> slot: call a method of the object (seq, name, args)
  close = 7,   // spawner -> slot: destroy the object, end its task
};

// Envelope is one exchange; the fields a tag does not use stay empty.
// `failure` is a Message::Failure; `body` the arguments, the serialized
// value, or the exception's what(); `name` a function or method name, or for
// a reply the spawner's host.
struct Envelope {
  Tag tag = Tag::built;
  std::uint64_t seq = 0;
  std::string name{};
  std::string body{};
  Message::Failure failure = Message::Failure::none;
  std::string error_type{};
  clock::time_point started{};
  clock::time_point completed{};
};

// encode() and decode(): decode throws coop::Error for bytes that are not an
// envelope.
std::string encode(const Envelope& e);
Envelope decode(const std::string& bytes);

// outcome() is an envelope of `tag` and `seq` carrying how `m` (the Message
// of execute()) ended.
Envelope outcome(Tag tag, std::uint64_t seq, Message&& m);

}  // namespace coop::detail::wire
