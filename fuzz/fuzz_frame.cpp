// SPDX-License-Identifier: MIT
// Frame headers, and a byte stream split into frames the way a connection's
// read loop does it (header, then payload; the handshake's limit before
// authentication, the configured limit after). Invariants: a header that
// decodes re-encodes to the same bytes and respects the limit and the
// authentication rule; splitting a stream delivered in arbitrary chunks
// yields the same frames as splitting it whole.
#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace frame = patio::detail::frame;

#define PATIO_FUZZ_CHECK(cond) \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (false)

constexpr std::array<std::size_t, 5> limits = {0, 1, patio::detail::handshake::max_payload, 64 * 1024 * 1024,
                                               std::numeric_limits<std::uint32_t>::max()};

void check_header(const unsigned char* data) {
  for (const bool authenticated : {false, true}) {
    for (const auto max : limits) {
      frame::header h;
      const auto e = frame::decode(data, max, authenticated, h);
      PATIO_FUZZ_CHECK((e == frame::header_error::unknown_type) == !frame::known(data[0]));
      if (e != frame::header_error::none) continue;
      PATIO_FUZZ_CHECK(h.payload_size <= max);
      PATIO_FUZZ_CHECK(authenticated || frame::handshake(h.kind));
      const auto again = frame::encode(h);
      PATIO_FUZZ_CHECK(std::memcmp(again.data(), data, frame::header_size) == 0);
    }
  }
}

struct parsed_frame {
  frame::header header;
  std::string payload;
};

/// The read loop's splitter over a buffer that grows by chunks: frames are
/// taken while whole ones are buffered; a refused header ends the stream.
class splitter {
 public:
  splitter(std::size_t max_payload, std::size_t authenticate_after)
      : max_payload_(max_payload), authenticate_after_(authenticate_after) {}

  /// Adds bytes; false once the connection would have closed.
  bool feed(std::string_view bytes) {
    if (closed_) return false;
    buffer_.append(bytes);
    for (;;) {
      if (buffer_.size() - pos_ < frame::header_size) break;
      const bool authenticated = frames.size() >= authenticate_after_;
      const auto max = authenticated ? max_payload_ : patio::detail::handshake::max_payload;
      frame::header h;
      if (frame::decode(reinterpret_cast<const unsigned char*>(buffer_.data() + pos_), max, authenticated, h) !=
          frame::header_error::none) {
        closed_ = true;
        return false;
      }
      if (buffer_.size() - pos_ - frame::header_size < h.payload_size) break;
      parsed_frame f{h, buffer_.substr(pos_ + frame::header_size, h.payload_size)};
      // What the writing side would have sent for it is exactly these bytes.
      const auto remade = frame::make(h.kind, h.serial, f.payload.data(), f.payload.size());
      PATIO_FUZZ_CHECK(std::string_view(buffer_).substr(pos_, remade.size()) == remade);
      pos_ += frame::header_size + h.payload_size;
      frames.push_back(std::move(f));
    }
    // As the connection does: what is left moves to the front.
    buffer_.erase(0, pos_);
    pos_ = 0;
    return true;
  }

  std::vector<parsed_frame> frames;

 private:
  std::size_t max_payload_;
  std::size_t authenticate_after_;
  std::string buffer_;
  std::size_t pos_ = 0;
  bool closed_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= frame::header_size) check_header(data);
  if (size < 2) return 0;

  // Two bytes of configuration, then the stream.
  const std::size_t max_payload = limits[data[0] % limits.size()];
  const std::size_t authenticate_after = data[1] % 4;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

  splitter whole(max_payload, authenticate_after);
  whole.feed(stream);

  // The same stream in chunks whose sizes come from the stream itself, as
  // reads of a socket return whatever arrived.
  splitter chunked(max_payload, authenticate_after);
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t n = 1 + static_cast<unsigned char>(stream[at]) % 13;
    if (!chunked.feed(stream.substr(at, n))) break;
    at += n;
  }
  PATIO_FUZZ_CHECK(whole.frames.size() == chunked.frames.size());
  for (std::size_t i = 0; i < whole.frames.size(); ++i) {
    PATIO_FUZZ_CHECK(whole.frames[i].header.kind == chunked.frames[i].header.kind);
    PATIO_FUZZ_CHECK(whole.frames[i].header.serial == chunked.frames[i].header.serial);
    PATIO_FUZZ_CHECK(whole.frames[i].payload == chunked.frames[i].payload);
  }
  return 0;
}
