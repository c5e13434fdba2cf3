# SPDX-License-Identifier: MIT
"""Pickle test vectors from CPython's own pickle, for tests/test_pickle.cpp.

  pickle_vectors.py dump     prints "name hex" per vector: pickle.dumps(v, 5)
  pickle_vectors.py hostile  prints "name hex" per pickle the reader must refuse
  pickle_vectors.py seeds D  writes the small ones into directory D (the seed
                             corpus fuzz/corpus/fuzz_pickle/ was made so)
  pickle_vectors.py check    reads "name hex" lines (patio's output), loads
                             each and prints "ok name" or "FAIL name: why"

Standard library only. The CallRequest is a stand-in for Python patio
0.1.4's patio.broker.tcp.broker.CallRequest dataclass.
"""
import dataclasses
import os
import pickle
import sys
import types
import typing


def _install_call_request():
    names = ["patio", "patio.broker", "patio.broker.tcp", "patio.broker.tcp.broker"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))

    @dataclasses.dataclass(frozen=True)
    class CallRequest:
        func: str
        args: typing.Tuple[typing.Any, ...]
        kwargs: typing.Dict[str, typing.Any]
        timeout: typing.Optional[float] = None

    CallRequest.__module__ = "patio.broker.tcp.broker"
    CallRequest.__qualname__ = "CallRequest"
    sys.modules["patio.broker.tcp.broker"].CallRequest = CallRequest
    return CallRequest


CallRequest = _install_call_request()


def _noted():
    e = ValueError("with a note")
    e.add_note("a note")
    return e


# Equal strs and bytes are distinct objects here unless CPython always shares
# them ("", one-character strs below U+0100, b"", one-byte bytes): the
# writer repeats only those as BINGET. Built at run time so that the
# compiler does not share equal constants.
def _s(text):
    return "".join(list(text))


VECTORS = {
    "none": None,
    "true": True,
    "false": False,
    "int_0": 0,
    "int_255": 255,
    "int_256": 256,
    "int_65535": 65535,
    "int_65536": 65536,
    "int_minus_1": -1,
    "int_int32_max": 2**31 - 1,
    "int_int32_min": -(2**31),
    "int_2_31": 2**31,
    "int_minus_2_31_minus_1": -(2**31) - 1,
    "int_minus_128_x_2_32": -128 * 2**32,
    "int_minus_129_x_2_32": -129 * 2**32,
    "int_2_40": 2**40,
    "int_int64_max": 2**63 - 1,
    "int_int64_min": -(2**63),
    "float_0": 0.0,
    "float_minus_0": -0.0,
    "float_2_5": 2.5,
    "float_tiny": 5e-324,
    "float_inf": float("inf"),
    "str_empty": "",
    "str_a": "a",
    "str_hello": "hello",
    "str_utf8": "h\u00e9llo \u20ac \U0001f600",
    "str_255": "x" * 255,
    "str_256": "y" * 256,
    "str_70k": "z" * 70000,
    "bytes_empty": b"",
    "bytes_one": b"\x00",
    "bytes_some": bytes(range(256)),
    "bytes_70k": bytes(70000),
    "tuple_empty": (),
    "tuple_1": (1,),
    "tuple_2": (1, _s("two")),
    "tuple_3": (1, 2.0, None),
    "tuple_4": (1, 2, 3, 4),
    "tuple_nested": ((), (1,), ((2, 3),)),
    "list_empty": [],
    "list_1": [7],
    "list_2": [1, 2],
    "list_1000": list(range(1000)),
    "list_1001": list(range(1001)),
    "list_2500": list(range(2500)),
    "list_frames": [_s("item %d" % i) for i in range(20000)],
    "list_big_bytes": [b"a" * 70000, 1, b"b" * 100000, _s("end")],
    "list_nested": [[1, [2, [3, []]]], {"k": [None]}],
    "singletons": ["", "a", "", "a", b"", b"x", b"x", "\u00e9", "\u00e9", _s("ab"), _s("ab")],
    "dict_empty": {},
    "dict_1": {"a": 1},
    "dict_3": {_s("one"): 1, _s("two"): [2], _s("three"): {"x": None}},
    "dict_keys": {1: "int", 2.5: "float", None: "none", False: "bool", b"k": "bytes"},
    "dict_1000": {_s("k%d" % i): i for i in range(1000)},
    "dict_2001": {_s("k%d" % i): i for i in range(2001)},
    "call": CallRequest(_s("mul"), (2, 3, 4), {}, None),
    "call_kwargs": CallRequest(_s("greet"), (_s("Ann"),), {_s("greeting"): _s("hi"), _s("times"): 2}, 5.0),
    "call_nested": CallRequest(_s("echo"), ([1, 2], {_s("k"): (3, _s("x"))}, b"raw"), {}, 0.25),
    "zero_division": ZeroDivisionError(_s("division by zero")),
    "value_error_empty": ValueError(),
    "key_error": KeyError(_s("missing")),
    "type_error_2": TypeError(_s("bad"), 2),
    "file_not_found": FileNotFoundError(2, _s("No such file or directory")),
}

# Read but not written by patio: the reader must accept them.
READ_ONLY = {
    "exception_with_note": _noted(),
    "call_int_timeout": CallRequest(_s("f"), (), {}, 3),
    "shared_list": (lambda l: [l, l, l])([1, 2]),
    "protocol_4": None,  # replaced below
}


def _dumps_read_only():
    out = {name: pickle.dumps(v, protocol=5) for name, v in READ_ONLY.items()}
    out["protocol_4"] = pickle.dumps([_s("four"), 4], protocol=4)
    return out


def _hostile():
    out = {}
    out["global_os_system"] = pickle.dumps(os.system, protocol=5)
    out["global_builtins_eval"] = pickle.dumps(eval, protocol=5)
    out["global_opcode"] = pickle.dumps(os.system, protocol=2)
    out["protocol_2"] = pickle.dumps([1, 2], protocol=2)
    out["protocol_0"] = pickle.dumps([1, 2], protocol=0)
    out["set"] = pickle.dumps({1, 2}, protocol=5)
    out["frozenset"] = pickle.dumps(frozenset({1}), protocol=5)
    out["complex"] = pickle.dumps(1 + 2j, protocol=5)
    out["bytearray"] = pickle.dumps(bytearray(b"x"), protocol=5)
    out["int_2_63"] = pickle.dumps(2**63, protocol=5)
    out["int_minus_2_63_minus_1"] = pickle.dumps(-(2**63) - 1, protocol=5)
    out["int_huge"] = pickle.dumps(2**3000, protocol=5)
    nested = []
    for _ in range(300):
        nested = [nested]
    out["deep_lists"] = pickle.dumps(nested, protocol=5)
    recursive = []
    recursive.append(recursive)
    out["recursive_list"] = pickle.dumps(recursive, protocol=5)
    out["tuple_key"] = pickle.dumps({(1, 2): 3}, protocol=5)
    out["nested_exception"] = pickle.dumps([ValueError("x")], protocol=5)
    out["nested_call"] = pickle.dumps([CallRequest("f", (), {})], protocol=5)
    out["class_value"] = pickle.dumps(ValueError, protocol=5)
    out["call_without_args"] = pickle.dumps(CallRequest("f", None, {}), protocol=5)
    out["call_int_func"] = pickle.dumps(CallRequest(1, (), {}), protocol=5)
    out["call_bad_kwargs_key"] = pickle.dumps(CallRequest("f", (), {1: 2}), protocol=5)
    out["call_str_timeout"] = pickle.dumps(CallRequest("f", (), {}, "5"), protocol=5)
    return out


def _same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseException):
        return a.args == b.args and _same(list(a.args), list(b.args))
    if isinstance(a, CallRequest):
        return all(_same(getattr(a, f), getattr(b, f)) for f in ("func", "args", "kwargs", "timeout"))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    return a == b and repr(a) == repr(b)


def main():
    mode = sys.argv[1]
    if mode == "dump":
        for name, v in VECTORS.items():
            print(name, pickle.dumps(v, protocol=5).hex())
        for name, p in _dumps_read_only().items():
            print("read_only_" + name, p.hex())
    elif mode == "hostile":
        for name, p in _hostile().items():
            print(name, p.hex())
    elif mode == "seeds":
        every = {name: pickle.dumps(v, protocol=5) for name, v in VECTORS.items()}
        every.update(("read_only_" + name, p) for name, p in _dumps_read_only().items())
        every.update(("hostile_" + name, p) for name, p in _hostile().items())
        os.makedirs(sys.argv[2], exist_ok=True)
        for name, p in every.items():
            if len(p) <= 4096:
                with open(os.path.join(sys.argv[2], name), "wb") as f:
                    f.write(p)
    elif mode == "check":
        for line in sys.stdin:
            name, data = line.split()
            try:
                got = pickle.loads(bytes.fromhex(data))
            except Exception as e:  # noqa: BLE001 - reported, not raised
                print("FAIL %s: %r" % (name, e))
                continue
            want = VECTORS[name]
            print(("ok %s" % name) if _same(got, want) else ("FAIL %s: got %r" % (name, got)))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
