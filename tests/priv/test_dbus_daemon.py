"""hutch.dbus against a real, private dbus-daemon and libdbus/sd-bus clients.

Differential: the same calls made by our Connection, by `busctl` (sd-bus) and by
`dbus-send` (libdbus) must give the same answers; values marshalled by busctl must
come back intact after our decode + re-encode; and our bytes for a method call must be
identical to the bytes dbus-send writes for it.  The daemon listens on a socket in a
private temporary directory and is killed (socket removed) at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from hutch import dbus
from hutch.dbus import BUS_INTERFACE, BUS_NAME, BUS_PATH, DBusError, Message, Variant

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("dbus-daemon", "busctl", "dbus-send")),
    reason="needs dbus-daemon, busctl and dbus-send")

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    def __init__(self, directory: str):
        self.dir = directory
        self.socket = os.path.join(directory, "bus")
        self.config = os.path.join(directory, "bus.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(socket=self.socket))
        # Short path (mkdtemp under /tmp): a unix socket path must fit in 108 bytes.
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()   # printed once the socket listens
        if not line:
            raise RuntimeError("dbus-daemon did not start")
        self.printed_address = line
        self.address = f"unix:path={self.socket}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def bus():
    directory = tempfile.mkdtemp(prefix="dbus-", dir="/tmp")
    try:
        private = PrivateBus(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        yield private
    finally:
        private.stop()
    assert not os.path.exists(private.socket)


@pytest.fixture
def conn(bus):
    with dbus.Connection.open(bus.address, timeout=10) as c:
        yield c


def busctl(bus, *args) -> dict:
    out = subprocess.run(["busctl", f"--address={bus.address}", "--json=short", *args],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    return json.loads(out)


def dbus_send(bus, method, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["dbus-send", f"--bus={bus.address}", "--print-reply", f"--dest={BUS_NAME}",
                           BUS_PATH, f"{BUS_INTERFACE}.{method}", *args],
                          capture_output=True, text=True, timeout=20)


def bus_call(c, member, signature="", args=()):
    return c.call(BUS_NAME, BUS_PATH, BUS_INTERFACE, member, signature, args)


# ---------------------------------------------------------------------------------------

def test_hello_and_auth_guid(bus, conn):
    assert conn.is_bus and conn.unique_name.startswith(":1.")
    # The guid the server sent in "OK <guid>" is the one dbus-daemon printed with its address.
    assert bus.printed_address.endswith(f",guid={conn.guid}")
    assert bus_call(conn, "GetNameOwner", "s", (conn.unique_name,)) == (conn.unique_name,)


def test_list_names_matches_busctl(bus, conn):
    (ours,) = bus_call(conn, "ListNames")
    theirs = busctl(bus, "call", BUS_NAME, BUS_PATH, BUS_INTERFACE, "ListNames")["data"][0]
    assert "org.freedesktop.DBus" in ours and conn.unique_name in ours
    # busctl sees everything we see, plus its own unique name.
    extra = set(theirs) - set(ours)
    assert set(ours) <= set(theirs) and len(extra) == 1 and extra.pop().startswith(":1.")


def test_get_id_matches_dbus_send(bus, conn):
    (ours,) = bus_call(conn, "GetId")
    reply = dbus_send(bus, "GetId")
    assert reply.returncode == 0, reply.stderr
    assert f'string "{ours}"' in reply.stdout and len(ours) == 32


def test_get_name_owner_of_the_bus_matches_busctl(bus, conn):
    (ours,) = bus_call(conn, "GetNameOwner", "s", (BUS_NAME,))
    theirs = busctl(bus, "call", BUS_NAME, BUS_PATH, BUS_INTERFACE, "GetNameOwner", "s", BUS_NAME)
    assert theirs == {"type": "s", "data": [ours]}


def test_error_replies_match_dbus_send(bus, conn):
    with pytest.raises(DBusError) as info:
        bus_call(conn, "NoSuchMethod")
    assert info.value.name == "org.freedesktop.DBus.Error.UnknownMethod"
    reply = dbus_send(bus, "NoSuchMethod")
    assert reply.returncode != 0
    assert f"Error {info.value.name}: {info.value.message}" in reply.stderr

    with pytest.raises(DBusError) as info:
        bus_call(conn, "GetNameOwner", "s", ("org.example.Nobody",))
    assert info.value.name == "org.freedesktop.DBus.Error.NameHasNoOwner"
    assert "org.example.Nobody" in info.value.message
    # and the connection is still usable after an error reply
    assert bus_call(conn, "NameHasOwner", "s", (BUS_NAME,)) == (True,)


def test_properties_match_busctl(bus, conn):
    ours = dbus.get_property(conn, BUS_NAME, BUS_PATH, BUS_INTERFACE, "Features")
    theirs = busctl(bus, "get-property", BUS_NAME, BUS_PATH, BUS_INTERFACE, "Features")
    assert theirs == {"type": "as", "data": ours}
    assert dbus.get_properties(conn, BUS_NAME, BUS_PATH, BUS_INTERFACE)["Features"] == ours


def test_name_owner_changed_signals(bus, conn):
    conn.add_match(f"type='signal',sender='{BUS_NAME}',interface='{BUS_INTERFACE}',member='NameOwnerChanged'")
    with dbus.Connection.open(bus.address, timeout=10) as second:
        name = second.unique_name
    appeared = conn.wait_signal(lambda m: m.member == "NameOwnerChanged" and m.body[0] == name, timeout=10)
    gone = conn.wait_signal(lambda m: m.member == "NameOwnerChanged" and m.body[0] == name, timeout=10)
    assert (appeared.sender, appeared.path, appeared.interface) == (BUS_NAME, BUS_PATH, BUS_INTERFACE)
    assert appeared.body == (name, "", name) and gone.body == (name, name, "")

    # A client of another implementation appears and disappears the same way.
    busctl(bus, "call", BUS_NAME, BUS_PATH, BUS_INTERFACE, "GetId")
    seen = conn.wait_signal(lambda m: m.member == "NameOwnerChanged" and m.body[1] == "", timeout=10)
    assert seen.body[0].startswith(":1.") and seen.body[2] == seen.body[0]
    conn.remove_match(f"type='signal',sender='{BUS_NAME}',interface='{BUS_INTERFACE}',member='NameOwnerChanged'")


def test_wait_signal_times_out_with_a_clear_error(conn):
    with pytest.raises(dbus.DBusTimeoutError) as info:
        conn.wait_signal(lambda m: m.member == "NeverSent", timeout=0.2)
    assert "no matching signal" in str(info.value) and info.value.name == dbus.ERR_TIMEOUT


def test_complex_values_from_busctl_echoed_back(bus, conn):
    """busctl (sd-bus) marshals a StartTransientUnit-like body; we decode it, send it back
    re-encoded, and busctl must decode the very same values."""
    signature = "sa(sv)a(sa(sv))aya{sv}(xtd)"
    args = ["hutch-test.scope",
            "3", "Description", "s", "hutch test", "Delegate", "b", "true", "PIDs", "au", "2", "1", "4294967295",
            "1", "aux.service", "1", "Slice", "s", "system.slice",
            "3", "0", "1", "255",
            "1", "Nested", "v", "a(ii)", "1", "-1", "2",
            "-9223372036854775808", "18446744073709551615", "1.5"]
    proc = subprocess.Popen(["busctl", f"--address={bus.address}", "--json=short", "call", "--", conn.unique_name,
                             "/org/example/Echo", "org.example.Echo", "Echo", signature, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        call = conn.wait_message(lambda m: m.type == dbus.METHOD_CALL and m.member == "Echo", timeout=10)
        conn.send(Message(dbus.METHOD_RETURN, reply_serial=call.serial, destination=call.sender,
                          signature=call.signature, body=call.body))
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert call.signature == signature
    assert call.body == (
        "hutch-test.scope",
        [("Description", Variant("s", "hutch test")), ("Delegate", Variant("b", True)),
         ("PIDs", Variant("au", [1, 4294967295]))],
        [("aux.service", [("Slice", Variant("s", "system.slice"))])],
        b"\x00\x01\xff",
        {"Nested": Variant("v", Variant("a(ii)", [(-1, 2)]))},
        (-(1 << 63), (1 << 64) - 1, 1.5),
    )
    assert proc.returncode == 0, err
    echoed = json.loads(out)
    assert echoed["type"] == signature
    assert echoed["data"] == [
        "hutch-test.scope",
        [["Description", {"type": "s", "data": "hutch test"}], ["Delegate", {"type": "b", "data": True}],
         ["PIDs", {"type": "au", "data": [1, 4294967295]}]],
        [["aux.service", [["Slice", {"type": "s", "data": "system.slice"}]]]],
        [0, 1, 255],
        {"Nested": {"type": "v", "data": {"type": "a(ii)", "data": [[-1, 2]]}}},
        [-(1 << 63), (1 << 64) - 1, 1.5],
    ]


def test_connect_systemd_reports_every_address(bus, monkeypatch):
    if os.path.exists("/run/systemd/private"):
        pytest.skip("a real systemd is running here")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    with pytest.raises(DBusError) as info:
        dbus.connect_systemd(timeout=5)
    text = str(info.value)
    assert f"{bus.address} (org.freedesktop.systemd1 is not on this bus)" in text
    if os.geteuid() == 0:
        assert "unix:path=/run/systemd/private (" in text and "No such file" in text

    # Once something owns org.freedesktop.systemd1 on that bus, connect_systemd picks it.
    with dbus.Connection.open(bus.address, timeout=10) as fake_systemd:
        assert bus_call(fake_systemd, "RequestName", "su", ("org.freedesktop.systemd1", 0)) == (1,)
        with dbus.connect_systemd(timeout=5) as found:
            assert found.is_bus and found.unique_name not in (None, fake_systemd.unique_name)
            owner = bus_call(found, "GetNameOwner", "s", ("org.freedesktop.systemd1",))
            assert owner == (fake_systemd.unique_name,)


def test_bytes_identical_to_dbus_send(tmp_path):
    """Capture what libdbus writes for a method call on a peer connection and compare it
    with our encoding of the same message (same serial, same header field order)."""
    path = str(tmp_path / "peer")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(20)
    captured = bytearray()

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            buf = bytearray()
            while b"BEGIN\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                if b"AUTH EXTERNAL" in buf and b"OK" not in captured:
                    conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    captured.extend(b"OK")
                if b"NEGOTIATE_UNIX_FD\r\n" in buf and b"NEG" not in captured:
                    conn.sendall(b"ERROR\r\n")
                    captured.extend(b"NEG")
            captured.clear()
            captured.extend(bytes(buf).partition(b"BEGIN\r\n")[2])
            try:
                while len(captured) < 16 or len(captured) < dbus.message_size(bytes(captured[:16])):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    captured.extend(chunk)
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    sender = subprocess.Popen(
        ["dbus-send", f"--peer=unix:path={path}", "--type=method_call", "--dest=org.example.Svc",
         "/org/example/Obj", "org.example.Iface.Method",
         "string:grüße", "int16:-2", "uint64:18446744073709551615", "array:string:a,bc",
         "dict:string:int32:k,5", "variant:uint32:7", "objpath:/a/b", "byte:7", "boolean:false", "double:-0.25"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        thread.join(20)
        sender.wait(20)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        server.close()
    assert len(captured) >= 16, sender.stderr.read()
    size = dbus.message_size(bytes(captured[:16]))
    wire = bytes(captured[:size])
    ours = Message(
        dbus.METHOD_CALL, serial=dbus.decode_message(wire).serial,
        path="/org/example/Obj", interface="org.example.Iface", member="Method", destination="org.example.Svc",
        signature="sntasa{si}voybd",
        body=("grüße", -2, (1 << 64) - 1, ["a", "bc"], {"k": 5}, Variant("u", 7), "/a/b", 7, False, -0.25))
    assert dbus.decode_message(wire) == ours
    assert dbus.encode_message(ours) == wire
