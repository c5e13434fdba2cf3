// SPDX-License-Identifier: MIT
// The pickle codec against CPython's own pickle: tests/pickle_vectors.py
// produces the vectors (python3 runs as a subprocess), patio decodes them,
// writes them back byte for byte, and python3 loads what patio wrote.
#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/pickle.hpp>
#include <patio/detail/pickle_msgpack.hpp>
#include <patio/error.hpp>
#include <patio/function.hpp>
#include <patio/registry.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace pk = patio::detail::pickle;
using namespace std::literals;

namespace Catch {
template <>
struct StringMaker<pk::object> {
  static std::string convert(const pk::object& o) { return o.repr().substr(0, 300); }
};
}  // namespace Catch

namespace {

using pk::object;

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::string to_hex(std::string_view data) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : data) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

/// Runs tests/pickle_vectors.py with `mode`, `input` on its stdin; its stdout.
std::string python(const std::string& mode, const std::string& input = {}) {
  char path[] = "/tmp/patio-pickle-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream f(path, std::ios::binary);
    f << input;
  }
  const std::string command =
      std::string(PATIO_TEST_PYTHON) + " " + PATIO_TEST_PICKLE_VECTORS + " " + mode + " < " + path;
  FILE* p = popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buffer[65536];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, p)) > 0) out.append(buffer, n);
  const int status = pclose(p);
  std::remove(path);
  INFO(command);
  REQUIRE(status == 0);
  return out;
}

/// name -> pickle bytes, from "name hex" lines.
std::map<std::string, std::string> vectors(const std::string& mode) {
  static std::map<std::string, std::map<std::string, std::string>> cache;
  auto& v = cache[mode];
  if (v.empty()) {
    std::istringstream lines(python(mode));
    std::string name, hex;
    while (lines >> name >> hex) v[name] = from_hex(hex);
  }
  return v;
}

object str(std::string s) { return object::str(std::move(s)); }
object i(std::int64_t v) { return object::integer(v); }
object tup(std::vector<object> v) { return object::tuple(std::move(v)); }
object lst(std::vector<object> v) { return object::list(std::move(v)); }
object dct(object::entries_type e) { return object::dict(std::move(e)); }

object range_list(int n) {
  std::vector<object> v;
  for (int k = 0; k < n; ++k) v.push_back(i(k));
  return lst(std::move(v));
}

object key_dict(int n) {
  object::entries_type e;
  for (int k = 0; k < n; ++k) e.emplace_back(str("k" + std::to_string(k)), i(k));
  return dct(std::move(e));
}

/// What each of pickle_vectors.py's VECTORS is in the pickle model.
std::map<std::string, pk::payload> expected() {
  std::map<std::string, pk::payload> m;
  m["none"] = object::none();
  m["true"] = object::boolean(true);
  m["false"] = object::boolean(false);
  m["int_0"] = i(0);
  m["int_255"] = i(255);
  m["int_256"] = i(256);
  m["int_65535"] = i(65535);
  m["int_65536"] = i(65536);
  m["int_minus_1"] = i(-1);
  m["int_int32_max"] = i(2147483647);
  m["int_int32_min"] = i(-2147483648LL);
  m["int_2_31"] = i(2147483648LL);
  m["int_minus_2_31_minus_1"] = i(-2147483649LL);
  m["int_minus_128_x_2_32"] = i(-128LL * 4294967296LL);
  m["int_minus_129_x_2_32"] = i(-129LL * 4294967296LL);
  m["int_2_40"] = i(1LL << 40);
  m["int_int64_max"] = i(INT64_MAX);
  m["int_int64_min"] = i(INT64_MIN);
  m["float_0"] = object::floating(0.0);
  m["float_minus_0"] = object::floating(-0.0);
  m["float_2_5"] = object::floating(2.5);
  m["float_tiny"] = object::floating(5e-324);
  m["float_inf"] = object::floating(HUGE_VAL);
  m["str_empty"] = str("");
  m["str_a"] = str("a");
  m["str_hello"] = str("hello");
  m["str_utf8"] = str("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
  m["str_255"] = str(std::string(255, 'x'));
  m["str_256"] = str(std::string(256, 'y'));
  m["str_70k"] = str(std::string(70000, 'z'));
  m["bytes_empty"] = object::bytes("");
  m["bytes_one"] = object::bytes(std::string(1, '\0'));
  std::string all;
  for (int k = 0; k < 256; ++k) all += static_cast<char>(k);
  m["bytes_some"] = object::bytes(all);
  m["bytes_70k"] = object::bytes(std::string(70000, '\0'));
  m["tuple_empty"] = tup({});
  m["tuple_1"] = tup({i(1)});
  m["tuple_2"] = tup({i(1), str("two")});
  m["tuple_3"] = tup({i(1), object::floating(2.0), object::none()});
  m["tuple_4"] = tup({i(1), i(2), i(3), i(4)});
  m["tuple_nested"] = tup({tup({}), tup({i(1)}), tup({tup({i(2), i(3)})})});
  m["list_empty"] = lst({});
  m["list_1"] = lst({i(7)});
  m["list_2"] = lst({i(1), i(2)});
  m["list_1000"] = range_list(1000);
  m["list_1001"] = range_list(1001);
  m["list_2500"] = range_list(2500);
  std::vector<object> items;
  for (int k = 0; k < 20000; ++k) items.push_back(str("item " + std::to_string(k)));
  m["list_frames"] = lst(std::move(items));
  m["list_big_bytes"] =
      lst({object::bytes(std::string(70000, 'a')), i(1), object::bytes(std::string(100000, 'b')), str("end")});
  m["list_nested"] = lst({lst({i(1), lst({i(2), lst({i(3), lst({})})})}), dct({{str("k"), lst({object::none()})}})});
  m["singletons"] = lst({str(""), str("a"), str(""), str("a"), object::bytes(""), object::bytes("x"),
                         object::bytes("x"), str("\xc3\xa9"), str("\xc3\xa9"), str("ab"), str("ab")});
  m["dict_empty"] = dct({});
  m["dict_1"] = dct({{str("a"), i(1)}});
  m["dict_3"] = dct({{str("one"), i(1)}, {str("two"), lst({i(2)})}, {str("three"), dct({{str("x"), object::none()}})}});
  m["dict_keys"] = dct({{i(1), str("int")},
                        {object::floating(2.5), str("float")},
                        {object::none(), str("none")},
                        {object::boolean(false), str("bool")},
                        {object::bytes("k"), str("bytes")}});
  m["dict_1000"] = key_dict(1000);
  m["dict_2001"] = key_dict(2001);
  m["call"] = pk::call_request{"mul", {i(2), i(3), i(4)}, {}, std::nullopt};
  m["call_kwargs"] = pk::call_request{"greet", {str("Ann")}, {{"greeting", str("hi")}, {"times", i(2)}}, 5.0};
  m["call_nested"] = pk::call_request{
      "echo", {lst({i(1), i(2)}), dct({{str("k"), tup({i(3), str("x")})}}), object::bytes("raw")}, {}, 0.25};
  m["zero_division"] = pk::exception{"ZeroDivisionError", {str("division by zero")}};
  m["value_error_empty"] = pk::exception{"ValueError", {}};
  m["key_error"] = pk::exception{"KeyError", {str("missing")}};
  m["type_error_2"] = pk::exception{"TypeError", {str("bad"), i(2)}};
  m["file_not_found"] = pk::exception{"FileNotFoundError", {i(2), str("No such file or directory")}};
  return m;
}

std::string describe(const pk::payload& p) {
  if (auto* o = std::get_if<object>(&p)) return o->repr().substr(0, 200);
  if (auto* e = std::get_if<pk::exception>(&p)) return e->type_name + "(" + e->message() + ")";
  return "CallRequest(" + std::get<pk::call_request>(p).func + ")";
}

/// The reader refuses `data` with a protocol_error whose message contains `words`.
void refused(std::string_view data, const std::string& words, const pk::read_limits& limits = {}) {
  INFO("pickle: " << to_hex(data.substr(0, 64)));
  try {
    (void)pk::loads(data, limits);
    FAIL("accepted; expected an error with: " << words);
  } catch (const patio::protocol_error& e) {
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(words) != std::string::npos);
  }
}

/// A pickle by hand: PROTO 5, `body`, nothing else (tests of malformed input).
std::string hand(std::string_view body) { return std::string("\x80\x05", 2) + std::string(body); }

}  // namespace

TEST_CASE("pickles written by CPython decode to the expected values", "[pickle]") {
  const auto python_vectors = vectors("dump");
  const auto want = expected();
  REQUIRE(python_vectors.size() == want.size() + 4);  // and the read-only ones
  for (const auto& [name, value] : want) {
    INFO(name);
    REQUIRE(python_vectors.count(name) == 1);
    const auto got = pk::loads(python_vectors.at(name));
    INFO("got " << describe(got) << ", want " << describe(value));
    CHECK(got == value);
  }
}

TEST_CASE("patio writes the same bytes as CPython's pickle.dumps protocol 5", "[pickle]") {
  const auto python_vectors = vectors("dump");
  for (const auto& [name, value] : expected()) {
    INFO(name);
    const auto ours = pk::dumps(value);
    const auto& theirs = python_vectors.at(name);
    if (ours != theirs) {
      std::size_t k = 0;
      while (k < ours.size() && k < theirs.size() && ours[k] == theirs[k]) ++k;
      INFO("first difference at byte " << k << " of " << ours.size() << " / " << theirs.size());
      INFO("ours   " << to_hex(std::string_view(ours).substr(k > 16 ? k - 16 : 0, 48)));
      INFO("theirs " << to_hex(std::string_view(theirs).substr(k > 16 ? k - 16 : 0, 48)));
      CHECK(ours == theirs);
    } else {
      CHECK(ours == theirs);  // counted: every vector is compared
    }
  }
}

TEST_CASE("python3 loads what patio writes to the expected values", "[pickle]") {
  std::string lines;
  const auto want = expected();
  for (const auto& [name, value] : want) lines += name + " " + to_hex(pk::dumps(value)) + "\n";
  std::istringstream report(python("check", lines));
  std::string line;
  std::size_t ok = 0;
  while (std::getline(report, line)) {
    INFO(line);
    CHECK(line.rfind("ok ", 0) == 0);
    if (line.rfind("ok ", 0) == 0) ++ok;
  }
  CHECK(ok == want.size());
}

TEST_CASE("the reader accepts what CPython writes beyond what patio writes", "[pickle]") {
  const auto v = vectors("dump");
  SECTION("an exception with a note: its __dict__ through BUILD is dropped") {
    const auto e = pk::loads_exception(v.at("read_only_exception_with_note"));
    CHECK(e.type_name == "ValueError");
    CHECK(e.message() == "with a note");
  }
  SECTION("a CallRequest with an int timeout") {
    const auto r = pk::loads_call_request(v.at("read_only_call_int_timeout"));
    CHECK(r.func == "f");
    CHECK(r.timeout == 3.0);
  }
  SECTION("an object shared through the memo is copied where it repeats") {
    const auto o = pk::loads_object(v.at("read_only_shared_list"));
    const auto l = lst({i(1), i(2)});
    CHECK(o == lst({l, l, l}));
  }
  SECTION("protocol 4") { CHECK(pk::loads_object(v.at("read_only_protocol_4")) == lst({str("four"), i(4)})); }
}

TEST_CASE("the reader refuses hostile pickles from CPython with a protocol_error", "[pickle]") {
  const auto h = vectors("hostile");
  const std::map<std::string, std::string> words{
      {"global_os_system", "global posix.system is refused"},
      {"global_builtins_eval", "global builtins.eval is refused"},
      {"global_opcode", "protocol 2 is not supported"},
      {"protocol_2", "protocol 2 is not supported"},
      {"protocol_0", "(LIST) is not supported"},
      {"set", "(EMPTY_SET) is not supported"},
      {"frozenset", "(FROZENSET) is not supported"},
      {"complex", "global builtins.complex is refused"},
      {"bytearray", "(BYTEARRAY8) is not supported"},
      {"int_2_63", "int out of int64 range"},
      {"int_minus_2_63_minus_1", "int out of int64 range"},
      {"int_huge", "int out of int64 range"},
      {"deep_lists", "nested deeper than 256 levels"},
      {"recursive_list", "recursive structure"},
      {"tuple_key", "tuple dict keys are not supported"},
      {"nested_exception", "an exception is only accepted as the whole payload"},
      {"nested_call", "a CallRequest is only accepted as the whole payload"},
      {"class_value", "a class is not a value"},
      {"call_without_args", "CallRequest.args is a NoneType"},
      {"call_int_func", "CallRequest.func is a int"},
      {"call_bad_kwargs_key", "CallRequest.kwargs has a int key"},
      {"call_str_timeout", "CallRequest.timeout is a str"},
  };
  REQUIRE(h.size() == words.size());
  for (const auto& [name, data] : h) {
    INFO(name);
    REQUIRE(words.count(name) == 1);
    refused(data, words.at(name));
  }
}

TEST_CASE("the reader refuses malformed and abusive pickles with a protocol_error", "[pickle]") {
  SECTION("the GLOBAL opcode, even for an allowed class") {
    refused(hand("cbuiltins\nValueError\n)R."sv), "opcode 0x63 (GLOBAL) is not supported");
  }
  SECTION("REDUCE of something that is not an exception class") {
    const std::string cls =
        "\x8c\x17patio.broker.tcp.broker\x8c\x0b"
        "CallRequest\x93";
    refused(hand(cls + ")R."), "REDUCE of patio.broker.tcp.broker.CallRequest is refused");
    refused(hand("\x8c\x01x)R."sv), "REDUCE of a str is refused");
    refused(hand("\x8c\x08"
                 "builtins\x8c\x0aValueError\x93\x8c\x01xR."sv),
            "REDUCE with a str as arguments");
  }
  SECTION("NEWOBJ of an exception, or of CallRequest with arguments") {
    refused(hand("\x8c\x08"
                 "builtins\x8c\x0aValueError\x93)\x81."sv),
            "exceptions arrive as REDUCE");
    const std::string cls =
        "\x8c\x17patio.broker.tcp.broker\x8c\x0b"
        "CallRequest\x93";
    refused(hand(cls + "K\x01\x85\x81."), "NEWOBJ of CallRequest with arguments is refused");
  }
  SECTION("BUILD on anything but a CallRequest or an exception") {
    refused(hand("]}b."sv), "BUILD on a list is refused");
  }
  SECTION("globals that only look allowed") {
    refused(hand("\x8c\x08"
                 "builtins\x8c\x04open\x93."sv),
            "global builtins.open is refused");
    refused(hand("\x8c\x02os\x8c\x06system\x93."sv), "global os.system is refused");
    refused(hand("\x8c\x17patio.broker.tcp.broker\x8c\x05Other\x93."sv), "is refused");
    refused(hand("K\x01K\x02\x93."sv), "module and name must be str");
  }
  SECTION("memo abuse") {
    refused(hand("h\x00."sv), "memo key 0 not found");
    refused(hand("N\x94j\x01\x00\x00\x00."sv), "memo key 1 not found");
    refused(hand("\x94."sv), "stack underflow at MEMOIZE");
    pk::read_limits small;
    small.max_memo = 3;
    refused(hand("N\x94\x94\x94\x94."sv), "more than 3 memo entries", small);
    // A list that doubles through the memo at every level: 2^40 objects.
    std::string bomb =
        "]\x94K\x01"
        "a";
    for (int k = 0; k < 40; ++k) bomb += "h" + std::string(1, static_cast<char>(k)) + "\x86\x94";
    refused(hand(bomb + "."), "beyond the limit of objects");
    // A 60 KiB bytes repeated 2000 times: 120 MB of copies.
    std::string big = "](B" + std::string("\x60\xea\x00\x00", 4) + std::string(60000, 'x') + "\x94";
    for (int k = 0; k < 2000; ++k) big += std::string("h\0", 2);
    refused(hand(big + "e."), "beyond the limit of bytes");
  }
  SECTION("deep nesting and open MARKs") {
    refused(hand(std::string(300, '(')), "more than 256 open MARKs");
    std::string deep;
    for (int k = 0; k < 100000; ++k) deep += "]";
    for (int k = 0; k < 99999; ++k) deep += "a";
    refused(hand(deep + "."), "nested deeper than 256 levels");
  }
  SECTION("huge length fields") {
    refused(hand("X\xff\xff\xff\xff"
                 "abc"sv),
            "truncated: BINUNICODE needs 4294967295 bytes, 3 left");
    refused(hand("\x8e\xff\xff\xff\xff\xff\xff\xff\x7f"sv), "truncated: BINBYTES8 needs");
    refused(hand("\x8d\xff\xff\xff\xff\xff\xff\xff\xff"sv), "truncated: BINUNICODE8 needs");
    refused(hand("\x8b\xff\xff\xff\x7f"sv), "truncated: LONG4 needs");
    refused(hand("\x8b\xff\xff\xff\xff"sv), "LONG4 with a negative byte count");
    refused(hand("\x95\xff\xff\xff\xff\xff\xff\xff\xffN."sv), "truncated: FRAME of");
  }
  SECTION("stack and MARK misuse") {
    refused(hand("N\x87."sv), "stack underflow at TUPLE3");
    refused(hand("e."sv), "APPENDS without a MARK");
    refused(hand("(e."sv), "stack underflow at APPENDS");
    refused(hand("}(K\x01u."sv), "SETITEMS with an odd number of items");
    refused(hand("]]K\x01s."sv), "SETITEM on a list");
    refused(hand("}]K\x01s."sv), "unhashable list as a dict key");
    refused(hand("NN."sv), "STOP with 2 objects on the stack");
    refused(hand("(N."sv), "STOP with an open MARK");
    refused(hand("."sv), "STOP with 0 objects on the stack");
    refused(hand("N(a."sv), "stack underflow at APPEND");
  }
  SECTION("truncated data, trailing data, bad text") {
    refused(hand(""sv), "truncated: no STOP");
    refused(hand("N"sv), "truncated: no STOP");
    refused(hand("J\x01\x02"sv), "truncated: BININT needs 4 bytes");
    refused(hand("N.x"sv), "1 bytes after STOP");
    refused(hand("\x8c\x02\xc3\x28."sv), "str is not valid UTF-8");
    refused(hand("\x8c\x02\xc0\x80."sv), "str is not valid UTF-8");
    refused(hand("\x8c\x04\xf4\x90\x80\x80."sv), "str is not valid UTF-8");
    refused("\x80\x06N."sv, "protocol 6 is not supported");
  }
  SECTION("every prefix of every CPython vector") {
    for (const auto& [name, data] : vectors("dump")) {
      if (data.size() > 4096) continue;
      INFO(name);
      for (std::size_t n = 0; n < data.size(); ++n) {
        try {
          (void)pk::loads(std::string_view(data).substr(0, n));
          FAIL("a prefix of " << n << " bytes decoded");
        } catch (const patio::protocol_error&) {
        }
      }
    }
  }
}

TEST_CASE("random corruption of CPython vectors decodes or fails with a protocol_error only", "[pickle]") {
  std::mt19937 rng(1234);
  std::size_t decoded = 0, refused_count = 0;
  for (const auto& [name, data] : vectors("dump")) {
    if (data.size() > 4096) continue;
    for (int round = 0; round < 200; ++round) {
      std::string m = data;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) m[rng() % m.size()] = static_cast<char>(rng());
      pk::payload p;
      try {
        p = pk::loads(m);
      } catch (const patio::protocol_error&) {
        ++refused_count;
        continue;
      }
      // Whatever decoded writes again, and that decodes to the same bytes.
      const auto once = pk::dumps(p);
      CHECK(pk::dumps(pk::loads(once)) == once);
      ++decoded;
    }
  }
  CHECK(decoded > 0);
  CHECK(refused_count > 0);
}

TEST_CASE("the writer refuses what Python could not load", "[pickle]") {
  std::string out = "keep";
  CHECK_THROWS_AS(pk::dump(out, str("\xff")), patio::type_mismatch_error);
  CHECK_THROWS_AS(pk::dump(out, lst({i(1), str("\xed\xa0")})), patio::type_mismatch_error);
  CHECK_THROWS_AS(pk::dump(out, dct({{lst({}), i(1)}})), patio::type_mismatch_error);
  CHECK_THROWS_AS(pk::dump(out, dct({{tup({i(1), dct({})}), i(1)}})), patio::type_mismatch_error);
  CHECK_THROWS_AS(pk::dump(out, pk::exception{"std::runtime_error", {}}), patio::type_mismatch_error);
  CHECK(out == "keep");  // untouched by a failed write
  // A lone surrogate is what Python's "surrogatepass" writes: accepted.
  CHECK(pk::loads_object(pk::dumps(str("\xed\xa0\x80"))) == str("\xed\xa0\x80"));
}

TEST_CASE("the builtin exception names are CPython's", "[pickle]") {
  // Each of them, pickled by python3, decodes as that exception.
  const auto& names = pk::builtin_exception_names();
  CHECK(names.size() == 69);
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(pk::is_builtin_exception("ZeroDivisionError"));
  CHECK_FALSE(pk::is_builtin_exception("complex"));
  CHECK_FALSE(pk::is_builtin_exception("system"));
  for (auto name : {"OSError", "KeyError", "StopIteration", "RecursionError"}) {
    const auto p = pk::dumps(pk::exception{name, {str("m")}});
    CHECK(pk::loads_exception(p).type_name == name);
  }
}

TEST_CASE("exception messages follow Python's str", "[pickle]") {
  CHECK(pk::exception{"ValueError", {}}.message().empty());
  CHECK(pk::exception{"ValueError", {str("bad")}}.message() == "bad");
  CHECK(pk::exception{"KeyError", {str("k")}}.message() == "'k'");
  CHECK(pk::exception{"OSError", {i(2), str("gone")}}.message() == "(2, 'gone')");
  CHECK(pk::exception{"ValueError", {i(5)}}.message() == "5");
  CHECK(object::floating(1.0).repr() == "1.0");
  CHECK(tup({i(1)}).repr() == "(1,)");
  CHECK(object::bytes("a'\x01").repr() == "b\"a'\\x01\"");
}

namespace {

std::int64_t mul(patio::varargs<std::int64_t> values) {
  std::int64_t out = 1;
  for (auto v : values) out *= v;
  return out;
}

std::string greet(std::string name, patio::kwargs kw) {
  std::string out;
  for (int k = 0; k < kw.get<int>("times", 1); ++k) out += kw.get<std::string>("greeting", "hello") + " " + name;
  return out;
}

std::map<std::string, std::vector<double>> scale(std::map<std::string, std::vector<double>> m, double f) {
  for (auto& [k, v] : m)
    for (auto& x : v) x *= f;
  return m;
}

/// Runs a pickled CallRequest through the registry as a server would; the
/// pickled reply (a result, or the exception Python receives).
std::string serve(const patio::registry& rpc, const std::string& request) {
  const auto inv = pk::to_invocation(pk::loads_call_request(request));
  const patio::function* fn = rpc.find(inv->name);
  REQUIRE(fn != nullptr);
  if (!inv->error()) {
    inv->target = fn->impl();
    fn->impl()->invoke(*inv);
  }
  if (inv->error()) return pk::dumps(pk::to_exception(patio::detail::record_of(inv->error())));
  const auto handle = msgpack::unpack(inv->result().data(), inv->result().size());
  return pk::dumps(pk::from_msgpack(handle.get()));
}

}  // namespace

TEST_CASE("pickled arguments convert into typed parameters as MessagePack ones do", "[pickle]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  rpc.add("greet", greet);
  rpc.add("scale", scale);
  SECTION("a CallRequest from python3 runs and its result pickles") {
    const auto v = vectors("dump");
    CHECK(pk::loads_object(serve(rpc, v.at("call"))) == i(24));
    CHECK(pk::loads_object(serve(rpc, v.at("call_kwargs"))) == str("hi Annhi Ann"));
  }
  SECTION("containers convert: a dict of lists, an int into a double") {
    const auto req = pk::dumps(pk::call_request{
        "scale", {dct({{str("a"), lst({i(1), object::floating(2.5)})}}), object::floating(1.5)}, {}, std::nullopt});
    CHECK(pk::loads_object(serve(rpc, req)) == dct({{str("a"), lst({object::floating(1.5), object::floating(3.75)})}}));
  }
  SECTION("an integral double result arrives as an int: msgpack-cxx packs it so") {
    const auto req = pk::dumps(pk::call_request{"scale", {dct({{str("a"), lst({i(1)})}}), i(2)}, {}, std::nullopt});
    CHECK(pk::loads_object(serve(rpc, req)) == dct({{str("a"), lst({i(2)})}}));
  }
  SECTION("bad arguments come back as TypeError") {
    const auto req = pk::dumps(pk::call_request{"mul", {str("x")}, {}, std::nullopt});
    const auto e = pk::loads_exception(serve(rpc, req));
    CHECK(e.type_name == "TypeError");
    CHECK(e.message() == "mul: argument 1: expected int64, got str");
  }
  SECTION("a keyword argument the function cannot take is a TypeError") {
    const auto req = pk::dumps(pk::call_request{"mul", {i(1)}, {{"x", i(1)}}, std::nullopt});
    CHECK(pk::loads_exception(serve(rpc, req)).type_name == "TypeError");
  }
  SECTION("a Python exception becomes a remote error record with its type and message") {
    const auto rec = pk::to_error_record(pk::loads_exception(vectors("dump").at("zero_division")));
    CHECK(rec.code == patio::errc::remote_error);
    CHECK(rec.type_name == "ZeroDivisionError");
    CHECK(rec.message == "division by zero");
  }
  SECTION("MessagePack values with no Python equivalent are refused") {
    msgpack::zone zone;
    CHECK_THROWS_AS(pk::from_msgpack(msgpack::object(std::uint64_t{1} << 63, zone)), patio::type_mismatch_error);
    const auto back = pk::from_msgpack(pk::to_msgpack(tup({i(-5), object::bytes("b"), object::none()}), zone));
    CHECK(back == lst({i(-5), object::bytes("b"), object::none()}));
  }
}
