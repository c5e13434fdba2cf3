// SPDX-License-Identifier: MIT
// The restricted pickle reader on arbitrary input, and what a server does
// with what it accepts: a CallRequest runs through the registry (its
// arguments converted into typed parameters), a value or a result maps onto
// MessagePack and back, an exception becomes an error record.
// Invariants: the reader throws only patio::protocol_error; whatever it
// accepts writes again (dumps never throws on it) and reads back to the same
// bytes; conversions end with a value or a patio::error; never a crash, UB,
// a leak, or memory beyond the reader's limits.
#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/pickle.hpp>
#include <patio/detail/pickle_msgpack.hpp>
#include <patio/error.hpp>
#include <patio/function.hpp>
#include <patio/registry.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace pk = patio::detail::pickle;

#define PATIO_FUZZ_CHECK(cond) \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (false)

std::int64_t mul(patio::varargs<std::int64_t> values) {
  std::int64_t out = 1;
  for (auto v : values)
    if (__builtin_mul_overflow(out, v, &out)) throw std::overflow_error("mul: overflow");
  return out;
}

patio::value echo(patio::value v) { return v; }

std::map<std::string, std::vector<double>> scale(std::map<std::string, std::vector<double>> m,
                                                 std::optional<double> f) {
  for (auto& [k, v] : m)
    for (auto& x : v) x *= f.value_or(2.0);
  return m;
}

std::string greet(std::string name, patio::kwargs kw) {
  const auto times = kw.get<int>("times", 1);
  if (times < 0 || times > 16) throw std::invalid_argument("greet: times out of range");
  std::string out;
  for (int i = 0; i < times; ++i) out += kw.get<std::string>("greeting", "hello") + " " + name;
  return out;
}

const patio::registry& functions() {
  static patio::registry out;
  static const bool registered = [] {
    out.add("mul", mul);
    out.add("echo", echo);
    out.add("scale", scale);
    out.add("greet", greet);
    return true;
  }();
  (void)registered;
  return out;
}

/// Writes `v` again: it must not throw, and must read back to the same bytes.
template <class T>
std::string round_trip(const T& v) {
  const auto once = pk::dumps(v);
  PATIO_FUZZ_CHECK(pk::dumps(pk::loads(once)) == once);
  return once;
}

std::string reply_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const patio::error&) {
  } catch (...) {
    std::abort();  // a task's own exception is recorded as a patio::remote_error
  }
  return round_trip(pk::to_exception(patio::detail::record_of(e)));
}

void run(const pk::call_request& r) {
  const auto inv = pk::to_invocation(r);
  const patio::function* fn = functions().find(inv->name);
  if (!fn) {
    auto it = functions().begin();
    std::advance(it, r.func.size() % functions().size());
    fn = &it->second;
  }
  if (!inv->error()) {
    inv->target = fn->impl();
    fn->impl()->invoke(*inv);
  }
  if (inv->error()) {
    reply_of(inv->error());
    return;
  }
  const auto handle = msgpack::unpack(inv->result().data(), inv->result().size());
  round_trip(pk::from_msgpack(handle.get()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  pk::payload p;
  try {
    p = pk::loads(input);
  } catch (const patio::protocol_error&) {
    return 0;
  } catch (...) {
    std::abort();
  }
  try {
    round_trip(p);
    if (const auto* r = std::get_if<pk::call_request>(&p)) {
      run(*r);
    } else if (const auto* e = std::get_if<pk::exception>(&p)) {
      const auto record = pk::to_error_record(*e);
      PATIO_FUZZ_CHECK(record.type_name == e->type_name);
    } else {
      msgpack::zone zone;
      round_trip(pk::from_msgpack(pk::to_msgpack(std::get<pk::object>(p), zone)));
    }
  } catch (...) {
    std::abort();  // nothing may escape once the reader accepted the input
  }
  return 0;
}
