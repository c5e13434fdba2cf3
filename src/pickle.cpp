// SPDX-License-Identifier: MIT
#include <patio/detail/pickle.hpp>
#include <patio/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <unordered_map>

namespace patio::detail::pickle {

namespace {

// Opcodes (pickletools.py has the reference).
enum op : unsigned char {
  mark_op = '(',
  stop_op = '.',
  binint_op = 'J',
  binint1_op = 'K',
  binint2_op = 'M',
  none_op = 'N',
  reduce_op = 'R',
  binunicode_op = 'X',
  append_op = 'a',
  build_op = 'b',
  empty_dict_op = '}',
  appends_op = 'e',
  binget_op = 'h',
  long_binget_op = 'j',
  empty_list_op = ']',
  setitem_op = 's',
  tuple_op = 't',
  empty_tuple_op = ')',
  setitems_op = 'u',
  binfloat_op = 'G',
  binbytes_op = 'B',
  short_binbytes_op = 'C',
  proto_op = 0x80,
  newobj_op = 0x81,
  tuple1_op = 0x85,
  tuple2_op = 0x86,
  tuple3_op = 0x87,
  newtrue_op = 0x88,
  newfalse_op = 0x89,
  long1_op = 0x8a,
  long4_op = 0x8b,
  short_binunicode_op = 0x8c,
  binunicode8_op = 0x8d,
  binbytes8_op = 0x8e,
  stack_global_op = 0x93,
  memoize_op = 0x94,
  frame_op = 0x95,
};

constexpr std::size_t batch_size = 1000;          // CPython's BATCHSIZE
constexpr std::size_t frame_size_target = 65536;  // CPython's _FRAME_SIZE_TARGET
constexpr std::size_t frame_size_min = 4;         // CPython's _FRAME_SIZE_MIN
constexpr std::size_t frame_header_size = 9;

/// The names of the opcodes the reader refuses, for its messages.
std::string_view opcode_name(unsigned char c) noexcept {
  switch (c) {
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case 'g': return "GET";
    case 'i': return "INST";
    case 'l': return "LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown";
  }
}

[[noreturn]] void fail(const std::string& what) { throw protocol_error("pickle: " + what); }

/// UTF-8 as Python's "surrogatepass" reads and writes it: strict UTF-8, but
/// lone surrogates (ED A0..BF xx) are allowed.
bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  auto cont = [&](const unsigned char* q, int n) {
    if (end - q < n) return false;
    for (int i = 0; i < n; ++i)
      if ((q[i] & 0xc0) != 0x80) return false;
    return true;
  };
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
    } else if (c >= 0xc2 && c <= 0xdf) {
      if (!cont(p + 1, 1)) return false;
      p += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      if (!cont(p + 1, 2)) return false;
      if (c == 0xe0 && p[1] < 0xa0) return false;  // overlong
      p += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      if (!cont(p + 1, 3)) return false;
      if (c == 0xf0 && p[1] < 0x90) return false;  // overlong
      if (c == 0xf4 && p[1] > 0x8f) return false;  // beyond U+10FFFF
      p += 4;
    } else {
      return false;
    }
  }
  return true;
}

/// Code points in `s` if there is exactly one and it is below U+0100, else -1.
int single_latin1(std::string_view s) noexcept {
  if (s.size() == 1 && static_cast<unsigned char>(s[0]) < 0x80) return static_cast<unsigned char>(s[0]);
  if (s.size() == 2) {
    const auto a = static_cast<unsigned char>(s[0]), b = static_cast<unsigned char>(s[1]);
    if ((a == 0xc2 || a == 0xc3) && (b & 0xc0) == 0x80) return ((a & 0x1f) << 6) | (b & 0x3f);
  }
  return -1;
}

/// Text safe to put in an error message: at most `max` bytes, no control bytes.
std::string printable(std::string_view s, std::size_t max = 80) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  if (s.size() > max) out += "...";
  return out;
}

void append_quoted(std::string& out, std::string_view s, bool bytes) {
  const bool single = s.find('\'') == std::string_view::npos || s.find('"') != std::string_view::npos;
  const char quote = single ? '\'' : '"';
  if (bytes) out += 'b';
  out += quote;
  for (unsigned char c : s) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80)) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
}

void append_repr(std::string& out, const object& o) {
  switch (o.type()) {
    case kind::none: out += "None"; break;
    case kind::boolean: out += o.as_bool() ? "True" : "False"; break;
    case kind::integer: out += fmt::format("{}", o.as_int()); break;
    case kind::floating: {
      const double d = o.as_float();
      if (std::isnan(d)) {
        out += "nan";
      } else if (std::isinf(d)) {
        out += d < 0 ? "-inf" : "inf";
      } else {
        auto text = fmt::format("{}", d);
        if (text.find_first_of(".e") == std::string::npos) text += ".0";
        out += text;
      }
      break;
    }
    case kind::str: append_quoted(out, o.as_str(), false); break;
    case kind::bytes: append_quoted(out, o.as_bytes(), true); break;
    case kind::tuple:
    case kind::list: {
      const bool tuple = o.is(kind::tuple);
      out += tuple ? '(' : '[';
      const auto& items = o.items();
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        append_repr(out, items[i]);
      }
      if (tuple && items.size() == 1) out += ',';
      out += tuple ? ')' : ']';
      break;
    }
    case kind::dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : o.entries()) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, k);
        out += ": ";
        append_repr(out, v);
      }
      out += '}';
      break;
    }
  }
}

[[noreturn]] void wrong_kind(kind want, kind got) {
  throw type_mismatch_error(fmt::format("pickle: expected {}, got {}", kind_name(want), kind_name(got)));
}

bool hashable(const object& o) noexcept {
  if (o.is(kind::list) || o.is(kind::dict)) return false;
  if (o.is(kind::tuple))
    return std::all_of(o.items().begin(), o.items().end(), [](const object& i) { return hashable(i); });
  return true;
}

// ---- writer ---------------------------------------------------------------

/// CPython's C pickler (Modules/_pickle.c) for the types of `object`:
/// the same opcodes, memo, batches and frames. Each save_* call stands for
/// one call of CPython's save(), which starts with an opcode boundary: the
/// place where a frame of 64 KiB or more is committed.
class writer {
 public:
  explicit writer(std::string& out) : out_(out) {}

  void begin() {
    out_ += static_cast<char>(proto_op);
    out_ += static_cast<char>(5);
    framing_ = true;
  }

  void end() {
    put(stop_op);
    commit_frame();
  }

  void save(const object& o) {
    boundary();
    switch (o.type()) {
      case kind::none: put(none_op); break;
      case kind::boolean: put(o.as_bool() ? newtrue_op : newfalse_op); break;
      case kind::integer: save_int(o.as_int()); break;
      case kind::floating: save_float(o.as_float()); break;
      case kind::str: save_text(o.as_str(), false); break;
      case kind::bytes: save_text(o.as_bytes(), true); break;
      case kind::tuple: save_tuple_items(o.items()); break;
      case kind::list: save_list_items(o.items()); break;
      case kind::dict: save_dict_entries(o.entries()); break;
    }
  }

  void save_str(std::string_view s) {
    boundary();
    save_text(s, false);
  }

  void save_tuple(const std::vector<object>& items) {
    boundary();
    save_tuple_items(items);
  }

  /// A class as STACK_GLOBAL of its module and name, memoized.
  void save_global(std::string_view module, std::string_view name) {
    boundary();
    save_str(module);
    save_str(name);
    put(stack_global_op);
    memoize();
  }

  void put(unsigned char c) { write(reinterpret_cast<const char*>(&c), 1); }

  void memoize() {
    put(memoize_op);
    ++memo_size_;
  }

  /// A dict of str keys and values, as CPython saves an instance's
  /// __dict__ (fewer than 1000 entries).
  void save_fields(const std::vector<std::pair<std::string_view, const object*>>& fields) {
    boundary();
    put(empty_dict_op);
    memoize();
    if (fields.size() == 1) {
      save_str(fields.front().first);
      save(*fields.front().second);
      put(setitem_op);
    } else if (!fields.empty()) {
      put(mark_op);
      for (const auto& [k, v] : fields) {
        save_str(k);
        save(*v);
      }
      put(setitems_op);
    }
  }

 private:
  void write(const char* data, std::size_t size) {
    if (framing_ && frame_start_ == npos) {
      frame_start_ = out_.size();
      out_.append(frame_header_size, '\xfe');
    }
    out_.append(data, size);
  }

  void commit_frame() {
    if (!framing_ || frame_start_ == npos) return;
    const std::size_t len = out_.size() - frame_start_ - frame_header_size;
    if (len >= frame_size_min) {
      out_[frame_start_] = static_cast<char>(frame_op);
      for (std::size_t i = 0; i < 8; ++i) out_[frame_start_ + 1 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
    } else {
      out_.erase(frame_start_, frame_header_size);
    }
    frame_start_ = npos;
  }

  void boundary() {
    if (framing_ && frame_start_ != npos && out_.size() - frame_start_ - frame_header_size >= frame_size_target)
      commit_frame();
  }

  /// A header and a payload; a payload of a frame's size or more goes
  /// outside any frame, as CPython writes it.
  void write_bytes(const char* header, std::size_t header_size, std::string_view data) {
    const bool bypass = data.size() >= frame_size_target;
    const bool framing = framing_;
    if (bypass) {
      commit_frame();
      framing_ = false;
    }
    write(header, header_size);
    write(data.data(), data.size());
    framing_ = framing;
  }

  void get(std::uint32_t index) {
    if (index < 256) {
      const char b[2] = {static_cast<char>(binget_op), static_cast<char>(index)};
      write(b, 2);
    } else {
      char b[5] = {static_cast<char>(long_binget_op)};
      for (int i = 0; i < 4; ++i) b[1 + i] = static_cast<char>((index >> (8 * i)) & 0xff);
      write(b, 5);
    }
  }

  void save_int(std::int64_t v) {
    char b[10];
    if (v >= 0 && v <= 0xff) {
      b[0] = static_cast<char>(binint1_op);
      b[1] = static_cast<char>(v);
      write(b, 2);
    } else if (v >= 0 && v <= 0xffff) {
      b[0] = static_cast<char>(binint2_op);
      b[1] = static_cast<char>(v & 0xff);
      b[2] = static_cast<char>(v >> 8);
      write(b, 3);
    } else if (v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max()) {
      const auto u = static_cast<std::uint32_t>(static_cast<std::int32_t>(v));
      b[0] = static_cast<char>(binint_op);
      for (int i = 0; i < 4; ++i) b[1 + i] = static_cast<char>((u >> (8 * i)) & 0xff);
      write(b, 5);
    } else {
      // LONG1: the shortest little-endian two's complement.
      const auto u = static_cast<std::uint64_t>(v);
      std::size_t n = 8;
      while (n > 1) {
        const auto top = static_cast<unsigned char>(u >> (8 * (n - 1)));
        const auto next = static_cast<unsigned char>(u >> (8 * (n - 2)));
        if ((top == 0x00 && !(next & 0x80)) || (top == 0xff && (next & 0x80)))
          --n;
        else
          break;
      }
      b[0] = static_cast<char>(long1_op);
      b[1] = static_cast<char>(n);
      for (std::size_t i = 0; i < n; ++i) b[2 + i] = static_cast<char>((u >> (8 * i)) & 0xff);
      write(b, 2 + n);
    }
  }

  void save_float(double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    char b[9] = {static_cast<char>(binfloat_op)};
    for (int i = 0; i < 8; ++i) b[1 + i] = static_cast<char>((bits >> (8 * (7 - i))) & 0xff);
    write(b, 9);
  }

  /// str or bytes. CPython shares "", b"", one-byte bytes and one-character
  /// strs below U+0100 (they are singletons), so they repeat as BINGET.
  void save_text(std::string_view s, bool bytes) {
    if (!bytes && !valid_utf8(s)) throw type_mismatch_error("pickle: str is not valid UTF-8");
    const bool shared = bytes ? s.size() <= 1 : (s.empty() || single_latin1(s) >= 0);
    std::pair<bool, std::string> key;
    if (shared) {
      key = {bytes, std::string(s)};
      if (auto it = singletons_.find(key); it != singletons_.end()) {
        get(it->second);
        return;
      }
    }
    char header[9];
    std::size_t header_size;
    const std::uint64_t n = s.size();
    if (n <= 0xff) {
      header[0] = static_cast<char>(bytes ? short_binbytes_op : short_binunicode_op);
      header[1] = static_cast<char>(n);
      header_size = 2;
    } else if (n <= 0xffffffffu) {
      header[0] = static_cast<char>(bytes ? binbytes_op : binunicode_op);
      for (int i = 0; i < 4; ++i) header[1 + i] = static_cast<char>((n >> (8 * i)) & 0xff);
      header_size = 5;
    } else {
      header[0] = static_cast<char>(bytes ? binbytes8_op : binunicode8_op);
      for (int i = 0; i < 8; ++i) header[1 + i] = static_cast<char>((n >> (8 * i)) & 0xff);
      header_size = 9;
    }
    write_bytes(header, header_size, s);
    if (shared) singletons_.emplace(std::move(key), memo_size_);
    memoize();
  }

  void save_tuple_items(const std::vector<object>& items) {
    if (items.empty()) {
      put(empty_tuple_op);  // not memoized
      return;
    }
    if (items.size() <= 3) {
      for (const auto& i : items) save(i);
      put(static_cast<unsigned char>(tuple1_op + items.size() - 1));
    } else {
      put(mark_op);
      for (const auto& i : items) save(i);
      put(tuple_op);
    }
    memoize();
  }

  void save_list_items(const std::vector<object>& items) {
    put(empty_list_op);
    memoize();
    if (items.empty()) return;
    if (items.size() == 1) {
      save(items.front());
      put(append_op);
      return;
    }
    std::size_t total = 0;
    do {
      put(mark_op);
      std::size_t in_batch = 0;
      while (total < items.size()) {
        save(items[total++]);
        if (++in_batch == batch_size) break;
      }
      put(appends_op);
    } while (total < items.size());
  }

  void save_dict_entries(const object::entries_type& entries) {
    for (const auto& [k, v] : entries)
      if (!hashable(k))
        throw type_mismatch_error("pickle: a dict key of type " + std::string(kind_name(k.type())) +
                                  " cannot be hashed in Python");
    // The boundary of this save() was taken by save(): do not take it twice.
    put(empty_dict_op);
    memoize();
    if (entries.empty()) return;
    if (entries.size() == 1) {
      save(entries.front().first);
      save(entries.front().second);
      put(setitem_op);
      return;
    }
    auto it = entries.begin();
    std::size_t in_batch = 0;
    do {
      put(mark_op);
      in_batch = 0;
      while (it != entries.end()) {
        save(it->first);
        save(it->second);
        ++it;
        if (++in_batch == batch_size) break;
      }
      put(setitems_op);
    } while (in_batch == batch_size);
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::string& out_;
  bool framing_ = false;
  std::size_t frame_start_ = npos;
  std::uint32_t memo_size_ = 0;
  std::map<std::pair<bool, std::string>, std::uint32_t> singletons_;
};

/// Runs `body` on a writer over `out`, restoring `out` if it throws.
template <class Body>
void write_pickle(std::string& out, Body&& body) {
  const auto start = out.size();
  try {
    writer w(out);
    w.begin();
    body(w);
    w.end();
  } catch (...) {
    out.resize(start);
    throw;
  }
}

void save_exception(writer& w, const exception& e) {
  if (!is_builtin_exception(e.type_name))
    throw type_mismatch_error("pickle: " + printable(e.type_name) + " is not a builtin Python exception");
  // CPython's save() of the instance, then save_reduce(): the class, the
  // arguments, REDUCE, the instance memoized.
  w.save_global("builtins", e.type_name);
  w.save_tuple(e.args);
  w.put(reduce_op);
  w.memoize();
}

void save_call_request(writer& w, const call_request& r) {
  // save_reduce() with copyreg.__newobj__: the class, (), NEWOBJ, the
  // instance memoized, then its __dict__ (the dataclass's fields in order)
  // and BUILD.
  w.save_global(call_request_module, call_request_class);
  w.save_tuple({});
  w.put(newobj_op);
  w.memoize();
  const object func = object::str(r.func);
  const object args = object::tuple(r.args);
  object::entries_type kwargs;
  kwargs.reserve(r.kwargs.size());
  for (const auto& [k, v] : r.kwargs) kwargs.emplace_back(object::str(k), v);
  const object kw = object::dict(std::move(kwargs));
  const object timeout = r.timeout ? object::floating(*r.timeout) : object::none();
  w.save_fields({{"func", &func}, {"args", &args}, {"kwargs", &kw}, {"timeout", &timeout}});
  w.put(build_op);
}

// ---- reader ---------------------------------------------------------------

/// One object on the reader's stack or in its memo. Containers hold the
/// indices of their elements, so an object the memo shares is one node, as
/// in Python, however often it is referenced; str and bytes point into the
/// input.
struct node {
  enum class type : std::uint8_t {
    none,
    boolean,
    integer,
    floating,
    str,
    bytes,
    tuple,
    list,
    dict,
    request_class,
    exception_class,
    request,
    exception,
  };
  type t = type::none;
  union {
    std::int64_t i;
    double f;
  } number{0};
  std::string_view text;                // str, bytes, exception class name
  std::vector<std::uint32_t> children;  // tuple, list; dict and request: k, v, ...; exception: [args]
};

std::string_view node_name(node::type t) noexcept {
  switch (t) {
    case node::type::none: return "NoneType";
    case node::type::boolean: return "bool";
    case node::type::integer: return "int";
    case node::type::floating: return "float";
    case node::type::str: return "str";
    case node::type::bytes: return "bytes";
    case node::type::tuple: return "tuple";
    case node::type::list: return "list";
    case node::type::dict: return "dict";
    case node::type::request_class:
    case node::type::exception_class: return "class";
    case node::type::request: return "CallRequest";
    case node::type::exception: return "exception";
  }
  return "?";
}

class reader {
 public:
  reader(std::string_view data, const read_limits& limits)
      : in_(reinterpret_cast<const unsigned char*>(data.data())), size_(data.size()), limits_(limits) {
    if (size_ > std::numeric_limits<std::uint32_t>::max() / 2) fail("larger than 2 GiB");
    objects_budget_ = size_ + limits.max_shared_objects;
    bytes_budget_ = size_ + limits.max_shared_bytes;
    // The atoms every pickle may push many times share one node each.
    nodes_.push_back({node::type::none, {0}, {}, {}});
    nodes_.push_back({node::type::boolean, {0}, {}, {}});
    nodes_.push_back({node::type::boolean, {1}, {}, {}});
    nodes_.push_back({node::type::tuple, {0}, {}, {}});
  }

  payload read() {
    run();
    return finish(stack_.front());
  }

 private:
  static constexpr std::uint32_t none_node = 0, false_node = 1, true_node = 2, empty_tuple_node = 3;

  [[nodiscard]] std::size_t left() const noexcept { return size_ - pos_; }

  const unsigned char* take(std::uint64_t n, std::string_view what) {
    if (n > left()) fail(fmt::format("truncated: {} needs {} bytes, {} left", what, n, left()));
    const auto* p = in_ + pos_;
    pos_ += static_cast<std::size_t>(n);
    return p;
  }

  std::uint64_t take_le(std::size_t n, std::string_view what) {
    const auto* p = take(n, what);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
  }

  std::uint32_t add(node n) {
    nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  void push(std::uint32_t n) { stack_.push_back(n); }

  [[nodiscard]] std::size_t fence() const noexcept { return marks_.empty() ? 0 : marks_.back(); }

  std::uint32_t pop(std::string_view what) {
    if (stack_.size() <= fence()) fail(fmt::format("stack underflow at {}", what));
    const auto n = stack_.back();
    stack_.pop_back();
    return n;
  }

  node& top(std::string_view what) {
    if (stack_.size() <= fence()) fail(fmt::format("stack underflow at {}", what));
    return nodes_[stack_.back()];
  }

  /// Pops the innermost MARK; returns where its items start on the stack.
  std::size_t pop_mark(std::string_view what) {
    if (marks_.empty()) fail(fmt::format("{} without a MARK", what));
    const auto k = marks_.back();
    marks_.pop_back();
    return k;
  }

  /// The container just below a MARK's items (APPENDS, SETITEMS).
  node& below_mark(std::size_t k, node::type want, std::string_view what) {
    if (k == 0 || k - 1 < fence()) fail(fmt::format("stack underflow at {}", what));
    node& n = nodes_[stack_[k - 1]];
    if (n.t != want) fail(fmt::format("{} on a {}", what, node_name(n.t)));
    return n;
  }

  void check_key(std::uint32_t key, std::string_view what) {
    const auto t = nodes_[key].t;
    if (t == node::type::list || t == node::type::dict)
      fail(fmt::format("{}: unhashable {} as a dict key", what, node_name(t)));
    if (t == node::type::tuple) fail(fmt::format("{}: tuple dict keys are not supported", what));
    if (t != node::type::none && t != node::type::boolean && t != node::type::integer && t != node::type::floating &&
        t != node::type::str && t != node::type::bytes)
      fail(fmt::format("{}: a {} as a dict key is not supported", what, node_name(t)));
  }

  void push_int(std::int64_t v) {
    node n{node::type::integer, {0}, {}, {}};
    n.number.i = v;
    push(add(std::move(n)));
  }

  void load_long(std::uint64_t n, std::string_view what) {
    const auto* p = take(n, what);
    if (n == 0) {
      push_int(0);
      return;
    }
    const bool negative = p[n - 1] & 0x80;
    if (n > 8) {
      const unsigned char ext = negative ? 0xff : 0x00;
      for (std::uint64_t i = 8; i < n; ++i)
        if (p[i] != ext) fail(fmt::format("{}: int out of int64 range", what));
      if (static_cast<bool>(p[7] & 0x80) != negative) fail(fmt::format("{}: int out of int64 range", what));
    }
    const std::size_t used = static_cast<std::size_t>(std::min<std::uint64_t>(n, 8));
    std::uint64_t u = negative ? ~std::uint64_t{0} : 0;
    for (std::size_t i = 0; i < used; ++i) {
      u &= ~(std::uint64_t{0xff} << (8 * i));
      u |= std::uint64_t{p[i]} << (8 * i);
    }
    push_int(static_cast<std::int64_t>(u));
  }

  void load_text(std::uint64_t n, bool bytes, std::string_view what) {
    const auto* p = take(n, what);
    const std::string_view text(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    if (!bytes && !valid_utf8(text)) fail(fmt::format("{}: str is not valid UTF-8", what));
    push(add({bytes ? node::type::bytes : node::type::str, {0}, text, {}}));
  }

  void load_tuple(std::size_t n, std::string_view what) {
    if (stack_.size() - fence() < n) fail(fmt::format("stack underflow at {}", what));
    node t{node::type::tuple, {0}, {}, {}};
    t.children.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    push(add(std::move(t)));
  }

  void run() {
    for (;;) {
      if (pos_ >= size_) fail("truncated: no STOP");
      const unsigned char c = in_[pos_++];
      switch (c) {
        case proto_op: {
          const auto v = *take(1, "PROTO");
          if (v < 4 || v > 5) fail(fmt::format("protocol {} is not supported (4 or 5 only)", v));
          break;
        }
        case frame_op: {
          const auto n = take_le(8, "FRAME");
          if (n > left()) fail(fmt::format("truncated: FRAME of {} bytes, {} left", n, left()));
          break;
        }
        case stop_op:
          if (!marks_.empty()) fail("STOP with an open MARK");
          if (stack_.size() != 1) fail(fmt::format("STOP with {} objects on the stack", stack_.size()));
          if (pos_ != size_) fail(fmt::format("{} bytes after STOP", size_ - pos_));
          return;
        case none_op: push(none_node); break;
        case newtrue_op: push(true_node); break;
        case newfalse_op: push(false_node); break;
        case binint_op: push_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4, "BININT")))); break;
        case binint1_op: push_int(static_cast<std::int64_t>(take_le(1, "BININT1"))); break;
        case binint2_op: push_int(static_cast<std::int64_t>(take_le(2, "BININT2"))); break;
        case long1_op: load_long(take_le(1, "LONG1"), "LONG1"); break;
        case long4_op: {
          const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4, "LONG4")));
          if (n < 0) fail("LONG4 with a negative byte count");
          load_long(static_cast<std::uint64_t>(n), "LONG4");
          break;
        }
        case binfloat_op: {
          const auto* p = take(8, "BINFLOAT");
          std::uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
          node n{node::type::floating, {0}, {}, {}};
          std::memcpy(&n.number.f, &bits, sizeof bits);
          push(add(std::move(n)));
          break;
        }
        case short_binunicode_op: load_text(take_le(1, "SHORT_BINUNICODE"), false, "SHORT_BINUNICODE"); break;
        case binunicode_op: load_text(take_le(4, "BINUNICODE"), false, "BINUNICODE"); break;
        case binunicode8_op: load_text(take_le(8, "BINUNICODE8"), false, "BINUNICODE8"); break;
        case short_binbytes_op: load_text(take_le(1, "SHORT_BINBYTES"), true, "SHORT_BINBYTES"); break;
        case binbytes_op: load_text(take_le(4, "BINBYTES"), true, "BINBYTES"); break;
        case binbytes8_op: load_text(take_le(8, "BINBYTES8"), true, "BINBYTES8"); break;
        case empty_tuple_op: push(empty_tuple_node); break;
        case tuple1_op: load_tuple(1, "TUPLE1"); break;
        case tuple2_op: load_tuple(2, "TUPLE2"); break;
        case tuple3_op: load_tuple(3, "TUPLE3"); break;
        case mark_op:
          if (marks_.size() >= limits_.max_depth) fail(fmt::format("more than {} open MARKs", limits_.max_depth));
          marks_.push_back(stack_.size());
          break;
        case tuple_op: {
          const auto k = pop_mark("TUPLE");
          node t{node::type::tuple, {0}, {}, {}};
          t.children.assign(stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
          stack_.resize(k);
          push(add(std::move(t)));
          break;
        }
        case empty_list_op: push(add({node::type::list, {0}, {}, {}})); break;
        case empty_dict_op: push(add({node::type::dict, {0}, {}, {}})); break;
        case append_op: {
          const auto v = pop("APPEND");
          node& l = top("APPEND");
          if (l.t != node::type::list) fail(fmt::format("APPEND on a {}", node_name(l.t)));
          l.children.push_back(v);
          break;
        }
        case appends_op: {
          const auto k = pop_mark("APPENDS");
          node& l = below_mark(k, node::type::list, "APPENDS");
          l.children.insert(l.children.end(), stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
          stack_.resize(k);
          break;
        }
        case setitem_op: {
          const auto v = pop("SETITEM");
          const auto key = pop("SETITEM");
          node& d = top("SETITEM");
          if (d.t != node::type::dict) fail(fmt::format("SETITEM on a {}", node_name(d.t)));
          check_key(key, "SETITEM");
          d.children.push_back(key);
          d.children.push_back(v);
          break;
        }
        case setitems_op: {
          const auto k = pop_mark("SETITEMS");
          node& d = below_mark(k, node::type::dict, "SETITEMS");
          if ((stack_.size() - k) % 2) fail("SETITEMS with an odd number of items");
          for (auto i = k; i < stack_.size(); i += 2) check_key(stack_[i], "SETITEMS");
          d.children.insert(d.children.end(), stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
          stack_.resize(k);
          break;
        }
        case memoize_op:
          if (stack_.size() <= fence()) fail("stack underflow at MEMOIZE");
          if (memo_.size() >= limits_.max_memo) fail(fmt::format("more than {} memo entries", limits_.max_memo));
          memo_.push_back(stack_.back());
          break;
        case binget_op: get(take_le(1, "BINGET"), "BINGET"); break;
        case long_binget_op: get(take_le(4, "LONG_BINGET"), "LONG_BINGET"); break;
        case stack_global_op: load_global(); break;
        case newobj_op: {
          const auto args = pop("NEWOBJ");
          const auto cls = pop("NEWOBJ");
          const node& klass = nodes_[cls];
          if (klass.t == node::type::exception_class)
            fail("NEWOBJ of builtins." + std::string(klass.text) + " is refused: exceptions arrive as REDUCE");
          if (klass.t != node::type::request_class) fail(fmt::format("NEWOBJ of a {} is refused", node_name(klass.t)));
          const node& a = nodes_[args];
          if (a.t != node::type::tuple || !a.children.empty()) fail("NEWOBJ of CallRequest with arguments is refused");
          push(add({node::type::request, {0}, {}, {}}));
          break;
        }
        case reduce_op: {
          const auto args = pop("REDUCE");
          const auto fn = pop("REDUCE");
          const node& f = nodes_[fn];
          if (f.t == node::type::request_class)
            fail("REDUCE of patio.broker.tcp.broker.CallRequest is refused: only builtin exception classes");
          if (f.t != node::type::exception_class)
            fail(fmt::format("REDUCE of a {} is refused: only builtin exception classes", node_name(f.t)));
          if (nodes_[args].t != node::type::tuple)
            fail(fmt::format("REDUCE with a {} as arguments", node_name(nodes_[args].t)));
          node e{node::type::exception, {0}, f.text, {args}};
          push(add(std::move(e)));
          break;
        }
        case build_op: {
          const auto state = pop("BUILD");
          node& o = top("BUILD");
          const node& s = nodes_[state];
          if (o.t == node::type::request) {
            if (s.t == node::type::dict)
              o.children.insert(o.children.end(), s.children.begin(), s.children.end());
            else if (s.t != node::type::none)
              fail(fmt::format("BUILD of CallRequest with a {} state", node_name(s.t)));
          } else if (o.t == node::type::exception) {
            // An exception's __dict__ (e.g. __notes__) is accepted and dropped.
            if (s.t != node::type::dict && s.t != node::type::none)
              fail(fmt::format("BUILD of an exception with a {} state", node_name(s.t)));
          } else {
            fail(fmt::format("BUILD on a {} is refused", node_name(o.t)));
          }
          break;
        }
        default: fail(fmt::format("opcode 0x{:02x} ({}) is not supported", c, opcode_name(c)));
      }
    }
  }

  void get(std::uint64_t index, std::string_view what) {
    if (index >= memo_.size()) fail(fmt::format("{}: memo key {} not found", what, index));
    push(memo_[static_cast<std::size_t>(index)]);
  }

  void load_global() {
    const auto name = pop("STACK_GLOBAL");
    const auto module = pop("STACK_GLOBAL");
    const node& n = nodes_[name];
    const node& m = nodes_[module];
    if (n.t != node::type::str || m.t != node::type::str) fail("STACK_GLOBAL: module and name must be str");
    if (m.text == call_request_module && n.text == call_request_class) {
      push(add({node::type::request_class, {0}, {}, {}}));
    } else if (m.text == "builtins" && is_builtin_exception(n.text)) {
      push(add({node::type::exception_class, {0}, n.text, {}}));
    } else {
      fail("global " + printable(m.text) + "." + printable(n.text) +
           " is refused: only patio.broker.tcp.broker.CallRequest and builtin exception classes");
    }
  }

  // ---- the decoded value: a tree, each shared node copied where it repeats

  void count_object(std::size_t depth) {
    if (depth > limits_.max_depth)
      fail(fmt::format("nested deeper than {} levels, or a recursive structure", limits_.max_depth));
    if (++objects_ > objects_budget_) fail("memo references expand the value beyond the limit of objects");
  }

  object value(std::uint32_t index, std::size_t depth) {
    count_object(depth);
    const node& n = nodes_[index];
    switch (n.t) {
      case node::type::none: return object::none();
      case node::type::boolean: return object::boolean(n.number.i != 0);
      case node::type::integer: return object::integer(n.number.i);
      case node::type::floating: return object::floating(n.number.f);
      case node::type::str:
      case node::type::bytes:
        bytes_ += n.text.size();
        if (bytes_ > bytes_budget_) fail("memo references expand the value beyond the limit of bytes");
        return n.t == node::type::str ? object::str(std::string(n.text)) : object::bytes(std::string(n.text));
      case node::type::tuple:
      case node::type::list: {
        std::vector<object> items;
        items.reserve(n.children.size());
        for (auto c : n.children) items.push_back(value(c, depth + 1));
        return n.t == node::type::tuple ? object::tuple(std::move(items)) : object::list(std::move(items));
      }
      case node::type::dict: return object::dict(entries(n.children, depth));
      case node::type::request_class:
      case node::type::exception_class: fail("a class is not a value");
      case node::type::request: fail("a CallRequest is only accepted as the whole payload");
      case node::type::exception: fail("an exception is only accepted as the whole payload");
    }
    fail("corrupt node");
  }

  /// Key, value pairs as a dict holds them: a repeated key (Python's
  /// equality: 1 == 1.0 == True) keeps its first place and its last value.
  object::entries_type entries(const std::vector<std::uint32_t>& children, std::size_t depth) {
    object::entries_type out;
    out.reserve(children.size() / 2);
    std::unordered_map<std::string, std::size_t> seen;
    for (std::size_t i = 0; i + 1 < children.size(); i += 2) {
      object k = value(children[i], depth + 1);
      object v = value(children[i + 1], depth + 1);
      std::string id;
      bool unique = false;
      switch (k.type()) {
        case kind::none: id = "n"; break;
        case kind::boolean: id = fmt::format("i{}", k.as_bool() ? 1 : 0); break;
        case kind::integer: id = fmt::format("i{}", k.as_int()); break;
        case kind::floating: {
          const double d = k.as_float();
          if (std::isnan(d))
            unique = true;
          else if (d == std::floor(d) && std::fabs(d) < 9.2e18)
            id = fmt::format("i{}", static_cast<std::int64_t>(d));
          else
            id = fmt::format("f{}", d);
          break;
        }
        case kind::str: id = "s" + k.as_str(); break;
        case kind::bytes: id = "b" + k.as_bytes(); break;
        default: unique = true; break;
      }
      if (!unique) {
        auto [it, fresh] = seen.emplace(std::move(id), out.size());
        if (!fresh) {
          out[it->second].second = std::move(v);
          continue;
        }
      }
      out.emplace_back(std::move(k), std::move(v));
    }
    return out;
  }

  payload finish(std::uint32_t root) {
    const node& n = nodes_[root];
    if (n.t == node::type::exception) {
      count_object(0);
      exception e;
      e.type_name = std::string(n.text);
      for (auto c : nodes_[n.children.front()].children) e.args.push_back(value(c, 2));
      return e;
    }
    if (n.t == node::type::request) {
      count_object(0);
      call_request r;
      bool has_func = false, has_args = false, has_kwargs = false;
      for (auto& [k, v] : entries(n.children, 0)) {
        if (!k.is(kind::str)) fail("CallRequest with a non-str field name");
        const auto& name = k.as_str();
        if (name == "func") {
          if (!v.is(kind::str)) fail("CallRequest.func is a " + std::string(kind_name(v.type())) + ", not a str");
          r.func = v.as_str();
          has_func = true;
        } else if (name == "args") {
          if (!v.is(kind::tuple) && !v.is(kind::list))
            fail("CallRequest.args is a " + std::string(kind_name(v.type())) + ", not a tuple");
          r.args = v.items();
          has_args = true;
        } else if (name == "kwargs") {
          if (!v.is(kind::dict)) fail("CallRequest.kwargs is a " + std::string(kind_name(v.type())) + ", not a dict");
          for (const auto& [kk, kv] : v.entries()) {
            if (!kk.is(kind::str)) fail("CallRequest.kwargs has a " + std::string(kind_name(kk.type())) + " key");
            r.kwargs.emplace_back(kk.as_str(), kv);
          }
          has_kwargs = true;
        } else if (name == "timeout") {
          if (v.is(kind::integer))
            r.timeout = static_cast<double>(v.as_int());
          else if (v.is(kind::floating))
            r.timeout = v.as_float();
          else if (!v.is(kind::none))
            fail("CallRequest.timeout is a " + std::string(kind_name(v.type())) + ", not a number or None");
        }
        // Other fields (a later patio's) are ignored.
      }
      if (!has_func || !has_args || !has_kwargs) fail("CallRequest without func, args and kwargs");
      return r;
    }
    return value(root, 0);
  }

  const unsigned char* in_;
  std::size_t size_;
  std::size_t pos_ = 0;
  const read_limits& limits_;
  std::vector<node> nodes_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::vector<std::uint32_t> memo_;
  std::size_t objects_ = 0, objects_budget_ = 0;
  std::size_t bytes_ = 0, bytes_budget_ = 0;
};

constexpr std::array<std::string_view, 69> exception_names{
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BaseException",
    "BaseExceptionGroup",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "BytesWarning",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "DeprecationWarning",
    "EOFError",
    "EncodingWarning",
    "EnvironmentError",
    "Exception",
    "ExceptionGroup",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "FutureWarning",
    "GeneratorExit",
    "IOError",
    "ImportError",
    "ImportWarning",
    "IndentationError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PendingDeprecationWarning",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "ResourceWarning",
    "RuntimeError",
    "RuntimeWarning",
    "StopAsyncIteration",
    "StopIteration",
    "SyntaxError",
    "SyntaxWarning",
    "SystemError",
    "SystemExit",
    "TabError",
    "TimeoutError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "UnicodeWarning",
    "UserWarning",
    "ValueError",
    "Warning",
    "ZeroDivisionError",
};

}  // namespace

std::string_view kind_name(kind k) noexcept {
  switch (k) {
    case kind::none: return "NoneType";
    case kind::boolean: return "bool";
    case kind::integer: return "int";
    case kind::floating: return "float";
    case kind::str: return "str";
    case kind::bytes: return "bytes";
    case kind::tuple: return "tuple";
    case kind::list: return "list";
    case kind::dict: return "dict";
  }
  return "?";
}

bool object::as_bool() const {
  if (kind_ != kind::boolean) wrong_kind(kind::boolean, kind_);
  return std::get<bool>(data_);
}

std::int64_t object::as_int() const {
  if (kind_ != kind::integer) wrong_kind(kind::integer, kind_);
  return std::get<std::int64_t>(data_);
}

double object::as_float() const {
  if (kind_ != kind::floating) wrong_kind(kind::floating, kind_);
  return std::get<double>(data_);
}

const std::string& object::as_str() const {
  if (kind_ != kind::str) wrong_kind(kind::str, kind_);
  return std::get<std::string>(data_);
}

const std::string& object::as_bytes() const {
  if (kind_ != kind::bytes) wrong_kind(kind::bytes, kind_);
  return std::get<std::string>(data_);
}

const object::items_type& object::items() const {
  if (kind_ != kind::tuple && kind_ != kind::list) wrong_kind(kind::list, kind_);
  return std::get<items_type>(data_);
}

const object::entries_type& object::entries() const {
  if (kind_ != kind::dict) wrong_kind(kind::dict, kind_);
  return std::get<entries_type>(data_);
}

std::string object::repr() const {
  std::string out;
  append_repr(out, *this);
  return out;
}

// NOLINTNEXTLINE(bugprone-exception-escape): compares strings and vectors, which never throw.
bool operator==(const object& a, const object& b) noexcept { return a.kind_ == b.kind_ && a.data_ == b.data_; }

std::string exception::message() const {
  if (args.empty()) return {};
  if (args.size() == 1)
    return args.front().is(kind::str) && type_name != "KeyError" ? args.front().as_str() : args.front().repr();
  return object::tuple(args).repr();
}

const std::vector<std::string_view>& builtin_exception_names() noexcept {
  static const std::vector<std::string_view> names(exception_names.begin(), exception_names.end());
  return names;
}

bool is_utf8(std::string_view s) noexcept { return valid_utf8(s); }

bool is_builtin_exception(std::string_view name) noexcept {
  return std::binary_search(exception_names.begin(), exception_names.end(), name);
}

void dump(std::string& out, const object& value) {
  write_pickle(out, [&](writer& w) { w.save(value); });
}

void dump(std::string& out, const call_request& request) {
  write_pickle(out, [&](writer& w) { save_call_request(w, request); });
}

void dump(std::string& out, const exception& error) {
  write_pickle(out, [&](writer& w) { save_exception(w, error); });
}

void dump(std::string& out, const payload& p) {
  std::visit([&](const auto& v) { dump(out, v); }, p);
}

payload loads(std::string_view data, const read_limits& limits) {
  try {
    return reader(data, limits).read();
  } catch (const protocol_error&) {
    throw;
  } catch (const std::bad_alloc&) {
    fail("out of memory");
  } catch (const std::length_error&) {
    fail("out of memory");
  }
}

object loads_object(std::string_view data, const read_limits& limits) {
  auto p = loads(data, limits);
  if (auto* o = std::get_if<object>(&p)) return std::move(*o);
  fail(std::holds_alternative<call_request>(p) ? "expected a value, got a CallRequest"
                                               : "expected a value, got an exception");
}

call_request loads_call_request(std::string_view data, const read_limits& limits) {
  auto p = loads(data, limits);
  if (auto* r = std::get_if<call_request>(&p)) return std::move(*r);
  fail("expected a CallRequest");
}

exception loads_exception(std::string_view data, const read_limits& limits) {
  auto p = loads(data, limits);
  if (auto* e = std::get_if<exception>(&p)) return std::move(*e);
  fail("expected an exception");
}

}  // namespace patio::detail::pickle
