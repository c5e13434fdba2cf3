// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

struct point {
  double x = 0, y = 0;
  PATIO_FIELDS(x, y);

  friend bool operator==(const point&, const point&) = default;
};

using str_int_map = std::map<std::string, int>;
using str_int_umap = std::unordered_map<std::string, int>;
using triple = std::tuple<int, std::string, double>;
using nested = std::vector<std::map<std::string, std::vector<std::optional<int>>>>;

template <class T>
T echo(T v) {
  return v;
}

std::int64_t square(std::int64_t x) { return x * x; }
double half(double x) { return x / 2; }
int add_ints(int a, int b) { return a + b; }
std::int8_t small(std::int8_t x) { return x; }
std::string concat(std::string a, std::string b) { return a + b; }
std::size_t view_size(std::string_view s) { return s.size(); }
std::string view_echo(std::string_view s) { return std::string(s); }
int answer() { return 42; }
void nothing() {}
bool negate(bool b) { return !b; }

std::int64_t sum(patio::varargs<std::int64_t> xs) {
  std::int64_t total = 0;
  for (auto x : xs) total += x;
  return total;
}

std::string join(std::string sep, patio::varargs<std::string> parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string greet(std::string name, std::optional<std::string> greeting, std::optional<int> times) {
  std::string out;
  for (int i = 0; i < times.value_or(1); ++i) out += greeting.value_or("Hello") + ", " + name + "!";
  return out;
}

point make_point(double x, double y) { return {x, y}; }
double norm2(point p) { return p.x * p.x + p.y * p.y; }
point mirror(point p) { return {p.y, p.x}; }

std::string show(patio::value v) { return v.to_string(); }
std::string kind_of(patio::value v) {
  switch (v.type()) {
    case patio::value::kind::nil: return "nil";
    case patio::value::kind::boolean: return "bool";
    case patio::value::kind::integer: return "int";
    case patio::value::kind::floating: return "float";
    case patio::value::kind::string: return "str";
    case patio::value::kind::binary: return "bytes";
    case patio::value::kind::array: return "array";
    case patio::value::kind::map: return "map";
    case patio::value::kind::extension: return "ext";
  }
  return "?";
}
patio::value first_of(patio::value v) { return v[0]; }

asio::awaitable<std::int64_t> co_twice(std::int64_t x) { co_return 2 * x; }
asio::awaitable<void> co_nothing() { co_return; }

int registered_twice(int x) { return x; }
int unregistered(int x) { return x; }

void register_all(patio::registry& rpc) {
  rpc.add("echo_i8", echo<std::int8_t>);
  rpc.add("echo_i16", echo<std::int16_t>);
  rpc.add("echo_i32", echo<std::int32_t>);
  rpc.add("echo_i64", echo<std::int64_t>);
  rpc.add("echo_u8", echo<std::uint8_t>);
  rpc.add("echo_u16", echo<std::uint16_t>);
  rpc.add("echo_u32", echo<std::uint32_t>);
  rpc.add("echo_u64", echo<std::uint64_t>);
  rpc.add("echo_f32", echo<float>);
  rpc.add("echo_f64", echo<double>);
  rpc.add("echo_bool", echo<bool>);
  rpc.add("echo_str", echo<std::string>);
  rpc.add("echo_bytes", echo<patio::bytes>);
  rpc.add("echo_vec", echo<std::vector<int>>);
  rpc.add("echo_vec_str", echo<std::vector<std::string>>);
  rpc.add("echo_map", echo<str_int_map>);
  rpc.add("echo_umap", echo<str_int_umap>);
  rpc.add("echo_opt", echo<std::optional<int>>);
  rpc.add("echo_tuple", echo<triple>);
  rpc.add("echo_nested", echo<nested>);
  rpc.add("echo_point", echo<point>);
  rpc.add("echo_value", echo<patio::value>);
  rpc.add("square", square);
  rpc.add("half", half);
  rpc.add("add_ints", add_ints);
  rpc.add("small", small);
  rpc.add("concat", concat);
  rpc.add("view_size", view_size);
  rpc.add("view_echo", view_echo);
  rpc.add("answer", answer);
  rpc.add("nothing", nothing);
  rpc.add("negate", negate);
  rpc.add("sum", sum);
  rpc.add("join", join);
  rpc.add("greet", greet);
  rpc.add("make_point", make_point);
  rpc.add("norm2", norm2);
  rpc.add("mirror", mirror);
  rpc.add("show", show);
  rpc.add("kind_of", kind_of);
  rpc.add("first_of", first_of);
  rpc.add("co_twice", co_twice);
  rpc.add("co_nothing", co_nothing);
  rpc.add("registered_twice", registered_twice);
  rpc.add("registered_twice_again", registered_twice);
}

/// A registry with every function above, an executor and a memory broker.
template <class Executor = patio::thread_pool_executor>
struct fixture {
  patio::registry rpc;
  Executor executor;
  patio::memory_broker broker;

  fixture() : rpc(), executor((register_all(rpc), rpc), 2), broker(executor) {}

  template <class R = patio::value, class... A>
  R call(std::string_view name, A&&... args) {
    return patio::test::run(broker.call<R>(name, std::forward<A>(args)...));
  }
};

/// The exception `f` throws, if it is an E (other exceptions propagate and
/// fail the test).
template <class E, class F>
std::optional<E> thrown(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace

TEMPLATE_TEST_CASE("integers of every width round-trip", "[codec]", patio::thread_pool_executor,
                   patio::async_executor) {
  fixture<TestType> fx;
  SECTION("signed limits") {
    CHECK(fx.template call<std::int8_t>("echo_i8", std::int8_t{-128}) == -128);
    CHECK(fx.template call<std::int8_t>("echo_i8", 127) == 127);
    CHECK(fx.template call<std::int16_t>("echo_i16", std::numeric_limits<std::int16_t>::min()) ==
          std::numeric_limits<std::int16_t>::min());
    CHECK(fx.template call<std::int16_t>("echo_i16", -300) == -300);
    CHECK(fx.template call<std::int32_t>("echo_i32", std::numeric_limits<std::int32_t>::min()) ==
          std::numeric_limits<std::int32_t>::min());
    CHECK(fx.template call<std::int32_t>("echo_i32", -1) == -1);
    CHECK(fx.template call<std::int64_t>("echo_i64", std::numeric_limits<std::int64_t>::min()) ==
          std::numeric_limits<std::int64_t>::min());
    CHECK(fx.template call<std::int64_t>("echo_i64", std::numeric_limits<std::int64_t>::max()) ==
          std::numeric_limits<std::int64_t>::max());
  }
  SECTION("unsigned limits") {
    CHECK(fx.template call<std::uint8_t>("echo_u8", 255) == 255);
    CHECK(fx.template call<std::uint16_t>("echo_u16", 65535) == 65535);
    CHECK(fx.template call<std::uint32_t>("echo_u32", std::numeric_limits<std::uint32_t>::max()) ==
          std::numeric_limits<std::uint32_t>::max());
    CHECK(fx.template call<std::uint64_t>("echo_u64", std::numeric_limits<std::uint64_t>::max()) ==
          std::numeric_limits<std::uint64_t>::max());
  }
  SECTION("as dynamic values") {
    patio::value big = fx.call("echo_u64", std::numeric_limits<std::uint64_t>::max());
    CHECK(big.is_int());
    CHECK(big.as<std::uint64_t>() == std::numeric_limits<std::uint64_t>::max());
    CHECK(big.to_string() == "18446744073709551615");
    CHECK_THROWS_AS(big.as<std::int64_t>(), patio::type_mismatch_error);
    patio::value low = fx.call("echo_i64", std::numeric_limits<std::int64_t>::min());
    CHECK(low.to_string() == "-9223372036854775808");
    CHECK(low.as<std::int64_t>() == std::numeric_limits<std::int64_t>::min());
    CHECK(fx.call("echo_i8", -5).template as<int>() == -5);
  }
  SECTION("a wider result type accepts a narrower result") {
    CHECK(fx.template call<std::int64_t>("echo_i8", -7) == -7);
    CHECK(fx.template call<std::uint64_t>("echo_u8", 200) == 200);
    CHECK(fx.template call<double>("add_ints", 1, 2) == 3.0);
  }
}

TEST_CASE("integers that do not fit are refused", "[codec]") {
  fixture fx;
  SECTION("argument overflow") {
    auto e = thrown<patio::bad_arguments_error>([&] { fx.call("small", 300); });
    REQUIRE(e);
    CHECK(e->value() == patio::errc::bad_arguments);
    CHECK_THAT(std::string(e->what()), Catch::Contains("small") && Catch::Contains("argument 1") &&
                                           Catch::Contains("expected int8") && Catch::Contains("got int"));
    CHECK_THROWS_AS(fx.call("small", -129), patio::bad_arguments_error);
    CHECK_THROWS_AS(fx.call("echo_u8", 256), patio::bad_arguments_error);
    CHECK_THROWS_AS(fx.call("echo_i32", std::int64_t{1} << 31), patio::bad_arguments_error);
    CHECK_THROWS_AS(fx.call("echo_i64", std::numeric_limits<std::uint64_t>::max()), patio::bad_arguments_error);
  }
  SECTION("negative values for unsigned parameters") {
    CHECK_THROWS_AS(fx.call("echo_u64", -1), patio::bad_arguments_error);
    CHECK_THROWS_WITH(fx.call("echo_u32", -1), Catch::Contains("expected uint32, got int"));
  }
  SECTION("result overflow") {
    auto e = thrown<patio::type_mismatch_error>([&] { fx.call<std::int8_t>("echo_i32", 300); });
    REQUIRE(e);
    CHECK_THAT(std::string(e->what()), Catch::Contains("echo_i32") && Catch::Contains("expected int8, got int"));
    CHECK_THROWS_AS(fx.call<std::uint32_t>("echo_i32", -1), patio::type_mismatch_error);
  }
}

TEST_CASE("floating point values round-trip and ints convert to them", "[codec]") {
  fixture fx;
  SECTION("float64") {
    CHECK(fx.call<double>("echo_f64", 0.1) == 0.1);
    CHECK(fx.call<double>("echo_f64", -1e300) == -1e300);
    CHECK(fx.call<double>("echo_f64", std::numeric_limits<double>::denorm_min()) ==
          std::numeric_limits<double>::denorm_min());
    patio::value v = fx.call("echo_f64", 2.5);
    CHECK(v.is_float());
    CHECK_FALSE(v.is_int());
    CHECK(v.as<double>() == 2.5);
    CHECK(v.to_string() == "2.5");
    CHECK(fx.call("echo_f64", 3.0).to_string() == "3.0");
  }
  SECTION("float32") {
    CHECK(fx.call<float>("echo_f32", 1.5f) == 1.5f);
    CHECK(fx.call<float>("echo_f32", 0.25) == 0.25f);  // double argument
    CHECK(fx.call<double>("echo_f32", 0.5f) == 0.5);
    CHECK(fx.call("echo_f32", 1.5f).is_float());
  }
  SECTION("an int argument converts to a double parameter") {
    CHECK(fx.call<double>("half", 3) == 1.5);
    CHECK(fx.call<double>("half", -4) == -2.0);
    CHECK(fx.call<double>("half", std::uint8_t{9}) == 4.5);
    CHECK(fx.call<float>("echo_f32", 7) == 7.0f);
  }
  SECTION("a double argument does not convert to an int parameter") {
    auto e = thrown<patio::bad_arguments_error>([&] { fx.call("add_ints", 1.5, 2); });
    REQUIRE(e);
    CHECK_THAT(std::string(e->what()), Catch::Contains("add_ints") && Catch::Contains("argument 1") &&
                                           Catch::Contains("expected int32, got float"));
    // Not even a whole one.
    CHECK_THROWS_AS(fx.call("add_ints", 1, 2.0), patio::bad_arguments_error);
    CHECK_THROWS_WITH(fx.call("add_ints", 1, 2.0), Catch::Contains("argument 2"));
    CHECK_THROWS_AS(fx.call("echo_i64", 1.0f), patio::bad_arguments_error);
  }
  SECTION("a double result does not convert to an int") {
    CHECK_THROWS_AS(fx.call<int>("half", 3), patio::type_mismatch_error);
    CHECK_THROWS_WITH(fx.call<int>("half", 3), Catch::Contains("half") && Catch::Contains("expected int32, got float"));
  }
}

TEST_CASE("bool, strings and bytes round-trip", "[codec]") {
  fixture fx;
  SECTION("bool") {
    CHECK(fx.call<bool>("echo_bool", true));
    CHECK_FALSE(fx.call<bool>("echo_bool", false));
    CHECK(fx.call<bool>("negate", false));
    patio::value v = fx.call("echo_bool", true);
    CHECK(v.is_bool());
    CHECK_FALSE(v.is_int());
    CHECK(v.as<bool>());
    CHECK(v.to_string() == "true");
    CHECK_THROWS_WITH(fx.call("negate", 1), Catch::Contains("negate") && Catch::Contains("expected bool, got int"));
    CHECK_THROWS_AS(fx.call<int>("echo_bool", true), patio::type_mismatch_error);
  }
  SECTION("std::string, string literals and string views") {
    CHECK(fx.call<std::string>("concat", std::string("ab"), std::string("cd")) == "abcd");
    CHECK(fx.call<std::string>("concat", "ab", "cd") == "abcd");
    const char* c = "ef";
    CHECK(fx.call<std::string>("concat", c, std::string_view("gh")) == "efgh");
    std::string_view view = "0123456789";
    CHECK(fx.call<std::string>("concat", view.substr(2, 3), view.substr(0, 1)) == "2340");
    CHECK(fx.call<std::size_t>("view_size", "hello") == 5);
    CHECK(fx.call<std::string>("view_echo", std::string("world")) == "world");
  }
  SECTION("embedded NUL and UTF-8 survive") {
    const std::string tricky("a\0b\xc3\xa9", 5);
    CHECK(fx.call<std::string>("echo_str", tricky) == tricky);
    patio::value v = fx.call("echo_str", tricky);
    CHECK(v.is_string());
    CHECK(v.size() == 5);
  }
  SECTION("a string value prints quoted and escaped") {
    patio::value v = fx.call("echo_str", "say \"hi\"\n\\");
    CHECK(v.to_string() == R"("say \"hi\"\n\\")");
    CHECK(fmt::format("{}", v) == v.to_string());
  }
  SECTION("a non-string argument for a string parameter") {
    auto e = thrown<patio::bad_arguments_error>([&] { fx.call("concat", "a", 2); });
    REQUIRE(e);
    CHECK_THAT(std::string(e->what()), Catch::Contains("concat") && Catch::Contains("argument 2") &&
                                           Catch::Contains("expected str") && Catch::Contains("got int"));
  }
  SECTION("bytes") {
    const patio::bytes data{std::byte{0}, std::byte{1}, std::byte{0x7f}, std::byte{0xff}};
    CHECK(fx.call<patio::bytes>("echo_bytes", data) == data);
    CHECK(fx.call<patio::bytes>("echo_bytes", patio::bytes{}).empty());
    patio::value v = fx.call("echo_bytes", data);
    CHECK(v.is_bytes());
    CHECK_FALSE(v.is_string());
    CHECK(v.size() == 4);
    CHECK(v.to_string() == R"(b"\x00\x01\x7f\xff")");
    CHECK(v.as<patio::bytes>() == data);
    CHECK_THROWS_WITH(fx.call("echo_bytes", 5),
                      Catch::Contains("echo_bytes") && Catch::Contains("argument 1") && Catch::Contains("got int"));
  }
}

TEST_CASE("containers round-trip", "[codec]") {
  fixture fx;
  SECTION("std::vector") {
    CHECK(fx.call<std::vector<int>>("echo_vec", std::vector<int>{1, -2, 3}) == std::vector<int>{1, -2, 3});
    CHECK(fx.call<std::vector<int>>("echo_vec", std::vector<int>{}).empty());
    CHECK(fx.call<std::vector<std::string>>("echo_vec_str", std::vector<std::string>{"a", ""}) ==
          std::vector<std::string>{"a", ""});
    // Element types convert one by one.
    CHECK(fx.call<std::vector<double>>("echo_vec", std::vector<std::int64_t>{1, 2}) == std::vector<double>{1.0, 2.0});
    CHECK_THROWS_WITH(fx.call("echo_vec", std::vector<double>{1.5}), Catch::Contains("expected [int32], got array"));
  }
  SECTION("std::map") {
    const str_int_map m{{"a", 1}, {"b", -2}};
    CHECK(fx.call<str_int_map>("echo_map", m) == m);
    patio::value v = fx.call("echo_map", m);
    CHECK(v.is_map());
    CHECK(v.size() == 2);
    CHECK(v["a"].as<int>() == 1);
    CHECK(v["b"].as<int>() == -2);
    CHECK(v.to_string() == R"({"a": 1, "b": -2})");
    CHECK_THROWS_WITH(fx.call("echo_map", std::vector<int>{1}), Catch::Contains("expected {str: int32}, got array"));
  }
  SECTION("std::unordered_map") {
    const str_int_umap m{{"x", 10}, {"y", 20}, {"z", 30}};
    CHECK(fx.call<str_int_umap>("echo_umap", m) == m);
    // Maps of either kind are the same on the wire.
    CHECK(fx.call<str_int_map>("echo_umap", str_int_map{{"k", 1}}) == str_int_map{{"k", 1}});
    patio::value v = fx.call("echo_umap", m);
    CHECK(v.size() == 3);
    CHECK(v["z"].as<int>() == 30);
  }
  SECTION("std::optional, present and absent") {
    CHECK(fx.call<std::optional<int>>("echo_opt", std::optional<int>{5}) == 5);
    CHECK(fx.call<std::optional<int>>("echo_opt", 6) == 6);
    CHECK(fx.call<std::optional<int>>("echo_opt", std::optional<int>{}) == std::nullopt);
    CHECK(fx.call("echo_opt", std::optional<int>{}).is_nil());
    CHECK(fx.call("echo_opt", std::optional<int>{}).to_string() == "null");
    CHECK(fx.call<int>("echo_opt", 7) == 7);
  }
  SECTION("omitted trailing optional arguments") {
    CHECK(fx.call<std::optional<int>>("echo_opt") == std::nullopt);
    CHECK(fx.call<std::string>("greet", "Ann") == "Hello, Ann!");
    CHECK(fx.call<std::string>("greet", "Ann", "Hi") == "Hi, Ann!");
    CHECK(fx.call<std::string>("greet", "Ann", "Hi", 2) == "Hi, Ann!Hi, Ann!");
    CHECK(fx.call<std::string>("greet", "Ann", std::optional<std::string>{}, 2) == "Hello, Ann!Hello, Ann!");
  }
  SECTION("std::tuple") {
    const triple t{1, "two", 3.5};
    CHECK(fx.call<triple>("echo_tuple", t) == t);
    // A tuple of other, convertible types takes the encoded path.
    CHECK(fx.call<triple>("echo_tuple", std::tuple<std::int8_t, const char*, float>{1, "two", 3.5f}) == t);
    patio::value v = fx.call("echo_tuple", t);
    CHECK(v.is_array());
    CHECK(v.size() == 3);
    CHECK(v[1].as<std::string>() == "two");
    CHECK(v.to_string() == R"([1, "two", 3.5])");
  }
  SECTION("nested containers") {
    const nested n{{{"a", {1, std::nullopt, 3}}, {"b", {}}}, {}};
    CHECK(fx.call<nested>("echo_nested", n) == n);
    patio::value v = fx.call("echo_nested", n);
    CHECK(v.to_string() == R"([{"a": [1, null, 3], "b": []}, {}])");
    CHECK(v[0]["a"][2].as<int>() == 3);
    CHECK(v[0]["a"][1].is_nil());
    CHECK(v[1].is_map());
    CHECK(v[1].size() == 0);
  }
}

TEST_CASE("structs with PATIO_FIELDS travel as maps", "[codec]") {
  fixture fx;
  SECTION("as result") {
    CHECK(fx.call<point>("make_point", 1.5, -2.0) == point{1.5, -2.0});
    patio::value v = fx.call("make_point", 1, 2);
    CHECK(v.is_map());
    CHECK(v.size() == 2);
    CHECK(v["x"].as<double>() == 1.0);
    CHECK(v["y"].as<double>() == 2.0);
    CHECK(v.to_string() == R"({"x": 1.0, "y": 2.0})");
    CHECK(v.as<point>() == point{1, 2});
  }
  SECTION("as argument") {
    CHECK(fx.call<double>("norm2", point{3, 4}) == 25.0);
    CHECK(fx.call<point>("mirror", point{1, 2}) == point{2, 1});
  }
  SECTION("from a map, in any order and with extra keys") {
    using dmap = std::map<std::string, double>;
    CHECK(fx.call<point>("mirror", dmap{{"y", 2}, {"x", 1}}) == point{2, 1});
    CHECK(fx.call<point>("mirror", dmap{{"z", 9}, {"x", 1}, {"y", 2}}) == point{2, 1});
  }
  SECTION("from a dynamic value") {
    patio::value p = fx.call("make_point", 5, 6);
    CHECK(fx.call<double>("norm2", p) == 61.0);
    CHECK(fx.call<point>("echo_point", p) == point{5, 6});
  }
  SECTION("a wrong type for a struct parameter") {
    auto e = thrown<patio::bad_arguments_error>([&] { fx.call("norm2", 5); });
    REQUIRE(e);
    CHECK_THAT(std::string(e->what()), Catch::Contains("norm2") && Catch::Contains("argument 1") &&
                                           Catch::Contains("point") && Catch::Contains("got int"));
  }
}

TEST_CASE("patio::value is a parameter that accepts anything", "[codec]") {
  fixture fx;
  CHECK(fx.call<std::string>("kind_of", 1) == "int");
  CHECK(fx.call<std::string>("kind_of", -1) == "int");
  CHECK(fx.call<std::string>("kind_of", 1.5) == "float");
  CHECK(fx.call<std::string>("kind_of", true) == "bool");
  CHECK(fx.call<std::string>("kind_of", "s") == "str");
  CHECK(fx.call<std::string>("kind_of", patio::bytes{std::byte{1}}) == "bytes");
  CHECK(fx.call<std::string>("kind_of", std::vector<int>{}) == "array");
  CHECK(fx.call<std::string>("kind_of", str_int_map{}) == "map");
  CHECK(fx.call<std::string>("kind_of", std::optional<int>{}) == "nil");
  CHECK(fx.call<std::string>("kind_of", point{}) == "map");
  CHECK(fx.call<std::string>("show", std::vector<std::string>{"a", "b"}) == R"(["a", "b"])");
  CHECK(fx.call<std::string>("show", point{1, 2}) == R"({"x": 1.0, "y": 2.0})");
  CHECK(fx.call<int>("first_of", std::vector<int>{9, 8}) == 9);
  SECTION("a value passes through unchanged, typed or not") {
    patio::value v = fx.call("echo_nested", nested{{{"k", {1}}}});
    CHECK(fx.call("echo_value", v) == v);
    CHECK(fx.call<patio::value>("echo_value", v) == v);
    CHECK(fx.call<nested>("echo_value", v) == nested{{{"k", {1}}}});
  }
  SECTION("a value that does not fit a typed parameter") {
    patio::value s = fx.call("echo_str", "text");
    CHECK_THROWS_WITH(fx.call("add_ints", 1, s),
                      Catch::Contains("argument 2") && Catch::Contains("expected int32, got str"));
  }
  SECTION("a value as an argument of a typed function") {
    patio::value two = fx.call("echo_i32", 2);
    CHECK(fx.call<int>("add_ints", two, 3) == 5);
  }
  SECTION("a task that throws on its value is a remote error") {
    CHECK_THROWS_AS(fx.call("first_of", 5), patio::remote_error);
    CHECK_THROWS_AS(fx.call("first_of", std::vector<int>{}), patio::remote_error);
  }
}

TEST_CASE("patio::value is the dynamic result of an untyped call", "[codec]") {
  fixture fx;
  const patio::value six = fx.call("sum", 1, 2, 3);
  const patio::value list = fx.call("echo_vec", std::vector<int>{10, 20, 30});
  const patio::value map = fx.call("echo_map", str_int_map{{"one", 1}, {"two", 2}});

  SECTION("inspection") {
    CHECK(six.is_int());
    CHECK_FALSE(six.is_float());
    CHECK_FALSE(six.is_string());
    CHECK_FALSE(six.is_nil());
    CHECK(six.type() == patio::value::kind::integer);
    CHECK(six.size() == 0);
    CHECK(list.is_array());
    CHECK(list.size() == 3);
    CHECK(map.is_map());
    CHECK(map.size() == 2);
    CHECK(fx.call("nothing").is_nil());
    CHECK(fx.call("co_nothing").is_nil());
    CHECK(patio::value{}.is_nil());
  }
  SECTION("conversion") {
    CHECK(six.as<int>() == 6);
    CHECK(six.as<std::uint8_t>() == 6);
    CHECK(six.as<double>() == 6.0);
    CHECK(six.as<patio::value>() == six);
    CHECK(list.as<std::vector<int>>() == std::vector<int>{10, 20, 30});
    CHECK(map.as<str_int_map>() == str_int_map{{"one", 1}, {"two", 2}});
  }
  SECTION("conversion failures") {
    auto e = thrown<patio::type_mismatch_error>([&] { (void)six.as<std::string>(); });
    REQUIRE(e);
    CHECK(e->value() == patio::errc::type_mismatch);
    CHECK_THAT(std::string(e->what()), Catch::Contains("expected str, got int"));
    CHECK_THROWS_AS(list.as<int>(), patio::type_mismatch_error);
    CHECK_THROWS_AS(map.as<std::vector<int>>(), patio::type_mismatch_error);
    CHECK_THROWS_AS(list.as<std::vector<std::string>>(), patio::type_mismatch_error);
    CHECK_THROWS_AS(fx.call("echo_i32", 300).as<std::int8_t>(), patio::type_mismatch_error);
  }
  SECTION("indexing") {
    CHECK(list[0].as<int>() == 10);
    CHECK(list[2].as<int>() == 30);
    CHECK_THROWS_AS(list[3], std::out_of_range);
    CHECK_THROWS_AS(list["k"], patio::type_mismatch_error);
    CHECK(map["two"].as<int>() == 2);
    CHECK_THROWS_AS(map["three"], std::out_of_range);
    CHECK_THROWS_AS(map[0], patio::type_mismatch_error);
    CHECK_THROWS_AS(six[0], patio::type_mismatch_error);
  }
  SECTION("find") {
    REQUIRE(map.find("one"));
    CHECK(map.find("one")->as<int>() == 1);
    CHECK_FALSE(map.find("three"));
    CHECK_FALSE(list.find("one"));
    CHECK_FALSE(six.find("one"));
  }
  SECTION("elements outlive their parent") {
    patio::value element = fx.call("echo_vec_str", std::vector<std::string>{"kept alive"})[0];
    CHECK(element.as<std::string>() == "kept alive");
  }
  SECTION("printing") {
    CHECK(six.to_string() == "6");
    CHECK(list.to_string() == "[10, 20, 30]");
    CHECK(map.to_string() == R"({"one": 1, "two": 2})");
    CHECK(patio::value{}.to_string() == "null");
    CHECK(fmt::format("{}", six) == "6");
    CHECK(fmt::format("{}", list) == "[10, 20, 30]");
    CHECK(fmt::format("<{}>", map) == R"(<{"one": 1, "two": 2}>)");
    CHECK(fmt::format("{}", std::vector<patio::value>{six, six}) == "[6, 6]");
  }
  SECTION("equality") {
    CHECK(six == fx.call("echo_i64", 6));
    CHECK(six == fx.call("echo_u8", 6));
    CHECK_FALSE(six == fx.call("echo_i64", 7));
    CHECK_FALSE(six == fx.call("echo_f64", 6.0));
    CHECK(list == fx.call("echo_vec", std::vector<int>{10, 20, 30}));
    CHECK_FALSE(list == fx.call("echo_vec", std::vector<int>{10, 20}));
    CHECK(map == fx.call("echo_map", str_int_map{{"two", 2}, {"one", 1}}));
    CHECK(patio::value{} == fx.call("nothing"));
    const patio::value copy = list;  // NOLINT(performance-unnecessary-copy-initialization)
    CHECK(copy == list);
  }
}

TEST_CASE("a result of the wrong type is a type_mismatch_error naming the function", "[codec]") {
  fixture fx;
  auto e = thrown<patio::type_mismatch_error>([&] { fx.call<std::string>("answer"); });
  REQUIRE(e);
  CHECK(e->value() == patio::errc::type_mismatch);
  CHECK_THAT(std::string(e->what()), Catch::Contains("answer") && Catch::Contains("expected str, got int"));
  CHECK_THROWS_WITH(fx.call<std::vector<int>>("answer"), Catch::Contains("expected [int32], got int"));
  CHECK_THROWS_WITH(fx.call<int>("nothing"), Catch::Contains("nothing") && Catch::Contains("got nil"));
  CHECK_THROWS_WITH(fx.call<point>("answer"), Catch::Contains("answer") && Catch::Contains("got int"));
}

TEST_CASE("a wrong number of arguments is a bad_arguments_error naming the function", "[codec]") {
  fixture fx;
  SECTION("too few") {
    auto e = thrown<patio::bad_arguments_error>([&] { fx.call("add_ints", 1); });
    REQUIRE(e);
    CHECK(e->value() == patio::errc::bad_arguments);
    CHECK_THAT(std::string(e->what()),
               Catch::Contains("add_ints") && Catch::Contains("expected 2 arguments") && Catch::Contains("got 1"));
    CHECK_THROWS_WITH(fx.call("square"),
                      Catch::Contains("square") && Catch::Contains("expected 1 argument") && Catch::Contains("got 0"));
  }
  SECTION("too many") {
    CHECK_THROWS_WITH(fx.call("add_ints", 1, 2, 3), Catch::Contains("add_ints") && Catch::Contains("got 3"));
    CHECK_THROWS_WITH(fx.call("answer", 1),
                      Catch::Contains("answer") && Catch::Contains("expected 0 arguments") && Catch::Contains("got 1"));
    CHECK_THROWS_AS(fx.call("nothing", 1), patio::bad_arguments_error);
  }
  SECTION("with varargs: at least") {
    auto e = thrown<patio::bad_arguments_error>([&] { fx.call("join"); });
    REQUIRE(e);
    CHECK_THAT(std::string(e->what()),
               Catch::Contains("join") && Catch::Contains("at least 1") && Catch::Contains("got 0"));
  }
  SECTION("with trailing optionals: a range") {
    CHECK_THROWS_WITH(fx.call("greet"),
                      Catch::Contains("greet") && Catch::Contains("1 to 3") && Catch::Contains("got 0"));
    CHECK_THROWS_WITH(fx.call("greet", "a", "b", 1, 2), Catch::Contains("1 to 3") && Catch::Contains("got 4"));
  }
  SECTION("coroutine functions check the same way") {
    CHECK_THROWS_WITH(fx.call("co_twice"), Catch::Contains("co_twice") && Catch::Contains("got 0"));
    CHECK_THROWS_WITH(fx.call("co_twice", "x"), Catch::Contains("co_twice") && Catch::Contains("argument 1") &&
                                                    Catch::Contains("expected int64, got str"));
  }
}

TEST_CASE("a wrong argument type names the position and both types", "[codec]") {
  fixture fx;
  auto e = thrown<patio::bad_arguments_error>([&] { fx.call("add_ints", 1, "two"); });
  REQUIRE(e);
  const std::string what = e->what();
  CHECK_THAT(what, Catch::Contains("add_ints") && Catch::Contains("argument 2") && Catch::Contains("expected int32") &&
                       Catch::Contains("got str"));
  CHECK_THAT(what, !Catch::Contains("argument 1"));
  SECTION("varargs elements count their position from the start") {
    CHECK_THROWS_WITH(fx.call("sum", 1, 2, "x"),
                      Catch::Contains("argument 3") && Catch::Contains("expected int64, got str"));
    CHECK_THROWS_WITH(fx.call("join", ",", "a", 3),
                      Catch::Contains("argument 3") && Catch::Contains("expected str, got int"));
  }
  SECTION("an optional parameter") {
    CHECK_THROWS_WITH(fx.call("greet", "a", "b", "c"),
                      Catch::Contains("argument 3") && Catch::Contains("expected int32?, got str"));
  }
  SECTION("arrays and maps") {
    CHECK_THROWS_WITH(fx.call("add_ints", std::vector<int>{1}, 2),
                      Catch::Contains("argument 1") && Catch::Contains("got array"));
    CHECK_THROWS_WITH(fx.call("concat", "a", str_int_map{}),
                      Catch::Contains("argument 2") && Catch::Contains("got map"));
  }
  SECTION("nil") {
    CHECK_THROWS_WITH(fx.call("square", std::optional<int>{}), Catch::Contains("expected int64, got nil"));
  }
}

TEST_CASE("the typed fast path and the encoded path agree", "[codec]") {
  fixture fx;
  // Exact parameter and result types skip encoding; other types go through
  // MessagePack. Both must give the same answer.
  SECTION("integers") {
    const auto typed = fx.call<std::int64_t>("square", std::int64_t{12});
    CHECK(typed == 144);
    CHECK(fx.call<int>("square", 12) == typed);
    CHECK(fx.call<std::uint16_t>("square", std::uint8_t{12}) == typed);
    CHECK(fx.call("square", 12).as<std::int64_t>() == typed);
    CHECK(fx.call("square", std::int64_t{12}).as<std::int64_t>() == typed);
  }
  SECTION("strings") {
    const auto typed = fx.call<std::string>("concat", std::string("a"), std::string("b"));
    CHECK(typed == "ab");
    CHECK(fx.call<std::string>("concat", "a", std::string_view("b")) == typed);
    CHECK(fx.call("concat", "a", "b").as<std::string>() == typed);
  }
  SECTION("structs") {
    const auto typed = fx.call<point>("mirror", point{1, 2});
    CHECK(typed == point{2, 1});
    CHECK(fx.call<point>("mirror", std::map<std::string, int>{{"x", 1}, {"y", 2}}) == typed);
    CHECK(fx.call("mirror", point{1, 2}).as<point>() == typed);
  }
  SECTION("containers") {
    const str_int_map m{{"a", 1}};
    const auto typed = fx.call<str_int_map>("echo_map", m);
    CHECK(fx.call<str_int_umap>("echo_map", str_int_umap{{"a", 1}}) == str_int_umap{{"a", 1}});
    CHECK(fx.call("echo_map", m).as<str_int_map>() == typed);
  }
  SECTION("errors raised by the task are the same") {
    CHECK_THROWS_AS(fx.call<patio::value>("first_of", patio::value{}), patio::remote_error);
    CHECK_THROWS_AS(fx.call<patio::value>("first_of", 1), patio::remote_error);
  }
}

namespace {

struct by_function_results {
  std::int64_t squared = 0;
  std::string text;
  point mirrored;
  std::int64_t twice = 0;
  std::string first;
};

// The awaited results' types are checked here, their values by the caller.
// (g++ 12 rejects a braced list of std::string inside a co_await expression,
// "array used as initializer", hence the explicit constructors.)
asio::awaitable<by_function_results> calls_by_function(patio::memory_broker& broker) {
  by_function_results out;
  auto squared = co_await broker.call(square, 7);
  static_assert(std::is_same_v<decltype(squared), std::int64_t>);
  out.squared = squared;

  std::string b(1, 'b');
  auto text = co_await broker.call(concat, "a", b);
  static_assert(std::is_same_v<decltype(text), std::string>);
  out.text = text;

  point p{1, 2};
  auto mirrored = co_await broker.call(mirror, p);
  static_assert(std::is_same_v<decltype(mirrored), point>);
  out.mirrored = mirrored;

  auto twice = co_await broker.call(co_twice, 21);
  static_assert(std::is_same_v<decltype(twice), std::int64_t>);
  out.twice = twice;

  patio::value one = co_await broker.call("echo_vec_str", std::vector<std::string>(1, std::string(1, '1')));
  auto v = co_await broker.call(first_of, one);
  static_assert(std::is_same_v<decltype(v), patio::value>);
  out.first = v.to_string();
  co_return out;
}

}  // namespace

TEST_CASE("calls by the function deduce the result type", "[codec]") {
  fixture fx;
  STATIC_REQUIRE(std::is_same_v<decltype(fx.broker.call(square, 1)), asio::awaitable<std::int64_t>>);
  STATIC_REQUIRE(std::is_same_v<decltype(fx.broker.call(nothing)), asio::awaitable<void>>);
  STATIC_REQUIRE(std::is_same_v<decltype(fx.broker.call(co_nothing)), asio::awaitable<void>>);
  STATIC_REQUIRE(std::is_same_v<decltype(fx.broker.call(make_point, 1.0, 2.0)), asio::awaitable<point>>);
  STATIC_REQUIRE(std::is_same_v<decltype(patio::test::run(fx.broker.call(view_size, "x"))), std::size_t>);

  SECTION("inside a coroutine") {
    const auto r = patio::test::run(calls_by_function(fx.broker));
    CHECK(r.squared == 49);
    CHECK(r.text == "ab");
    CHECK(r.mirrored == point{2, 1});
    CHECK(r.twice == 42);
    CHECK(r.first == "\"1\"");
  }
  SECTION("with test::run") {
    CHECK(patio::test::run(fx.broker.call(half, 3.0)) == 1.5);
    CHECK(patio::test::run(fx.broker.call(negate, true)) == false);
    CHECK(patio::test::run(fx.broker.call(answer)) == 42);
    patio::test::run(fx.broker.call(nothing));
    patio::test::run(fx.broker.call(co_nothing));
    CHECK(patio::test::run(fx.broker.call(view_size, std::string("four"))) == 4);
  }
  SECTION("with omitted optionals") {
    CHECK(patio::test::run(fx.broker.call(greet, "Bob")) == "Hello, Bob!");
    CHECK(patio::test::run(fx.broker.call(greet, "Bob", "Hey")) == "Hey, Bob!");
    CHECK(patio::test::run(fx.broker.call(greet, "Bob", "Hey", 2)) == "Hey, Bob!Hey, Bob!");
    CHECK(patio::test::run(fx.broker.call(greet, "Bob", std::nullopt, 2)) == "Hello, Bob!Hello, Bob!");
  }
  SECTION("the result matches a call by name") {
    CHECK(patio::test::run(fx.broker.call(square, 9)) == fx.call<std::int64_t>("square", 9));
    CHECK(patio::test::run(fx.broker.call(mirror, point{3, 4})) == fx.call<point>("mirror", point{3, 4}));
  }
  SECTION("with varargs: the rest of the arguments are spread, as by name") {
    STATIC_REQUIRE(std::is_same_v<decltype(fx.broker.call(sum, 1, 2, 3)), asio::awaitable<std::int64_t>>);
    CHECK(patio::test::run(fx.broker.call(sum, 1, 2, 3)) == 6);
    CHECK(patio::test::run(fx.broker.call(sum)) == 0);
    CHECK(patio::test::run(fx.broker.call(join, "-", "a", "b", "c")) == "a-b-c");
    CHECK(patio::test::run(fx.broker.call(join, "-", "a", "b")) == fx.call<std::string>("join", "-", "a", "b"));
  }
  SECTION("a function registered twice is called by its first name") {
    CHECK(fx.rpc.name_of(registered_twice) == "registered_twice");
    CHECK(patio::test::run(fx.broker.call(registered_twice, 3)) == 3);
  }
  SECTION("an unregistered function") {
    auto e = thrown<patio::unknown_function_error>([&] { patio::test::run(fx.broker.call(unregistered, 1)); });
    REQUIRE(e);
    CHECK(e->value() == patio::errc::unknown_function);
  }
  SECTION("the executor's submit takes a function too") {
    CHECK(patio::test::run(fx.executor.submit(square, 5)) == 25);
    CHECK(patio::test::run(fx.executor.template submit<std::int64_t>("square", 6)) == 36);
  }
}

TEST_CASE("calls by an unknown name fail", "[codec]") {
  fixture fx;
  CHECK_THROWS_AS(fx.call("no_such_function"), patio::no_route_error);
  CHECK_THROWS_WITH(fx.call("no_such_function", 1), Catch::Contains("no_such_function"));
}

TEST_CASE("a call by name owns its arguments once call() returns", "[codec]") {
  fixture fx;
  auto pending = fx.broker.call<std::string>("view_echo", std::string(64, 'a'));  // the temporary dies here
  std::string reuse(64, 'b');                                                     // likely takes the temporary's memory
  CHECK(patio::test::run(std::move(pending)) == std::string(64, 'a'));
  CHECK(reuse.size() == 64);
}

// Bug: describe<patio::bytes>() is "[std::byte]", not "bytes": the partial
// specialisation describer<std::vector<T, A>> in
// include/patio/detail/describe.hpp wins over the primary template's
// std::vector<std::byte> branch, which is dead code. The compiler's spelling
// of std::byte then also feeds strict registries' signature hashes.
TEST_CASE("bytes are called bytes in messages and signatures", "[codec]") {
  fixture fx;
  CHECK(patio::detail::describe<patio::bytes>() == "bytes");
  CHECK(fx.rpc.at("echo_bytes").signature() == "(bytes) -> bytes");
  CHECK_THROWS_WITH(fx.call("echo_bytes", 5), Catch::Contains("expected bytes, got int"));
  CHECK_THROWS_WITH(fx.call<patio::bytes>("answer"), Catch::Contains("expected bytes, got int"));
}

// Bug: call(fn, args...) holds the arguments as fn's decayed parameter types,
// so a std::string_view parameter keeps a view of the caller's string instead
// of a copy (detail::calls::call(call_options, F*, Args&&...) in
// include/patio/detail/calls.hpp). calls.hpp documents "The arguments are
// copied (or moved) before call() returns"; the call by name does this
// (stored_t turns views into std::string).
TEST_CASE("a call by function owns its string arguments once call() returns", "[codec]") {
  fixture fx;
  auto pending = fx.broker.call(view_echo, std::string(64, 'a'));  // the temporary dies here
  std::string reuse(64, 'b');                                      // likely takes the temporary's memory
  CHECK(patio::test::run(std::move(pending)) == std::string(64, 'a'));
  CHECK(reuse.size() == 64);
}
