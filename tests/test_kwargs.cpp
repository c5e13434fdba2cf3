// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

namespace {

std::string greet(std::string name, patio::kwargs kw) {
  std::string out;
  const auto times = kw.get<int>("times", 1);
  for (int i = 0; i < times; ++i) out += kw.get<std::string>("greeting", "Hello") + ", " + name + "!";
  return out;
}

std::int64_t scaled_sum(patio::varargs<std::int64_t> xs, patio::kwargs kw) {
  std::int64_t total = 0;
  for (auto x : xs) total += x;
  return total * kw.get<std::int64_t>("scale", 1);
}

std::string needs(patio::kwargs kw) { return kw.get<std::string>("key"); }

std::int64_t plain(std::int64_t x) { return x; }

asio::awaitable<std::string> co_greet(std::string name, patio::kwargs kw) {
  co_return kw.get<std::string>("greeting", "Hi") + " " + name;
}

struct fixture {
  patio::registry rpc;
  patio::thread_pool_executor executor;
  patio::memory_broker broker;

  fixture() : executor(register_all(rpc), 2), broker(executor) {}

  static patio::registry& register_all(patio::registry& rpc) {
    rpc.add("greet", greet);
    rpc.add("scaled_sum", scaled_sum);
    rpc.add("needs", needs);
    rpc.add("plain", plain);
    rpc.add("co_greet", co_greet);
    return rpc;
  }
};

}  // namespace

TEST_CASE("keyword arguments reach a function that takes patio::kwargs", "[kwargs]") {
  fixture f;
  SECTION("by name") {
    CHECK(patio::test::run(f.broker.call<std::string>("greet", "Ann")) == "Hello, Ann!");
    CHECK(patio::test::run(f.broker.call<std::string>("greet", "Ann", patio::kwargs{{"greeting", "Hi"}})) ==
          "Hi, Ann!");
    CHECK(patio::test::run(f.broker.call<std::string>(
              "greet", "Ann", patio::kwargs{{"greeting", "Yo"}, {"times", 2}})) == "Yo, Ann!Yo, Ann!");
  }
  SECTION("by the function") {
    CHECK(patio::test::run(f.broker.call(greet, "Bo")) == "Hello, Bo!");
    CHECK(patio::test::run(f.broker.call(greet, "Bo", patio::kwargs{{"times", 3}})) ==
          "Hello, Bo!Hello, Bo!Hello, Bo!");
  }
  SECTION("after varargs") {
    CHECK(patio::test::run(f.broker.call<std::int64_t>("scaled_sum", 1, 2, 3)) == 6);
    CHECK(patio::test::run(f.broker.call<std::int64_t>("scaled_sum", 1, 2, 3, patio::kwargs{{"scale", 10}})) == 60);
    CHECK(patio::test::run(f.broker.call(scaled_sum, 4, 5, patio::kwargs{{"scale", 2}})) == 18);
  }
  SECTION("in a coroutine task") {
    patio::async_executor async{f.rpc, 2};
    CHECK(patio::test::run(async.submit<std::string>("co_greet", "Cy", patio::kwargs{{"greeting", "Hey"}})) ==
          "Hey Cy");
  }
  SECTION("a patio::value keyword passes through unchanged") {
    patio::kwargs kw{{"greeting", patio::value(std::string("Ahoy"))}};
    CHECK(patio::test::run(f.broker.call<std::string>("greet", "Di", kw)) == "Ahoy, Di!");
  }
}

TEST_CASE("keyword arguments that do not fit fail with bad_arguments_error", "[kwargs]") {
  fixture f;
  SECTION("a function without patio::kwargs refuses them, naming them") {
    CHECK_THROWS_AS(patio::test::run(f.broker.call("plain", 1, patio::kwargs{{"x", 1}})), patio::bad_arguments_error);
    CHECK_THROWS_WITH(patio::test::run(f.broker.call("plain", 1, patio::kwargs{{"x", 1}, {"y", 2}})),
                      Catch::Contains("plain") && Catch::Contains("'x', 'y'"));
  }
  SECTION("an empty patio::kwargs is no keyword at all") {
    CHECK(patio::test::run(f.broker.call<std::int64_t>("plain", 7, patio::kwargs{})) == 7);
  }
  SECTION("a missing required keyword") {
    CHECK_THROWS_AS(patio::test::run(f.broker.call("needs")), patio::remote_error);
    CHECK_THROWS_WITH(patio::test::run(f.broker.call("needs")), Catch::Contains("missing keyword argument 'key'"));
    CHECK(patio::test::run(f.broker.call<std::string>("needs", patio::kwargs{{"key", "v"}})) == "v");
  }
  SECTION("a keyword of the wrong type") {
    CHECK_THROWS_WITH(patio::test::run(f.broker.call("greet", "Ann", patio::kwargs{{"times", "two"}})),
                      Catch::Contains("expected int32, got str"));
  }
}

TEST_CASE("patio::kwargs behaves as a small map", "[kwargs]") {
  patio::kwargs kw{{"a", 1}, {"b", "two"}};
  CHECK(kw.size() == 2);
  CHECK(kw.contains("a"));
  CHECK_FALSE(kw.contains("c"));
  CHECK(kw.get<int>("a") == 1);
  CHECK(kw.get<std::string>("b") == "two");
  CHECK(kw.get<int>("c", 3) == 3);
  CHECK_THROWS_AS(kw.get<int>("c"), patio::bad_arguments_error);
  CHECK_THROWS_AS(kw.get<int>("b"), patio::type_mismatch_error);
  kw.set("a", patio::value(5));
  CHECK(kw.size() == 2);
  CHECK(kw.get<int>("a") == 5);
  CHECK(kw == patio::kwargs{{"b", "two"}, {"a", 5}});
  CHECK_FALSE(kw == patio::kwargs{{"a", 5}});
  CHECK(patio::function(patio::detail::make_function(greet)).signature() == "(str, **kwargs) -> str");
  CHECK(patio::function(patio::detail::make_function(scaled_sum)).signature() == "(...int64, **kwargs) -> int64");
}
