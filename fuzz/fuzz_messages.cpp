// SPDX-License-Identifier: MIT
// Payloads after authentication, decoded as a connection decodes them. The
// first input byte picks a mode, the rest is the payload:
//  0: REQUEST, run as the TCP server runs it: decoded, looked up in the
//     registry, its arguments converted to the function's typed parameters
//     and the function invoked (synchronously as the thread pool does, or as
//     a coroutine as the async executor does); the outcome sent back as a
//     RESPONSE or ERROR frame and decoded again as the caller would;
//  1: the same, run by a function the second byte picks whatever the name;
//  2: RESPONSE, its result converted to what a caller of several types wants;
//  3: ERROR, turned into the exception the caller raises;
//  4: DISCOVER_RESPONSE.
// Every payload is also decoded by patio's MessagePack decoder and by
// msgpack-cxx's unpack(): they must agree (both refuse it, or the same value).
// Invariants: decoders throw only patio::protocol_error; a run call ends with
// a result or a patio::error; a result or an error record re-encodes and
// decodes again; never a crash, UB or a leak.
#include "../tests/msgpack_compare.hpp"

#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/messages.hpp>
#include <patio/error.hpp>
#include <patio/function.hpp>
#include <patio/registry.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace {

namespace frame = patio::detail::frame;
namespace messages = patio::detail::messages;

#define PATIO_FUZZ_CHECK(cond) \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (false)

struct point {
  double x = 0;
  double y = 0;
  std::string label;
  PATIO_FIELDS(x, y, label);
};

std::string concat(int n, std::string s) { return std::to_string(n) + s; }

double sum(std::vector<double> values) {
  double out = 0;
  for (double v : values) out += v;
  return out;
}

std::int64_t mul(patio::varargs<std::int64_t> values) {
  std::int64_t out = 1;
  for (auto v : values)
    if (__builtin_mul_overflow(out, v, &out)) throw std::overflow_error("mul: overflow");
  return out;
}

point scale(point p, std::optional<double> factor) {
  const double f = factor.value_or(2.0);
  return {p.x * f, p.y * f, p.label + "*"};
}

std::string optionals(std::string s, std::optional<int> n, std::optional<std::string> suffix) {
  return s + std::to_string(n.value_or(-1)) + suffix.value_or("");
}

std::string greet(std::string name, patio::kwargs kw) {
  const auto times = kw.get<int>("times", 1);
  if (times < 0 || times > 16) throw std::invalid_argument("greet: times out of range");
  std::string out;
  for (int i = 0; i < times; ++i) out += kw.get<std::string>("greeting", "hello") + " " + name;
  return out;
}

patio::value echo(patio::value v) { return v; }

std::size_t count(patio::bytes b, std::map<std::string, std::vector<std::int64_t>> m, std::tuple<bool, float> t) {
  return b.size() + m.size() + (std::get<0>(t) ? 1 : 0);
}

void nothing(std::int64_t) {}

asio::awaitable<std::string> later(std::string s, patio::varargs<std::string> more) {
  for (const auto& m : more) s += m;
  co_return s;
}

asio::awaitable<void> later_nothing(patio::kwargs) { co_return; }

const patio::registry& functions() {
  static patio::registry out;
  static const bool registered = [] {
    out.add("concat", concat);
    out.add("sum", sum);
    out.add("mul", mul);
    out.add("scale", scale);
    out.add("optionals", optionals);
    out.add("greet", greet);
    out.add("echo", echo);
    out.add("count", count);
    out.add("nothing", nothing);
    out.add("later", later);
    out.add("later_nothing", later_nothing);
    return true;
  }();
  (void)registered;
  return out;
}

/// What the caller decodes from a reply frame: checks it frames and decodes.
void check_reply_frame(const std::string& f, frame::type expected) {
  frame::header h;
  PATIO_FUZZ_CHECK(f.size() >= frame::header_size);
  PATIO_FUZZ_CHECK(frame::decode(reinterpret_cast<const unsigned char*>(f.data()), 0xffffffffu, true, h) ==
                   frame::header_error::none);
  PATIO_FUZZ_CHECK(h.kind == expected);
  PATIO_FUZZ_CHECK(h.payload_size == f.size() - frame::header_size);
  const auto reply = messages::decode_reply(h.kind, std::string_view(f).substr(frame::header_size));
  PATIO_FUZZ_CHECK(reply.ok == (expected == frame::type::response));
}

void check_is_patio_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const patio::error&) {
  } catch (...) {
    std::abort();
  }
}

void run(const patio::function& fn, std::shared_ptr<patio::detail::encoded_invocation> inv) {
  inv->target = fn.impl();
  if (fn.is_coroutine()) {
    static asio::io_context context;
    context.restart();
    bool finished = false;
    asio::co_spawn(context, fn.impl()->invoke_async(inv), [&](std::exception_ptr e) {
      PATIO_FUZZ_CHECK(!e);  // every failure ends up in the invocation
      finished = true;
    });
    context.run();
    PATIO_FUZZ_CHECK(finished);
  } else {
    fn.impl()->invoke(*inv);
  }
}

void request(std::string_view payload, const std::uint8_t* pick) {
  messages::request r;
  try {
    r = messages::decode_request(payload);
  } catch (const patio::protocol_error&) {
    return;  // the connection closes
  }
  PATIO_FUZZ_CHECK(r.invocation);
  if (r.timeout_seconds) PATIO_FUZZ_CHECK(*r.timeout_seconds >= 0 && *r.timeout_seconds <= 1e9);
  auto& inv = r.invocation;
  std::exception_ptr error = inv->error();
  if (!error) {
    const patio::function* fn = functions().find(inv->name);
    if (!fn && pick) {
      auto it = functions().begin();
      std::advance(it, *pick % functions().size());
      fn = &it->second;
    }
    if (!fn) return;  // answered with no_route
    run(*fn, inv);
    error = inv->error();
  }
  if (error) {
    check_is_patio_error(error);
    const auto record = patio::detail::record_of(error);
    check_reply_frame(messages::error_frame(7, record), frame::type::error);
  } else {
    check_reply_frame(messages::response_frame(7, inv->result()), frame::type::response);
  }
}

template <class R>
void reply_as(const messages::reply& reply) {
  auto inv = patio::detail::make_invocation<R>();
  inv->name = "f";
  patio::detail::set_reply(*inv, reply.ok, reply.result, reply.error);
  try {
    if constexpr (std::is_void_v<R>)
      inv->take_result();
    else
      (void)inv->take_result();
  } catch (const patio::error&) {
  }
}

void response(std::string_view payload) {
  messages::reply reply;
  try {
    reply = messages::decode_reply(frame::type::response, payload);
  } catch (const patio::protocol_error&) {
    return;
  }
  PATIO_FUZZ_CHECK(reply.ok);
  reply_as<void>(reply);
  reply_as<std::int64_t>(reply);
  reply_as<std::uint8_t>(reply);
  reply_as<double>(reply);
  reply_as<bool>(reply);
  reply_as<std::string>(reply);
  reply_as<std::vector<double>>(reply);
  reply_as<std::optional<std::string>>(reply);
  reply_as<std::map<std::string, std::int64_t>>(reply);
  reply_as<point>(reply);
  reply_as<patio::value>(reply);
  reply_as<patio::bytes>(reply);
  reply_as<std::tuple<int, std::string>>(reply);
}

void error_reply(std::string_view payload) {
  messages::reply reply;
  try {
    reply = messages::decode_reply(frame::type::error, payload);
  } catch (const patio::protocol_error&) {
    return;
  }
  PATIO_FUZZ_CHECK(!reply.ok);
  const auto e = patio::detail::exception_of(reply.error);
  check_is_patio_error(e);
  reply_as<std::string>(reply);
  // What a relaying side would send on: it decodes to the same code.
  const auto again = messages::error_frame(1, patio::detail::record_of(e));
  const auto decoded = messages::decode_reply(frame::type::error, std::string_view(again).substr(frame::header_size));
  PATIO_FUZZ_CHECK(decoded.error.code == reply.error.code);
}

void discover(std::string_view payload) {
  std::vector<std::string> names;
  try {
    names = messages::decode_discover_response(payload);
  } catch (const patio::protocol_error&) {
    return;
  }
  const auto again = messages::discover_response_frame(names);
  PATIO_FUZZ_CHECK(messages::decode_discover_response(std::string_view(again).substr(frame::header_size)) == names);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  PATIO_FUZZ_CHECK(patio_test::decoders_agree(payload.data(), payload.size()));
  try {
    switch (data[0] % 5) {
      case 0: request(payload, nullptr); break;
      case 1:
        if (size >= 2) request(payload.substr(1), data + 1);
        break;
      case 2: response(payload); break;
      case 3: error_reply(payload); break;
      case 4: discover(payload); break;
    }
  } catch (...) {
    std::abort();  // nothing else may escape a decoder or a call
  }
  return 0;
}
