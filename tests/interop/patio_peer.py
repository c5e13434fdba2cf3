# SPDX-License-Identifier: MIT
"""A stand-in for Python patio 0.1.4's TCP broker, for patio-cpp's interop tests.

The C++ tests run it against patio-cpp's opt-in "patio compat" mode and check
that both sides understand each other byte for byte:

  patio_peer.py server --port-file PATH [--key KEY] [--tls-cert C --tls-key K
                [--tls-ca CA]] [--call-back]
      listens on 127.0.0.1 (port 0), writes "PORT\\n" to PATH once listening,
      serves until SIGTERM/SIGINT, stdin EOF or a call to goodbye(); exit 0.
      With --port-file -, it prints "serving on 127.0.0.1:PORT" instead and
      stops at SIGTERM/SIGINT or goodbye() only.
  patio_peer.py client --port P [--host H] [--key KEY] [--tls-ca CA
                [--tls-cert C --tls-key K] [--server-name N]]
                [--expect-refused] [--hostile] [--stay SECONDS]
      calls the C++ server's functions, prints "ok CHECK" or "FAIL CHECK: why"
      per check, then serves its own functions until goodbye() or --stay;
      exit 0 all passed, 1 a check failed, 2 could not connect.
  patio_peer.py selftest
      runs a server and clients against each other in-process; exit 0 if
      every check passed.

Standard library only. The CallRequest is a stand-in for patio's
patio.broker.tcp.broker.CallRequest dataclass, installed as that module.

Protocol (patio 0.1.4 TCP). A frame is a 9-byte header struct "!bII" (int8
type, uint32 payload size, uint32 serial) and a payload, which is always
pickle.dumps(obj, HIGHEST_PROTOCOL). Each side numbers the frames it starts
from 1 (never 0); a RESPONSE, ERROR or DISCOVER_RESPONSE echoes its request's.
  1. server -> AUTH_DIGEST(16 random bytes). The client keeps that payload P
     (the pickle itself) and answers AUTH_REQUEST((salt, digest, P)) with
     salt = 4 random bytes, digest = blake2s(P, key=KEY, salt=salt).
     Server: digest matches -> AUTH_OK(None), else it closes the connection.
  2. Each side sends DISCOVER_REQUEST(None) and answers the other's with
     DISCOVER_RESPONSE([function names]).
  3. Either side sends REQUEST(CallRequest(func, args, kwargs, timeout)); the
     answer is RESPONSE(result) or ERROR(exception instance). Payloads are
     read by a restricted unpickler: CallRequest and builtin exception classes
     are the only globals it loads.

Unlike patio, whose unpickler refuses only builtins, os, sys, posix and
_winapi globals other than exceptions, this one refuses every other module
too; and a call's timeout bounds only the caller's wait, the callee does not
enforce it.
"""
import argparse
import builtins
import dataclasses
import enum
import hashlib
import hmac
import io
import math
import os
import pickle
import queue
import random
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import typing
import uuid

HEADER = struct.Struct("!bII")
AUTH_TIMEOUT = 10.0  # seconds for each handshake and discovery step
CALL_TIMEOUT = 10.0  # a call without a timeout of its own waits this long
IO_TIMEOUT = 10.0  # for one sendall()
POLL_INTERVAL = 0.2  # how soon waiting loops notice a close or a stop
REPORT_WAIT = 5.0  # callback_report() waits this long for the callbacks
HOSTILE_REPLY_TIMEOUT = 5.0
HOSTILE_DEPTH = 100000


class Kind(enum.IntEnum):
    AUTH_DIGEST = 0
    AUTH_REQUEST = 1
    AUTH_RESPONSE = 2
    AUTH_OK = 3
    DISCOVER_REQUEST = 5
    DISCOVER_RESPONSE = 6
    REQUEST = 10
    RESPONSE = 20
    ERROR = 30


# The stand-in patio.broker.tcp.broker.CallRequest dataclass, shared with the
# pickle tests' vector script one directory up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pickle_vectors import CallRequest  # noqa: E402


class CustomError(Exception):
    """raise_custom() raises it: its pickle names the non-builtin __main__.CustomError."""


def log(message):
    sys.stderr.write("patio_peer: %s\n" % message)  # one write: threads do not interleave
    sys.stderr.flush()


# --- pickles -----------------------------------------------------------------


def dumps(obj):
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class RestrictedUnpickler(pickle.Unpickler):
    """Loads CallRequest and builtin exception classes; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) == ("patio.broker.tcp.broker", "CallRequest"):
            return CallRequest
        found = getattr(builtins, name, None) if module == "builtins" else None
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
        raise pickle.UnpicklingError("global %s.%s is not allowed" % (module, name))


def loads(data):
    return RestrictedUnpickler(io.BytesIO(data)).load()


# --- frames over a socket ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Frame:
    kind: int
    serial: int
    payload: bytes


class Channel:
    """Frames over one plain or TLS socket.

    Every socket operation runs under one lock, reads included, because an
    ssl.SSLSocket must not be used by two threads at once: reads are
    non-blocking and wait in select() outside the lock, so a writer never
    waits long and a reader notices close() within POLL_INTERVAL.
    """

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._closed = threading.Event()

    def send(self, kind, serial, payload):
        data = HEADER.pack(kind, len(payload), serial) + payload
        with self._lock:
            if self._closed.is_set():
                raise ConnectionError("connection closed")
            self._sock.settimeout(IO_TIMEOUT)
            self._sock.sendall(data)

    def receive(self, timeout=None):
        """The next frame, or None once the connection is over.

        Raises TimeoutError if no whole frame came within `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._fill(HEADER.size, deadline):
            return None
        kind, size, serial = HEADER.unpack_from(self._buffer)
        if not self._fill(HEADER.size + size, deadline):
            return None
        payload = bytes(self._buffer[HEADER.size : HEADER.size + size])
        del self._buffer[: HEADER.size + size]
        return Frame(kind, serial, payload)

    def close(self):
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def _fill(self, wanted, deadline):
        while len(self._buffer) < wanted:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("no frame within the time allowed")
            chunk = self._read_some()
            if chunk == b"":
                return False
            if chunk is None:
                self._wait_readable(deadline)
            else:
                self._buffer += chunk
        return True

    def _read_some(self):
        """Bytes read, b"" at EOF or close, None if none are there yet."""
        with self._lock:
            if self._closed.is_set():
                return b""
            try:
                self._sock.setblocking(False)
                return self._sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None
            except OSError:  # reset, TLS alert: the connection is over
                return b""

    def _wait_readable(self, deadline):
        wait = POLL_INTERVAL
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        try:
            select.select([self._sock], [], [], wait)
        except (OSError, ValueError):  # closed meanwhile: _read_some says so
            pass


# --- one connection ----------------------------------------------------------


@dataclasses.dataclass
class Reply:
    kind: int  # Kind.RESPONSE or Kind.ERROR
    value: typing.Any


class Peer:
    """One connection: numbers frames, serves our functions, calls the other side's.

    A reader thread dispatches frames; each incoming call runs in a thread of
    its own. `after_reply(func)` runs once a call's reply went out;
    `on_discovered(peer)` once the other side's DISCOVER_RESPONSE came.
    """

    def __init__(self, channel, functions, *, label, after_reply=None, on_discovered=None):
        self.channel = channel
        self.functions = functions
        self.label = label
        self.peer_functions = None
        self.discovered = threading.Event()
        self.closed = threading.Event()
        self._after_reply = after_reply
        self._on_discovered = on_discovered
        self._serial = 0
        self._serial_lock = threading.Lock()
        self._waiters = {}
        self._waiters_lock = threading.Lock()

    def next_serial(self):
        with self._serial_lock:  # as patio: 1, 2, ..., 2**32 - 2, 1, ...
            self._serial = self._serial + 1 if self._serial + 1 < 0xFFFFFFFF else 1
            return self._serial

    def send(self, kind, obj, serial=None):
        self.channel.send(kind, self.next_serial() if serial is None else serial, dumps(obj))

    def start(self):
        """After the handshake: read frames, and ask what the other side offers."""
        threading.Thread(target=self._read_loop, name=self.label + " reader", daemon=True).start()
        self.send(Kind.DISCOVER_REQUEST, None)

    def close(self):
        self.channel.close()
        self.closed.set()
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.put(Reply(Kind.ERROR, ConnectionError("connection closed")))

    def request(self, payload, timeout=None):
        """Sends REQUEST(payload) and returns the Reply; TimeoutError if none comes in time."""
        waiter = queue.SimpleQueue()  # gets the one Reply
        serial = self.next_serial()
        with self._waiters_lock:
            self._waiters[serial] = waiter
        try:
            self.channel.send(Kind.REQUEST, serial, payload)
            wait = CALL_TIMEOUT if timeout is None else timeout
            try:
                return waiter.get(timeout=wait)
            except queue.Empty:
                raise TimeoutError("no reply to serial %d within %.1f s" % (serial, wait)) from None
        finally:
            with self._waiters_lock:
                self._waiters.pop(serial, None)  # a late reply is dropped

    def call(self, func, *args, timeout=None, **kwargs):
        reply = self.request(dumps(CallRequest(func, args, kwargs, timeout)), timeout)
        if reply.kind == Kind.RESPONSE:
            return reply.value
        if isinstance(reply.value, Exception):
            raise reply.value
        raise ValueError("ERROR frame carried %r" % (reply.value,))

    def _read_loop(self):
        try:
            while (frame := self.channel.receive()) is not None:
                self._dispatch(frame)
        except Exception as e:  # noqa: BLE001 - logged; the connection ends
            log("%s: reader stopped: %r" % (self.label, e))
        finally:
            self.close()

    def _dispatch(self, frame):
        handlers = {
            Kind.REQUEST: self._on_request,
            Kind.RESPONSE: self._on_reply,
            Kind.ERROR: self._on_reply,
            Kind.DISCOVER_REQUEST: self._on_discover_request,
            Kind.DISCOVER_RESPONSE: self._on_discover_response,
        }
        handler = handlers.get(frame.kind)
        if handler is None:
            log("%s: ignoring a frame of type %d" % (self.label, frame.kind))
        else:
            handler(frame)

    def _on_request(self, frame):
        threading.Thread(target=self._serve, args=(frame,), name=self.label + " call", daemon=True).start()

    def _serve(self, frame):
        kind, value, func = self._run(frame.payload)
        try:
            payload = dumps(value)
        except Exception as e:  # noqa: BLE001 - the caller gets an error instead
            kind, payload = Kind.ERROR, dumps(ValueError("unpicklable reply: %r" % e))
        try:
            self.channel.send(kind, frame.serial, payload)
        except OSError as e:
            log("%s: reply to serial %d not sent: %r" % (self.label, frame.serial, e))
            return
        if self._after_reply is not None:
            self._after_reply(func)

    def _run(self, payload):
        """(reply kind, reply value, function name or None) for a REQUEST payload."""
        try:
            request = loads(payload)
        except Exception as e:  # noqa: BLE001 - hostile or broken bytes
            return Kind.ERROR, ValueError(str(e)), None
        if not isinstance(request, CallRequest):
            return Kind.ERROR, ValueError("not a CallRequest: %s" % type(request).__name__), None
        function = self.functions.get(request.func)
        if function is None:
            return Kind.ERROR, KeyError(request.func), request.func
        try:
            return Kind.RESPONSE, function(*request.args, **request.kwargs), request.func
        except Exception as e:  # noqa: BLE001 - the caller gets it
            return Kind.ERROR, e, request.func

    def _on_reply(self, frame):
        with self._waiters_lock:
            waiter = self._waiters.pop(frame.serial, None)
        if waiter is None:
            log("%s: dropping a reply to serial %d (late or unknown)" % (self.label, frame.serial))
            return
        try:
            waiter.put(Reply(frame.kind, loads(frame.payload)))
        except Exception as e:  # noqa: BLE001 - the caller gets the reason
            waiter.put(Reply(Kind.ERROR, e))

    def _on_discover_request(self, frame):
        self.send(Kind.DISCOVER_RESPONSE, sorted(self.functions), serial=frame.serial)

    def _on_discover_response(self, frame):
        try:
            names = loads(frame.payload)
        except Exception as e:  # noqa: BLE001 - the discover check reports it
            names = "unreadable: %r" % e
        self.peer_functions = names
        self.discovered.set()
        log("%s: the peer offers %r" % (self.label, names))
        if self._on_discovered is not None:
            self._on_discovered(self)


def server_handshake(peer, key):
    """True if the client proved it knows `key`; the caller closes otherwise."""
    peer.send(Kind.AUTH_DIGEST, uuid.uuid4().bytes)
    frame = peer.channel.receive(AUTH_TIMEOUT)
    if frame is None or frame.kind != Kind.AUTH_REQUEST:
        return False
    try:
        salt, digest, token = loads(frame.payload)
        expected = hashlib.blake2s(token, key=key, salt=salt).digest()
        accepted = hmac.compare_digest(expected, digest)
    except Exception:  # noqa: BLE001 - a malformed AUTH_REQUEST is refused
        return False
    if accepted:
        peer.send(Kind.AUTH_OK, None)
    return accepted


def client_handshake(peer, key):
    """True if the server answered AUTH_OK."""
    frame = peer.channel.receive(AUTH_TIMEOUT)
    if frame is None or frame.kind != Kind.AUTH_DIGEST:
        return False
    salt = random.getrandbits(32).to_bytes(4, "big")
    digest = hashlib.blake2s(frame.payload, key=key, salt=salt).digest()
    peer.send(Kind.AUTH_REQUEST, (salt, digest, frame.payload))
    frame = peer.channel.receive(AUTH_TIMEOUT)
    return frame is not None and frame.kind == Kind.AUTH_OK


# --- the functions each side offers ------------------------------------------


def raise_custom():
    raise CustomError("custom")


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def python_functions():
    """What this stand-in offers, as Python patio would with these registered.

    goodbye() only answers: the after_reply hook then stops the process.
    """
    return {
        "mul": lambda *factors: math.prod(factors),
        "div": lambda a, b: a / b,
        "echo": lambda value: value,
        "kw": lambda a, b=0, *, c=0: [a, b, c],
        "sleep": sleep,
        "raise_custom": raise_custom,
        "goodbye": lambda: "bye",
    }


def _cpp_mul(*factors):
    if not all(type(f) is int for f in factors):
        raise TypeError("mul takes ints")
    return math.prod(factors)


def _cpp_fail(message):
    raise ValueError(message)


# What the C++ test peers offer, as the selftest's Python peers imitate them.
CPP_LIKE_FUNCTIONS = {
    "mul": _cpp_mul,
    "greet": lambda name: "hello, " + name,
    "fail": _cpp_fail,
    "sleep_ms": lambda ms: time.sleep(ms / 1000),
    "echo": lambda value: list(value) if isinstance(value, tuple) else value,
}


# --- checks ------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def same(a, b):
    """Equal and of the same types throughout (True is not 1, b"s" is not "s")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def expect_equal(got, want):
    if not same(got, want):
        raise CheckFailed("got %r, want %r" % (got, want))


def expect_error(call):
    try:
        got = call()
    except Exception as e:  # noqa: BLE001 - that is the point
        return e
    raise CheckFailed("returned %r, want an exception" % (got,))


def returns(want, func, *args, **kwargs):
    """A check: func(*args, **kwargs) returns `want`."""
    return lambda peer: expect_equal(peer.call(func, *args, **kwargs), want)


def raises(accept, wanted, func, *args, **kwargs):
    """A check: func(*args, **kwargs) raises an exception `accept` approves of."""

    def check(peer):
        error = expect_error(lambda: peer.call(func, *args, **kwargs))
        if not accept(error):
            raise CheckFailed("got %r, want %s" % (error, wanted))

    return check


def check_timeout(peer):
    started = time.monotonic()
    error = expect_error(lambda: peer.call("sleep_ms", 2000, timeout=0.2))
    elapsed = time.monotonic() - started
    if not isinstance(error, TimeoutError) or elapsed > 1.0:
        raise CheckFailed("got %r after %.2f s, want TimeoutError within 1 s" % (error, elapsed))


ECHO_VALUE = [1, 2.5, "s", b"b", None, True, {"k": [1, 2]}]
CALLBACK_CHECKS = [
    ("mul", returns(42, "mul", 2, 3, 7)),
    ("greet", returns("hello, py", "greet", "py")),
    ("echo", returns(ECHO_VALUE, "echo", ECHO_VALUE)),
    ("fail", raises(lambda e: type(e).__module__ == "builtins" and "bad" in str(e),
                    "a builtin exception mentioning 'bad'", "fail", "bad")),
    ("mul_type_error", raises(lambda e: isinstance(e, TypeError), "TypeError", "mul", "x", 1, 1)),
]
CLIENT_CHECKS = CALLBACK_CHECKS + [
    ("greet_keyword", returns("hello, kw", "greet", name="kw")),
    ("timeout", check_timeout),
    # A local TimeoutError or ConnectionError would mean no ERROR reply came.
    ("unknown_function", raises(lambda e: not isinstance(e, (TimeoutError, ConnectionError)),
                                "an ERROR reply", "nope")),
]


def hostile_payloads():
    """REQUEST payloads the other side must answer with ERROR, keeping the connection."""
    whole = dumps(CallRequest("mul", (2, 3, 7), {}, None))
    return {
        # PROTO 5, SHORT_BINUNICODE "os", SHORT_BINUNICODE "system", STACK_GLOBAL,
        # TUPLE1, STOP: loading it would look os.system up (nothing calls it).
        "hostile_global_os_system": b"\x80\x05\x8c\x02os\x8c\x06system\x93\x85.",
        # EMPTY_LIST x N, APPEND x N-1, STOP: lists nested N deep.
        "hostile_deep_nesting": b"\x80\x05" + b"]" * HOSTILE_DEPTH + b"a" * (HOSTILE_DEPTH - 1) + b".",
        "hostile_truncated": whole[: len(whole) // 2],
        "hostile_not_pickle": b"hello",
    }


def hostile_checks():
    def expect_error_reply(payload):
        def check(peer):
            reply = peer.request(payload, HOSTILE_REPLY_TIMEOUT)
            if reply.kind != Kind.ERROR:
                raise CheckFailed("got %s %r, want ERROR" % (Kind(reply.kind).name, reply.value))

        return check

    checks = [(name, expect_error_reply(payload)) for name, payload in hostile_payloads().items()]
    return checks + [("mul_after_hostile", returns(42, "mul", 2, 3, 7))]


def run_checks(peer, checks):
    """[(check name, None or why it failed)], in order."""
    outcomes = []
    for name, check in checks:
        try:
            check(peer)
            outcomes.append((name, None))
        except CheckFailed as e:
            outcomes.append((name, str(e)))
        except Exception as e:  # noqa: BLE001 - reported
            outcomes.append((name, "raised %r" % e))
    return outcomes


class CallbackChecks:
    """--call-back: CALLBACK_CHECKS against one client, and their callback_report()."""

    def __init__(self, enabled):
        self._enabled = enabled
        self._done = threading.Event()
        self._failures = []

    def start(self, peer):
        threading.Thread(target=self._run, args=(peer,), name=peer.label + " callbacks", daemon=True).start()

    def report(self):
        """The failures; waits up to REPORT_WAIT for the callbacks to finish."""
        if not self._enabled:
            return ["callbacks not enabled (--call-back)"]
        if not self._done.wait(REPORT_WAIT):
            return ["callbacks not finished"]
        return list(self._failures)

    def _run(self, peer):
        for name, why in run_checks(peer, CALLBACK_CHECKS):
            log("%s: callback %s %s" % (peer.label, name, "ok" if why is None else "FAILED: " + why))
            if why is not None:
                self._failures.append("%s: %s" % (name, why))
        self._done.set()


# --- server ------------------------------------------------------------------


def server_tls_context(cert, key, ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class Server:
    """Accepts connections on 127.0.0.1 and serves each in threads of its own."""

    def __init__(self, key, *, tls=None, call_back=False, extra_functions=None):
        self.stop = threading.Event()
        self._key = key
        self._tls = tls
        self._call_back = call_back
        self._functions = {**python_functions(), **(extra_functions or {})}
        self._peers = []
        self._peers_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_INTERVAL)
        self.port = self._listener.getsockname()[1]

    def start(self):
        threading.Thread(target=self._accept_loop, name="accept", daemon=True).start()

    def close(self):
        self.stop.set()
        self._listener.close()
        with self._peers_lock:
            peers = list(self._peers)
        for peer in peers:
            peer.close()

    def _accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, address = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:  # the listener was closed
                return
            label = "server %s:%d" % address[:2]
            threading.Thread(target=self._serve, args=(conn, label), name=label, daemon=True).start()

    def _serve(self, conn, label):
        conn.settimeout(AUTH_TIMEOUT)
        try:
            sock = self._tls.wrap_socket(conn, server_side=True) if self._tls else conn
        except OSError as e:
            log("%s: TLS handshake failed: %r" % (label, e))
            conn.close()
            return
        checks = CallbackChecks(self._call_back)
        functions = {**self._functions, "callback_report": checks.report}
        peer = Peer(Channel(sock), functions, label=label, after_reply=self._after_reply,
                    on_discovered=checks.start if self._call_back else None)
        with self._peers_lock:
            self._peers.append(peer)
        try:
            authorized = server_handshake(peer, self._key)
        except (OSError, TimeoutError) as e:
            log("%s: handshake failed: %r" % (label, e))
            authorized = False
        if not authorized:
            log("%s: refused" % label)
            peer.close()
            return
        peer.start()

    def _after_reply(self, func):
        if func == "goodbye":
            log("goodbye() called: stopping")
            self.stop.set()


def write_port_file(path, port):
    with open(path + ".tmp", "w") as f:
        f.write("%d\n" % port)
    os.replace(path + ".tmp", path)


def stop_at_stdin_eof(stop):
    def watch():
        while os.read(sys.stdin.fileno(), 4096):
            pass
        log("stdin closed: stopping")
        stop.set()

    threading.Thread(target=watch, name="stdin", daemon=True).start()


def run_server(args):
    tls = server_tls_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    server = Server(args.key.encode(), tls=tls, call_back=args.call_back)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop.set())
    announce = args.port_file == "-"
    if not announce:
        stop_at_stdin_eof(server.stop)
    server.start()
    if announce:
        # For examples/tcp/run_pair.sh, which starts servers with stdin closed
        # and reads the port from their first line.
        print("serving on 127.0.0.1:%d" % server.port, flush=True)
    else:
        write_port_file(args.port_file, server.port)
    log("listening on 127.0.0.1:%d%s" % (server.port, " (TLS)" if tls else ""))
    while not server.stop.wait(POLL_INTERVAL):
        pass
    server.close()
    sys.stdout.flush()
    return 0


# --- client ------------------------------------------------------------------


def client_tls_context(ca, cert, key):
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def authenticate(args, sock, stop):
    """An authenticated Peer, not started yet; None if TLS or the handshake failed."""
    try:
        if args.tls_ca:
            sock.settimeout(AUTH_TIMEOUT)
            context = client_tls_context(args.tls_ca, args.tls_cert, args.tls_key)
            sock = context.wrap_socket(sock, server_hostname=args.server_name)
        peer = Peer(Channel(sock), {**python_functions(), **args.extra_functions}, label="client",
                    after_reply=lambda func: func == "goodbye" and stop.set())
        if client_handshake(peer, args.key.encode()):
            return peer
        log("the server refused the handshake")
    except (OSError, TimeoutError) as e:
        log("handshake failed: %r" % e)
    sock.close()
    return None


def check_discovery(peer):
    if not peer.discovered.wait(AUTH_TIMEOUT):
        raise CheckFailed("no DISCOVER_RESPONSE within %.0f s" % AUTH_TIMEOUT)
    names = peer.peer_functions
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckFailed("got %r, want a list of str" % (names,))


def stay(peer, stop, seconds):
    """Serves the server's calls until goodbye(), a close, or `seconds`."""
    deadline = time.monotonic() + seconds
    while not (stop.is_set() or peer.closed.is_set()) and time.monotonic() < deadline:
        stop.wait(POLL_INTERVAL)


def run_client(args):
    try:
        sock = socket.create_connection((args.host, args.port), timeout=AUTH_TIMEOUT)
    except OSError as e:
        log("cannot connect to %s:%d: %r" % (args.host, args.port, e))
        return 2
    stop = threading.Event()
    peer = authenticate(args, sock, stop)
    if args.expect_refused:
        if peer is not None:
            peer.close()
        print(("ok" if peer is None else "FAIL") + " refused" + ("" if peer is None else ": AUTH_OK came"))
        return 0 if peer is None else 1
    if peer is None:
        print("FAIL handshake: refused")
        return 1
    peer.start()
    checks = [("discover", check_discovery)] + (hostile_checks() if args.hostile else CLIENT_CHECKS)
    outcomes = run_checks(peer, checks + args.extra_checks)
    for name, why in outcomes:
        print("ok " + name if why is None else "FAIL %s: %s" % (name, why), flush=True)
    stay(peer, stop, args.stay)
    peer.close()
    return 0 if all(why is None for _, why in outcomes) else 1


# --- selftest ----------------------------------------------------------------


def selftest_checks(server):
    """Python patio's own functions, seen from the selftest's client; goodbye() last."""

    def goodbye_stops_the_server(peer):
        expect_equal(peer.call("goodbye"), "bye")
        if not server.stop.wait(1.0):
            raise CheckFailed("the server did not stop")

    return [
        ("div_by_zero", raises(lambda e: isinstance(e, ZeroDivisionError), "ZeroDivisionError", "div", 1, 0)),
        ("keywords", returns([1, 0, 3], "kw", 1, c=3)),
        ("custom_error", raises(lambda e: "__main__.CustomError" in str(e),
                                "the reader to refuse __main__.CustomError", "raise_custom")),
        ("callback_report", returns([], "callback_report")),
        ("goodbye", goodbye_stops_the_server),
    ]


def run_selftest():
    server = Server(b"k", call_back=True, extra_functions=CPP_LIKE_FUNCTIONS)
    server.start()
    base = ["client", "--port", str(server.port), "--stay", "0"]
    runs = [
        ("wrong key", base + ["--key", "wrong", "--expect-refused"], []),
        ("hostile", base + ["--key", "k", "--hostile"], []),
        ("checks", base + ["--key", "k"], selftest_checks(server)),
    ]
    failed = []
    try:
        for title, argv, extra_checks in runs:
            log("selftest: %s" % title)
            args = parse_args(argv)
            args.extra_functions, args.extra_checks = CPP_LIKE_FUNCTIONS, extra_checks
            if run_client(args) != 0:
                failed.append(title)
    finally:
        server.close()
    print("selftest: " + ("FAILED: " + ", ".join(failed) if failed else "all passed"))
    return 1 if failed else 0


# --- command line ------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    server = modes.add_parser("server", help="serve the C++ client's tests")
    server.add_argument("--port-file", required=True,
                        help='where to write the port; "-": print it on stdout and ignore stdin')
    server.add_argument("--call-back", action="store_true", help="call the client's functions")
    client = modes.add_parser("client", help="test the C++ server")
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--host", default="127.0.0.1")
    client.add_argument("--server-name", default="localhost", help="TLS server name")
    client.add_argument("--expect-refused", action="store_true")
    client.add_argument("--hostile", action="store_true", help="send hostile pickles")
    client.add_argument("--stay", type=float, default=30.0, help="seconds to serve after the checks")
    for mode in (server, client):
        mode.add_argument("--key", default="", help="the shared key (UTF-8, at most 32 bytes)")
        mode.add_argument("--tls-cert")
        mode.add_argument("--tls-key")
        mode.add_argument("--tls-ca")
    modes.add_parser("selftest", help="run a server and clients against each other")
    args = parser.parse_args(argv)
    if args.mode != "selftest":
        validate(parser, args)
    args.extra_functions, args.extra_checks = {}, []
    return args


def validate(parser, args):
    if len(args.key.encode()) > 32:
        parser.error("--key: blake2s takes at most 32 bytes")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.mode == "server" and args.tls_ca and not args.tls_cert:
        parser.error("--tls-ca needs --tls-cert and --tls-key")
    if args.mode == "client" and args.tls_cert and not args.tls_ca:
        parser.error("--tls-cert needs --tls-ca")


def main(argv):
    args = parse_args(argv)
    if args.mode == "server":
        return run_server(args)
    if args.mode == "client":
        return run_client(args)
    return run_selftest()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
