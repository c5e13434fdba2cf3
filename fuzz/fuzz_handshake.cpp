// SPDX-License-Identifier: MIT
// The handshake's state machines, native and Python patio's (patio_compat).
// The first input byte picks the protocol (bit 2) and a mode (bits 0-1):
//  0: a server, after start(), fed the rest of the input as frames;
//  1: a client fed the rest of the input as frames;
//  2, 3: a genuine exchange between a server and a client (with the same key
//     or not) in which the input picks one message to corrupt and how, so
//     that mutations reach past the first check.
// Frames are split as the connection's read loop splits them (the
// handshake's payload limit; a refused header closes). Invariants: never
// both done and failed; done at most once, and nothing after a failure; a
// side whose peer does not know its key never reaches done; an uncorrupted
// exchange with the same key succeeds on both sides. (Python patio's server
// proves nothing: its client may be done on made-up frames.)
#include <patio/detail/compat.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>

namespace {

namespace frame = patio::detail::frame;
namespace hs = patio::detail::handshake;
namespace compat = patio::detail::compat;

/// The largest handshake payload a side's connection reads.
template <class Side>
constexpr std::size_t max_payload =
    std::is_same_v<Side, compat::server> || std::is_same_v<Side, compat::client> ? compat::max_handshake_payload
                                                                                 : hs::max_payload;

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
      if (frame::decode(reinterpret_cast<const unsigned char*>(received.data()), max_payload<Side>, false, h) !=
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

template <class Server>
void raw_server(input& in) {
  endpoint<Server> s{Server("key"), {}};
  const auto opening = s.side.start();
  frame::header h;
  PATIO_FUZZ_CHECK(frame::decode(reinterpret_cast<const unsigned char*>(opening.data()), max_payload<Server>, false,
                                 h) == frame::header_error::none);
  s.received = in.rest();
  s.read();
  // Nobody can prove the key without having seen the server's nonce.
  PATIO_FUZZ_CHECK(!s.done);
}

template <class Client>
void raw_client(input& in) {
  endpoint<Client> c{Client("key"), {}};
  c.received = in.rest();
  c.read();
  // The server's proof needs the key and this client's fresh nonce.
  if constexpr (std::is_same_v<Client, hs::client>) PATIO_FUZZ_CHECK(!c.done);
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
      if (frame::decode(reinterpret_cast<const unsigned char*>(message.data()), compat::max_handshake_payload, false,
                        h) == frame::header_error::none) {
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

template <class Server, class Client>
void exchange(input& in, bool same_key) {
  constexpr bool native = std::is_same_v<Server, hs::server>;
  endpoint<Server> s{Server("key"), {}};
  endpoint<Client> c{Client(same_key ? "key" : "another key"), {}};
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
    // Python patio's AUTH_OK proves nothing: a corrupted one convinces.
    if (native || !corrupted) PATIO_FUZZ_CHECK(!c.done);
  }
  if (same_key && !corrupted) {
    PATIO_FUZZ_CHECK(s.done && !s.failed);
    PATIO_FUZZ_CHECK(c.done && !c.failed);
  }
  // The native server is done only on the AUTH_OK of a client that proved
  // the key; Python patio's is done when it sends its AUTH_OK, which may be
  // lost on the way.
  if (s.done) PATIO_FUZZ_CHECK(c.done || (!native && corrupted));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in(data, size);
  const std::uint8_t mode = in.byte();
  const bool same_key = (mode & 8) == 0;
  switch (mode % 8) {
    case 0: raw_server<hs::server>(in); break;
    case 1: raw_client<hs::client>(in); break;
    case 2:
    case 3: exchange<hs::server, hs::client>(in, same_key); break;
    case 4: raw_server<compat::server>(in); break;
    case 5: raw_client<compat::client>(in); break;
    default: exchange<compat::server, compat::client>(in, same_key); break;
  }
  return 0;
}
