"""The D-Bus wire format of hutch.dbus: marshalling, alignment, messages, and a
Connection against a scripted peer on a unix socket (no root, no dbus-daemon).

Expected bytes are derived by hand from the D-Bus specification ("Marshaling (Wire
Format)" and "Message Format"), plus one message captured from libdbus' dbus-send."""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import uuid

import pytest

from hutch.errors import HutchError
from hutch import dbus
from hutch.dbus import (
    DBusError, DBusTimeoutError, Message, Variant, decode_body, decode_message, encode_body,
    encode_message, message_size, parse_signature,
)

# ---------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------

ROUND_TRIPS = [
    ("y", 0), ("y", 255),
    ("b", True), ("b", False),
    ("n", -0x8000), ("n", 0x7FFF), ("q", 0), ("q", 0xFFFF),
    ("i", -0x8000_0000), ("i", 0x7FFF_FFFF), ("u", 0), ("u", 0xFFFF_FFFF),
    ("x", -(1 << 63)), ("x", (1 << 63) - 1), ("t", 0), ("t", (1 << 64) - 1),
    ("d", 0.0), ("d", -1.5), ("d", 1e308),
    ("s", ""), ("s", "hello"), ("s", "grüße ✓"),
    ("o", "/"), ("o", "/org/freedesktop/systemd1/unit/hutch_2dx_2escope"),
    ("g", ""), ("g", "a{sv}(ii)"),
    ("ay", b""), ("ay", b"\x00\x01\xff"),
    ("as", []), ("as", ["a", "bc"]),
    ("at", [1, 2, 3]), ("a(t)", []), ("a(t)", [(5,)]),
    ("aay", [b"", b"x"]), ("aas", [[], ["x"]]),
    ("a{sv}", {}), ("a{sv}", {"Delegate": Variant("b", True), "PIDs": Variant("au", [1, 2])}),
    ("a{ix}", {-1: 2, 3: -4}), ("a{sa{sv}}", {"a": {"b": Variant("s", "c")}}),
    ("(sq)", ("x", 1)), ("(y(t(s)))", (1, (2, ("z",)))),
    ("a(sv)", [("Description", Variant("s", "hutch")), ("Slice", Variant("s", "system.slice"))]),
    # systemd's StartTransientUnit auxiliary units argument
    ("a(sa(sv))", [("aux.service", [("Description", Variant("s", "aux"))]), ("b.scope", [])]),
    ("v", Variant("s", "x")), ("v", Variant("a(sv)", [("k", Variant("t", 7))])),
    ("v", Variant("(ias)", (1, ["a"]))), ("v", Variant("v", Variant("ay", b"\x01"))),
    ("v", Variant("a{sv}", {"x": Variant("d", 2.5)})),
]


@pytest.mark.parametrize("signature, value", ROUND_TRIPS, ids=[f"{s}-{i}" for i, (s, _) in enumerate(ROUND_TRIPS)])
def test_round_trip_each_type(signature, value):
    for big_endian in (False, True):
        # A leading byte shifts everything off alignment, so padding is exercised too.
        data = encode_body("y" + signature, (7, value), big_endian)
        assert decode_body("y" + signature, data, big_endian) == (7, value)
        assert decode_body(signature, encode_body(signature, (value,), big_endian), big_endian) == (value,)


def test_decoded_python_types():
    body = decode_body("ybdayv", encode_body("ybdayv", (1, True, 2, [1, 2], Variant("i", 3))))
    assert [type(v) for v in body] == [int, bool, float, bytes, Variant]


def test_encode_accepts_alternative_containers():
    assert encode_body("ay", (bytearray(b"ab"),)) == encode_body("ay", (b"ab",))
    assert encode_body("ay", ([97, 98],)) == encode_body("ay", (b"ab",))
    assert encode_body("a{su}", ([("a", 1)],)) == encode_body("a{su}", ({"a": 1},))
    assert encode_body("(ii)", ([1, 2],)) == encode_body("(ii)", ((1, 2),))
    assert encode_body("b", (1,)) == encode_body("b", (True,))


# ---------------------------------------------------------------------------------------
# Alignment: byte strings derived by hand from the specification
# ---------------------------------------------------------------------------------------

def le32(n):
    return struct.pack("<I", n)


HAND_BODIES = [
    # y then q: q is 2-aligned -> one padding byte
    ("yq", (1, 2), b"\x01\x00" + b"\x02\x00"),
    # y then t: 7 padding bytes
    ("yt", (1, 5), b"\x01" + b"\0" * 7 + struct.pack("<Q", 5)),
    # string: u32 length, bytes, NUL (not counted)
    ("s", ("ab",), le32(2) + b"ab\0"),
    # signature: one length byte, bytes, NUL
    ("g", ("as",), b"\x02as\0"),
    # boolean is a 4-byte 0/1
    ("yb", (0, True), b"\0\0\0\0" + le32(1)),
    # empty array of 8-aligned elements: the padding after the length is still there
    ("a(t)", ([],), le32(0) + b"\0" * 4),
    # one element: length 8 counts the element, not the 4 padding bytes before it
    ("a(t)", ([(5,)],), le32(8) + b"\0" * 4 + struct.pack("<Q", 5)),
    # y, pad to 4, length at 4, elements at 8 already aligned: no padding
    ("yat", (1, [5]), b"\x01\0\0\0" + le32(8) + struct.pack("<Q", 5)),
    # array of strings: second string padded to 4 and counted in the array length
    ("as", (["a", "bc"],), le32(15) + le32(1) + b"a\0" + b"\0\0" + le32(2) + b"bc\0"),
    # a{sv}: len@0, pad 4..7, entry@8: s "a" (8..13), v sig "u" (14..16), pad 17..19, u@20
    ("a{sv}", ({"a": Variant("u", 1)},),
     le32(16) + b"\0" * 4 + le32(1) + b"a\0" + b"\x01u\0" + b"\0" * 3 + le32(1)),
    # struct is 8-aligned even when its first member is a byte
    ("y(y)", (1, (2,)), b"\x01" + b"\0" * 7 + b"\x02"),
    # variant holding a struct: sig "(i)" then pad to 8
    ("v", (Variant("(i)", (3,)),), b"\x03(i)\0" + b"\0\0\0" + le32(3)),
    ("ay", (b"\x01\x02\x03",), le32(3) + b"\x01\x02\x03"),
]


@pytest.mark.parametrize("signature, args, expected", HAND_BODIES,
                         ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(HAND_BODIES)])
def test_body_bytes_match_hand_derivation(signature, args, expected):
    assert encode_body(signature, args) == expected
    assert decode_body(signature, expected) == tuple(args)


def test_method_call_header_matches_hand_derivation():
    # Method call, path "/", member "M", serial 7, no body.
    expected = (b"l\x01\x00\x01" + le32(0) + le32(7) + le32(26)
                # field PATH @16: code 1, signature "o", (pad to 4), u32 1, "/\0"  -> ends at 26
                + b"\x01\x01o\x00" + le32(1) + b"/\0"
                # next struct 8-aligned at 32: pad 26..31
                + b"\0" * 6
                # field MEMBER @32: code 3, signature "s", u32 1, "M\0" -> ends at 42 (26 = 42-16)
                + b"\x03\x01s\x00" + le32(1) + b"M\0"
                # header padded to 48 before the (empty) body
                + b"\0" * 6)
    msg = Message(dbus.METHOD_CALL, serial=7, path="/", member="M")
    assert encode_message(msg) == expected
    assert message_size(expected[:16]) == len(expected) == 48
    assert decode_message(expected) == msg


# Captured from libdbus 1.14 (dbus-send --peer ... /org/example/Obj org.example.Iface.Method
# string:hi int32:-5 array:uint64:1,2 dict:string:int32:a,1 variant:double:1.5 objpath:/a/b
# byte:7 boolean:true); tests/priv/test_dbus_daemon.py repeats the capture live.
LIBDBUS_CALL = bytes.fromhex(
    "6c01000150000000010000007b00000001016f00100000002f6f72672f6578616d706c652f4f626a00000000"
    "0000000002017300110000006f72672e6578616d706c652e49666163650000000000000003017300060000004d"
    "6574686f640000060173000f0000006f72672e6578616d706c652e53766300080167000d73696174617b73697d"
    "766f79620000000000000200000068690000fbffffff1000000001000000000000000200000000000000"
    "0c0000000000000001000000610000000100000001640000000000000000f83f040000002f612f6200070000"
    "01000000")
LIBDBUS_MSG = Message(
    dbus.METHOD_CALL, serial=1, path="/org/example/Obj", interface="org.example.Iface",
    member="Method", destination="org.example.Svc", signature="siata{si}voyb",
    body=("hi", -5, [1, 2], {"a": 1}, Variant("d", 1.5), "/a/b", 7, True))


def test_libdbus_message_decodes_and_encodes_identically():
    assert decode_message(LIBDBUS_CALL) == LIBDBUS_MSG
    assert encode_message(LIBDBUS_MSG) == LIBDBUS_CALL


# ---------------------------------------------------------------------------------------
# Big-endian
# ---------------------------------------------------------------------------------------

def test_big_endian_body_by_hand():
    data = b"\x00\x01" + b"\0\0" + b"\xff\xff\xff\xfe" + struct.pack(">I", 1) + b"a\0"
    assert decode_body("nis", data, big_endian=True) == (1, -2, "a")


def test_big_endian_message_by_hand():
    # Signal /a org.x.I.S, serial 3, body "u" 0x01020304, built field by field.
    fields = (b"\x01\x01o\x00" + struct.pack(">I", 2) + b"/a\0" + b"\0" * 5   # 16..26, pad to 32
              + b"\x02\x01s\x00" + struct.pack(">I", 7) + b"org.x.I\0"        # 32..47, aligned
              + b"\x03\x01s\x00" + struct.pack(">I", 1) + b"S\0" + b"\0" * 6  # 48..57, pad to 64
              + b"\x08\x01g\x00" + b"\x01u\0")                                # 64..70: 55 bytes
    assert len(fields) == 55
    header = b"B\x04\x00\x01" + struct.pack(">III", 4, 3, 55) + fields
    data = header + b"\0" * (-len(header) % 8) + b"\x01\x02\x03\x04"
    msg = decode_message(data)
    assert (msg.type, msg.serial, msg.path, msg.interface, msg.member, msg.signature, msg.body) == \
        (dbus.SIGNAL, 3, "/a", "org.x.I", "S", "u", (0x01020304,))
    assert encode_message(msg, big_endian=True) == data
    assert decode_message(encode_message(msg)) == msg   # and little-endian on the way out


# ---------------------------------------------------------------------------------------
# Bad signatures, bad values, malformed messages
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("signature", [
    "a", "(", ")", "()", "(i", "{ss}", "a{s}", "a{sss}", "a{vs}", "a{(i)s}", "z", "ii)",
    "a" * 33 + "i", "(" * 33 + "i" + ")" * 33, "s" * 256, "a{sv", "v{",
])
def test_bad_signatures_raise_dbus_error(signature):
    with pytest.raises(DBusError) as info:
        parse_signature(signature)
    assert info.value.name == dbus.ERR_INVALID_SIGNATURE
    assert repr(signature[:20])[:-1] in info.value.message or "longer than" in info.value.message


def test_deep_but_legal_nesting():
    assert parse_signature("a" * 32 + "i") == ("a" * 32 + "i",)
    assert parse_signature("(" * 32 + "i" + ")" * 32) == ("(" * 32 + "i" + ")" * 32,)


@pytest.mark.parametrize("signature, args", [
    ("i", ("1",)), ("i", (1.0,)), ("u", (-1,)), ("y", (256,)), ("n", (1 << 15,)),
    ("t", (1 << 64,)), ("b", (2,)), ("b", (1.0,)), ("d", ("1",)),
    ("s", (b"x",)), ("s", ("a\0b",)), ("s", ("\udc80",)), ("o", ("no/slash",)), ("o", ("/a/",)),
    ("g", ("a{",)), ("v", (1,)), ("v", (Variant("ii", (1, 2)),)), ("v", (Variant("q", -1),)),
    ("(ii)", ((1,),)), ("(ii)", (1,)), ("a{sv}", (5,)), ("a{sv}", ({"a": 1},)), ("a{sv}", ({1: Variant("s", "")},)),
    ("ay", ([300],)), ("ay", ("abc",)), ("as", ("abc",)), ("as", ([1],)), ("h", (0,)),
    ("ii", (1,)), ("i", 1), ("zz", ()),
])
def test_bad_values_raise_dbus_error(signature, args):
    with pytest.raises(DBusError) as info:
        encode_body(signature, args)
    assert info.value.message   # a sentence, not a bare name
    assert "struct.error" not in str(info.value)


def test_bad_value_message_names_argument_and_type():
    with pytest.raises(DBusError) as info:
        encode_body("su", ("a", "b"))
    assert info.value.name == dbus.ERR_INVALID_ARGS
    assert "argument 1 ('u')" in str(info.value) and "needs an int" in str(info.value)


def test_self_containing_variant_is_refused():
    v = Variant("v", None)
    v.value = v
    with pytest.raises(DBusError):
        encode_body("v", (v,))


def test_every_truncation_of_a_message_is_a_dbus_error():
    for n in range(len(LIBDBUS_CALL)):
        with pytest.raises(DBusError):
            decode_message(LIBDBUS_CALL[:n])
    with pytest.raises(DBusError):
        decode_body("siat", encode_body("siat", ("x", 1, [1, 2]))[:-3])


def test_corrupted_messages_never_leak_other_exceptions():
    rng = random.Random(1234)
    for _ in range(3000):
        data = bytearray(LIBDBUS_CALL)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode_message(bytes(data))
        except DBusError:
            pass


@pytest.mark.parametrize("mutate, why", [
    (lambda d: b"X" + d[1:], "endianness"),
    (lambda d: d[:3] + b"\x02" + d[4:], "version"),
    (lambda d: d[:8] + le32(0) + d[12:], "serial is 0"),
    (lambda d: d[:4] + le32(0x0800_0000) + d[8:], "exceeds"),             # body > 128 MiB
    (lambda d: d + b"\0", "header says"),
])
def test_malformed_headers(mutate, why):
    with pytest.raises(DBusError) as info:
        decode_message(mutate(LIBDBUS_CALL))
    assert why in info.value.message


def test_malformed_bodies():
    with pytest.raises(DBusError, match="neither 0 nor 1"):
        decode_body("b", le32(2))
    with pytest.raises(DBusError, match="NUL-terminated"):
        decode_body("s", le32(1) + b"ab")
    with pytest.raises(DBusError, match="UTF-8"):
        decode_body("s", le32(1) + b"\xff\0")
    with pytest.raises(DBusError, match="padding"):
        decode_body("yu", b"\x01\x01\0\0" + le32(1))
    with pytest.raises(DBusError, match="exceeds"):
        decode_body("ay", le32(1 << 27))
    with pytest.raises(DBusError, match="left after"):
        decode_body("y", b"\x01\x02")
    with pytest.raises(DBusError, match="overrun"):
        decode_body("au", le32(2) + le32(1))   # length cuts the u32 in half


def test_message_validation_before_sending():
    with pytest.raises(DBusError, match="needs a member"):
        encode_message(Message(dbus.METHOD_CALL, serial=1, path="/"))
    with pytest.raises(DBusError, match="interface name"):
        encode_message(Message(dbus.METHOD_CALL, serial=1, path="/", member="M", interface="nodots"))
    with pytest.raises(DBusError, match="bus name"):
        encode_message(Message(dbus.METHOD_CALL, serial=1, path="/", member="M", destination="a..b"))
    with pytest.raises(DBusError, match="serial"):
        encode_message(Message(dbus.METHOD_CALL, serial=0, path="/", member="M"))
    with pytest.raises(DBusError, match="object path"):
        encode_message(Message(dbus.SIGNAL, serial=1, path="x", interface="a.b", member="M"))


def test_dbus_error_shape():
    err = DBusError("org.freedesktop.systemd1.NoSuchUnit", "Unit x not found.")
    assert isinstance(err, HutchError)
    assert (err.name, err.message, err.where) == ("org.freedesktop.systemd1.NoSuchUnit", "Unit x not found.", None)
    assert str(err) == "org.freedesktop.systemd1.NoSuchUnit: Unit x not found."
    timeout = DBusTimeoutError("late")
    assert isinstance(timeout, TimeoutError) and isinstance(timeout, DBusError)
    assert str(timeout) == "org.freedesktop.DBus.Error.Timeout: late"


def test_parse_address():
    assert dbus.parse_address("unix:path=/run/a%20b,guid=ff;unix:abstract=x") == [
        ("unix", {"path": b"/run/a b", "guid": b"ff"}), ("unix", {"abstract": b"x"})]
    for bad in ("", "nocolon", "unix:path", "unix:path=%zz"):
        with pytest.raises(DBusError):
            dbus.parse_address(bad)


def test_system_bus_addresses(monkeypatch):
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    expected = [("unix:path=/run/dbus/system_bus_socket", True)]
    if os.geteuid() == 0:
        expected.append(("unix:path=/run/systemd/private", False))
    assert dbus.system_bus_addresses() == expected
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/x")
    assert dbus.system_bus_addresses()[0] == ("unix:path=/x", True)


# ---------------------------------------------------------------------------------------
# Connection against a scripted peer (a thread here plays systemd's private socket)
# ---------------------------------------------------------------------------------------

class ScriptedPeer:
    """A unix-socket server speaking the server side of SASL, then answering each
    incoming message with handler(msg) -> list of Messages to send back."""

    def __init__(self, path, handler, auth_reply=b"OK 00112233445566778899aabbccddeeff\r\n", abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(b"\0" + path.encode() if abstract else path)
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.handler = handler
        self.auth_reply = auth_reply
        self.auth_line = None
        self.received = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            buf = bytearray()
            try:
                while b"\r\n" not in buf:
                    buf += conn.recv(4096)
                line, _, rest = bytes(buf).partition(b"\r\n")
                self.auth_line = line
                conn.sendall(self.auth_reply)
                if not self.auth_reply.startswith(b"OK"):
                    return
                buf = bytearray(rest)
                while b"BEGIN\r\n" not in buf:
                    buf += conn.recv(4096)
                buf = bytearray(bytes(buf).partition(b"BEGIN\r\n")[2])
                serial = 100
                while True:
                    while len(buf) < 16 or len(buf) < message_size(bytes(buf[:16])):
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    size = message_size(bytes(buf[:16]))
                    msg = decode_message(bytes(buf[:size]))
                    del buf[:size]
                    self.received.append(msg)
                    for out in self.handler(msg):
                        if out is None:
                            return   # hang up
                        serial += 1
                        out.serial = serial
                        conn.sendall(encode_message(out))
            except OSError:
                return

    def close(self):
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def peer(tmp_path):
    servers = []

    def start(handler, **kw):
        kw.setdefault("abstract", False)
        path = f"hutch-dbus-test-{uuid.uuid4().hex}" if kw["abstract"] else str(tmp_path / "peer")
        server = ScriptedPeer(path, handler, **kw)
        servers.append(server)
        return server, (f"unix:abstract={path}" if kw["abstract"] else f"unix:path={path}")
    yield start
    for server in servers:
        server.close()


def reply_to(msg, signature="", body=()):
    return Message(dbus.METHOD_RETURN, reply_serial=msg.serial, signature=signature, body=body)


def test_peer_call_without_hello_and_signal_queued_meanwhile(peer):
    def handler(msg):
        signal = Message(dbus.SIGNAL, path="/org/freedesktop/systemd1", interface="org.freedesktop.systemd1.Manager",
                         member="JobRemoved", signature="uoss", body=(1, "/j/1", "x.scope", "done"))
        return [signal, reply_to(msg, "a(sv)", ([("k", Variant("ay", b"\x01"))],))]
    server, address = peer(handler)
    with dbus.Connection.open(address, timeout=5, hello=False) as conn:
        assert not conn.is_bus and conn.unique_name is None
        assert conn.guid == "00112233445566778899aabbccddeeff"
        conn.add_match("type='signal'")   # no-op on a peer: nothing is sent
        body = conn.call("org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                         "org.freedesktop.systemd1.Manager", "Echo", "a{sv}", ({"x": Variant("u", 1)},))
        assert body == ([("k", Variant("ay", b"\x01"))],)
        sig = conn.wait_signal(lambda m: m.member == "JobRemoved", timeout=5)
        assert (sig.path, sig.signature, sig.body) == \
            ("/org/freedesktop/systemd1", "uoss", (1, "/j/1", "x.scope", "done"))
        with pytest.raises(DBusTimeoutError, match="no matching signal"):
            conn.wait_signal(lambda m: True, timeout=0.05)
    uid_hex = str(os.geteuid()).encode().hex().encode()
    assert server.auth_line == b"\0AUTH EXTERNAL " + uid_hex
    assert [m.member for m in server.received] == ["Echo"]   # no Hello, no AddMatch
    assert server.received[0].body == ({"x": Variant("u", 1)},)


def test_hello_on_a_bus_and_error_replies(peer):
    def handler(msg):
        if msg.member == "Hello":
            return [reply_to(msg, "s", (":1.42",))]
        if msg.member == "AddMatch":
            return [reply_to(msg)]
        return [Message(dbus.ERROR, reply_serial=msg.serial, error_name="org.freedesktop.systemd1.NoSuchUnit",
                        signature="s", body=("Unit x not found.",))]
    server, address = peer(handler)
    with dbus.Connection.open(address, timeout=5) as conn:
        assert conn.is_bus and conn.unique_name == ":1.42"
        conn.add_match("type='signal',member='JobRemoved'")
        with pytest.raises(DBusError) as info:
            conn.call("org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                      "org.freedesktop.systemd1.Manager", "GetUnit", "s", ("x",))
        assert str(info.value) == "org.freedesktop.systemd1.NoSuchUnit: Unit x not found."
    assert [m.member for m in server.received] == ["Hello", "AddMatch", "GetUnit"]
    assert server.received[1].body == ("type='signal',member='JobRemoved'",)
    assert server.received[0].destination == "org.freedesktop.DBus"


def test_abstract_address_and_address_list(peer, tmp_path):
    server, address = peer(lambda m: [reply_to(m, "u", (5,))], abstract=True)
    missing = f"unix:path={tmp_path}/missing"
    with dbus.Connection.open(f"{missing};{address}", timeout=5, hello=False) as conn:
        assert conn.call(None, "/", None, "M") == (5,)


def test_rejected_auth(peer):
    _, address = peer(lambda m: [], auth_reply=b"REJECTED DBUS_COOKIE_SHA1\r\n")
    with pytest.raises(DBusError) as info:
        dbus.Connection.open(address, timeout=5, hello=False)
    assert info.value.name == dbus.ERR_AUTH_FAILED and "DBUS_COOKIE_SHA1" in info.value.message


def test_peer_hangs_up(peer):
    _, address = peer(lambda m: [None])
    conn = dbus.Connection.open(address, timeout=5, hello=False)
    with pytest.raises(DBusError) as info:
        conn.call(None, "/", None, "M")
    assert info.value.name == dbus.ERR_DISCONNECTED
    assert conn.closed
    with pytest.raises(DBusError, match="closed"):
        conn.call(None, "/", None, "M")


def test_no_reply_times_out_then_connection_still_works(peer):
    def handler(msg):
        if msg.member == "Silent":
            return []
        return [reply_to(msg, "s", ("ok",))]
    _, address = peer(handler)
    with dbus.Connection.open(address, timeout=5, hello=False) as conn:
        with pytest.raises(TimeoutError):
            conn.call(None, "/", None, "Silent", timeout=0.05)
        assert conn.call(None, "/", None, "Loud") == ("ok",)


def test_nothing_listening(tmp_path):
    with pytest.raises(DBusError) as info:
        dbus.Connection.open(f"unix:path={tmp_path}/none", timeout=1)
    assert info.value.name == dbus.ERR_NO_SERVER
    assert f"{tmp_path}/none" in str(info.value) and "No such file" in str(info.value)
    with pytest.raises(DBusError, match="not supported"):
        dbus.Connection.open("tcp:host=127.0.0.1,port=1", timeout=1)


def test_bad_arguments_are_refused_before_anything_is_sent(peer):
    server, address = peer(lambda m: [reply_to(m)])
    with dbus.Connection.open(address, timeout=5, hello=False) as conn:
        with pytest.raises(DBusError, match="argument 0"):
            conn.call(None, "/", None, "M", "u", ("x",))
        with pytest.raises(DBusError, match="arguments must be a tuple"):
            conn.call(None, "/", None, "M", "u", 1)
        with pytest.raises(DBusError, match="member name"):
            conn.call(None, "/", None, "bad-member")
        conn.call(None, "/", None, "Fine")
    assert [m.member for m in server.received] == ["Fine"]
    assert server.received[0].serial == 1   # the refused call used up no serial
