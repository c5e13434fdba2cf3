// SPDX-License-Identifier: MIT
// The handshake's state machines. The first input byte picks a mode:
//  0: a server, after start(), fed the rest of the input as frames;
//  1: a client fed the rest of the input as frames;
//  2+: a genuine exchange between a server and a client (with the same key
//     or not) in which the input picks one message to corrupt and how, so
//     that mutations reach past the first check.
// Frames are split as the connection's read loop splits them (the
// handshake's payload limit; a refused header closes). Invariants: never
// both done and failed; done at most once, and nothing after a failure; a
// side whose peer does not know its key never reaches done; an uncorrupted
// exchange with the same key succeeds on both sides.
#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace frame = patio::detail::frame;
namespace hs = patio::detail::handshake;

#define PATIO_FUZZ_CHECK(cond) \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (false)

/// Reads bytes of the input as parameters; zeros once it runs out.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(byte() << 8 | byte()); }
  std::string bytes(std::size_t n) {
    n = std::min(n, size_ - at_);
    std::string out(reinterpret_cast<const char*>(data_) + at_, n);
    at_ += n;
    return out;
  }
  std::string rest() { return bytes(size_ - at_); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

/// One side of a connection during the handshake: its receive buffer, split
/// into frames as the read loop does, and what its state machine said.
template <class Side>
struct endpoint {
  Side side;
  std::string received;
  bool closed = false;
  bool done = false;
  bool failed = false;

  /// Takes the whole frames received; returns what the side sends.
  std::string read() {
    std::string out;
    while (!closed && received.size() >= frame::header_size) {
      frame::header h;
      if (frame::decode(reinterpret_cast<const unsigned char*>(received.data()), hs::max_payload, false, h) !=
          frame::header_error::none) {
        closed = true;
        break;
      }
      if (received.size() - frame::header_size < h.payload_size) break;
      const std::string payload = received.substr(frame::header_size, h.payload_size);
      received.erase(0, frame::header_size + h.payload_size);
      const auto step = side.on_frame(h, payload);
      PATIO_FUZZ_CHECK(!(step.done && step.failed));
      PATIO_FUZZ_CHECK(!step.failed || step.send.empty());
      PATIO_FUZZ_CHECK(!step.failed || !step.reason.empty());
      PATIO_FUZZ_CHECK(!(step.done && done));  // done once
      out += step.send;
      if (step.failed) {
        failed = true;
        closed = true;  // the connection closes
      }
      // The connection leaves the state machine once done; the machine
      // itself must refuse anything more, so it keeps being fed here.
      if (step.done) done = true;
      PATIO_FUZZ_CHECK(!(done && failed) || step.failed);
    }
    return out;
  }
};

void raw_server(input& in) {
  endpoint<hs::server> s{hs::server("key"), {}};
  const auto opening = s.side.start();
  frame::header h;
  PATIO_FUZZ_CHECK(frame::decode(reinterpret_cast<const unsigned char*>(opening.data()), hs::max_payload, false, h) ==
                   frame::header_error::none);
  s.received = in.rest();
  s.read();
  // Nobody can prove the key without having seen the server's nonce.
  PATIO_FUZZ_CHECK(!s.done);
}

void raw_client(input& in) {
  endpoint<hs::client> c{hs::client("key"), {}};
  c.received = in.rest();
  c.read();
  // The server's proof needs the key and this client's fresh nonce.
  PATIO_FUZZ_CHECK(!c.done);
}

std::string corrupt(std::string message, input& in) {
  switch (in.byte() % 9) {
    case 0: break;
    case 1:  // flip bits
      if (!message.empty()) message[in.u16() % message.size()] ^= static_cast<char>(in.byte() | 1);
      break;
    case 2:  // truncate
      message.resize(in.u16() % (message.size() + 1));
      break;
    case 3:  // append
      message += in.bytes(in.byte());
      break;
    case 4:  // replace
      message = in.bytes(in.byte());
      break;
    case 5:  // another packet type
      if (!message.empty()) message[0] = static_cast<char>(in.byte());
      break;
    case 6: {  // another payload, correctly framed
      frame::header h;
      if (frame::decode(reinterpret_cast<const unsigned char*>(message.data()), hs::max_payload, false, h) ==
          frame::header_error::none) {
        const auto payload = in.bytes(in.byte());
        message = frame::make(h.kind, h.serial, payload.data(), payload.size());
      }
      break;
    }
    case 7:  // lost
      message.clear();
      break;
    case 8:  // sent twice
      message += message;
      break;
  }
  return message;
}

void exchange(input& in, std::uint8_t mode) {
  const bool same_key = (mode & 1) == 0;
  endpoint<hs::server> s{hs::server("key"), {}};
  endpoint<hs::client> c{hs::client(same_key ? "key" : "another key"), {}};
  // Messages alternate server -> client -> server -> ...; the input picks
  // which one (by its index) to corrupt, and how.
  const unsigned target = in.byte() % 5;
  bool corrupted = false;
  std::string in_flight = s.side.start();
  for (unsigned index = 0; index < 8; ++index) {
    const bool to_client = index % 2 == 0;
    if (index == target) {
      const auto before = in_flight;
      in_flight = corrupt(std::move(in_flight), in);
      corrupted = in_flight != before;
    }
    if (to_client) {
      if (c.closed) break;
      c.received += in_flight;
      in_flight = c.read();
    } else {
      if (s.closed) break;
      s.received += in_flight;
      in_flight = s.read();
    }
    if (in_flight.empty() && index >= target) break;
  }
  if (!same_key) {
    PATIO_FUZZ_CHECK(!s.done);
    PATIO_FUZZ_CHECK(!c.done);
  }
  if (same_key && !corrupted) {
    PATIO_FUZZ_CHECK(s.done && !s.failed);
    PATIO_FUZZ_CHECK(c.done && !c.failed);
  }
  // The server is done only on the AUTH_OK of a client that proved the key.
  if (s.done) PATIO_FUZZ_CHECK(c.done);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in(data, size);
  const std::uint8_t mode = in.byte();
  switch (mode % 4) {
    case 0: raw_server(in); break;
    case 1: raw_client(in); break;
    default: exchange(in, mode >> 2); break;
  }
  return 0;
}
