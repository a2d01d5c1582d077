"""A small, stdlib-only D-Bus client: the wire format and one blocking connection.

Enough of the D-Bus specification for hutch's systemd cgroup driver: signature-driven
marshalling of every basic and container type, the four message types, SASL EXTERNAL
authentication over a unix socket, method calls with replies, and signals.  No threads,
no file-descriptor passing, nothing imported beyond ``os``, ``socket``, ``struct``,
and ``time`` (``socket`` lazily, when connecting).

Python values for D-Bus types (both directions):

=========================  ===============================================================
D-Bus                      Python
=========================  ===============================================================
``y n q i u x t``          ``int`` (range-checked)
``b``                      ``bool`` (encode also accepts ints 0/1)
``d``                      ``float`` (encode also accepts ``int``)
``s o g``                  ``str`` (object paths and signatures are validated)
``h``                      ``int`` -- decode only (no fd passing); encoding refuses it
``ay``                     ``bytes`` (encode accepts bytes, bytearray, memoryview, ints)
``a...``                   ``list`` (encode accepts any list or tuple)
``a{..}``                  ``dict`` (encode accepts a mapping or a sequence of pairs)
``(...)``                  ``tuple`` (encode accepts tuple or list of the right length)
``v``                      :class:`Variant` ``(signature, value)`` in both directions
=========================  ===============================================================

Every malformed signature, value or incoming message raises :class:`DBusError` with a
one-line explanation; ``struct.error`` and friends never escape.
"""

from __future__ import annotations

import os
import struct
import time

from hutch.errors import HutchError

# ---------------------------------------------------------------------------------------
# Errors.  Local failures reuse the standard org.freedesktop.DBus.Error.* names that
# libdbus and sd-bus use for the same situations, so callers can match on .name.
# ---------------------------------------------------------------------------------------

ERR_INVALID_SIGNATURE = "org.freedesktop.DBus.Error.InvalidSignature"
ERR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ERR_INCONSISTENT_MESSAGE = "org.freedesktop.DBus.Error.InconsistentMessage"
ERR_LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"
ERR_NOT_SUPPORTED = "org.freedesktop.DBus.Error.NotSupported"
ERR_BAD_ADDRESS = "org.freedesktop.DBus.Error.BadAddress"
ERR_NO_SERVER = "org.freedesktop.DBus.Error.NoServer"
ERR_AUTH_FAILED = "org.freedesktop.DBus.Error.AuthFailed"
ERR_DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected"
ERR_TIMEOUT = "org.freedesktop.DBus.Error.Timeout"


class DBusError(HutchError):
    """A D-Bus error: an error reply from the peer, or a local protocol failure.

    ``.name`` is the D-Bus error name, ``.message`` the human text;
    ``str(err)`` is ``"<name>: <message>"`` (prefixed by ``where`` if set)."""

    def __init__(self, name: str, message: str = "", where: str | None = None):
        text = f"{name}: {message}" if message else name
        super().__init__(text, where)
        self.name = name
        self.message = message

    def __str__(self) -> str:
        text = f"{self.name}: {self.message}" if self.message else self.name
        return f"{self.where}: {text}" if self.where else text


class DBusTimeoutError(DBusError, TimeoutError):
    """No reply or matching signal before the deadline (``except TimeoutError`` works)."""

    def __init__(self, message: str, where: str | None = None):
        DBusError.__init__(self, ERR_TIMEOUT, message, where)


# ---------------------------------------------------------------------------------------
# Type system
# ---------------------------------------------------------------------------------------

# Fixed-size types: struct format and size (= alignment).
_FIXED = {
    "y": ("B", 1), "b": ("I", 4), "n": ("h", 2), "q": ("H", 2), "i": ("i", 4),
    "u": ("I", 4), "x": ("q", 8), "t": ("Q", 8), "d": ("d", 8), "h": ("I", 4),
}
_RANGES = {
    "y": (0, 0xFF), "n": (-0x8000, 0x7FFF), "q": (0, 0xFFFF), "i": (-0x8000_0000, 0x7FFF_FFFF),
    "u": (0, 0xFFFF_FFFF), "x": (-0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF),
    "t": (0, 0xFFFF_FFFF_FFFF_FFFF), "h": (0, 0xFFFF_FFFF),
}
_BASIC = frozenset("ybnqiuxtdsogh")
_ALIGN = {**{c: size for c, (_, size) in _FIXED.items()},
          "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8}

MAX_SIGNATURE = 255
MAX_ARRAY = 1 << 26          # 64 MiB, the specification's limit for one array
MAX_MESSAGE = 1 << 27        # 128 MiB, the specification's limit for one message
MAX_DEPTH = 32               # array nesting and struct nesting, each
MAX_VARIANT_DEPTH = 64       # variants inside variants (libdbus' total depth limit)


class Variant:
    """A D-Bus variant: a value together with its single-complete-type signature."""

    __slots__ = ("signature", "value")

    def __init__(self, signature: str, value):
        self.signature = signature
        self.value = value

    def __eq__(self, other) -> bool:
        if not isinstance(other, Variant):
            return NotImplemented
        return self.signature == other.signature and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.signature, repr(self.value)))

    def __repr__(self) -> str:
        return f"Variant({self.signature!r}, {self.value!r})"


_signature_cache: dict[str, tuple[str, ...]] = {}


def parse_signature(signature: str) -> tuple[str, ...]:
    """Split a signature into its single complete types, validating it.

    ``parse_signature("sa{sv}(ii)") == ("s", "a{sv}", "(ii)")``.  Raises DBusError
    (InvalidSignature) for anything the specification forbids."""
    cached = _signature_cache.get(signature)
    if cached is not None:
        return cached
    if not isinstance(signature, str):
        raise DBusError(ERR_INVALID_SIGNATURE, f"signature must be a str, got {type(signature).__name__}")
    if len(signature) > MAX_SIGNATURE:
        raise DBusError(ERR_INVALID_SIGNATURE, f"signature longer than {MAX_SIGNATURE} characters")
    types = []
    i = 0
    while i < len(signature):
        end = _scan_type(signature, i, 0, 0)
        types.append(signature[i:end])
        i = end
    result = tuple(types)
    if len(_signature_cache) < 1024:
        _signature_cache[signature] = result
    return result


def _bad_signature(signature: str, why: str) -> DBusError:
    return DBusError(ERR_INVALID_SIGNATURE, f"invalid signature {signature!r}: {why}")


def _scan_type(sig: str, i: int, arrays: int, structs: int) -> int:
    """Index just past the single complete type starting at sig[i]."""
    if i >= len(sig):
        raise _bad_signature(sig, "ends in the middle of a type")
    c = sig[i]
    if c in _BASIC or c == "v":
        return i + 1
    if c == "a":
        if arrays >= MAX_DEPTH:
            raise _bad_signature(sig, f"arrays nested deeper than {MAX_DEPTH}")
        if i + 1 < len(sig) and sig[i + 1] == "{":
            return _scan_dict_entry(sig, i + 1, arrays + 1, structs)
        if i + 1 >= len(sig):
            raise _bad_signature(sig, "array without an element type")
        return _scan_type(sig, i + 1, arrays + 1, structs)
    if c == "(":
        if structs >= MAX_DEPTH:
            raise _bad_signature(sig, f"structs nested deeper than {MAX_DEPTH}")
        j = i + 1
        if j < len(sig) and sig[j] == ")":
            raise _bad_signature(sig, "empty struct '()'")
        while j < len(sig) and sig[j] != ")":
            j = _scan_type(sig, j, arrays, structs + 1)
        if j >= len(sig):
            raise _bad_signature(sig, "unclosed '('")
        return j + 1
    if c == "{":
        raise _bad_signature(sig, "dict entry '{' outside an array")
    raise _bad_signature(sig, f"unexpected {c!r} at position {i}")


def _scan_dict_entry(sig: str, i: int, arrays: int, structs: int) -> int:
    """sig[i] is '{' right after 'a': exactly a basic key type and one value type."""
    if structs >= MAX_DEPTH:
        raise _bad_signature(sig, f"structs nested deeper than {MAX_DEPTH}")
    j = i + 1
    if j >= len(sig) or sig[j] not in _BASIC:
        raise _bad_signature(sig, "a dict entry key must be a basic type")
    j = _scan_type(sig, j + 1, arrays, structs + 1)
    if j >= len(sig) or sig[j] != "}":
        raise _bad_signature(sig, "a dict entry needs exactly one key and one value type")
    return j + 1


# ---------------------------------------------------------------------------------------
# Names (validated before sending: a bus disconnects peers that send invalid ones)
# ---------------------------------------------------------------------------------------

_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_BUS_WORD = _WORD | {"-"}


def _valid_path(path: str) -> bool:
    if path == "/":
        return True
    if not path.startswith("/") or path.endswith("/"):
        return False
    return all(part and set(part) <= _WORD for part in path[1:].split("/"))


def _valid_dotted(name: str, chars: frozenset, digit_start_ok: bool) -> bool:
    if not 0 < len(name) <= 255:
        return False
    parts = name.split(".")
    if len(parts) < 2:
        return False
    return all(p and set(p) <= chars and (digit_start_ok or not p[0].isdigit()) for p in parts)


def _valid_interface(name: str) -> bool:
    return _valid_dotted(name, _WORD, False)


def _valid_member(name: str) -> bool:
    return 0 < len(name) <= 255 and set(name) <= _WORD and not name[0].isdigit()


def _valid_bus_name(name: str) -> bool:
    if name.startswith(":"):
        return _valid_dotted(name[1:], _BUS_WORD, True) and len(name) <= 255
    return _valid_dotted(name, _BUS_WORD, False)


# ---------------------------------------------------------------------------------------
# Marshalling
# ---------------------------------------------------------------------------------------

def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad_value(t: str, value, why: str) -> DBusError:
    return DBusError(ERR_INVALID_ARGS,
                     f"D-Bus type {t!r} {why}, got {type(value).__name__} {_short(value)}")


class _Writer:
    """Appends marshalled values to a buffer whose offset 0 is 8-aligned in the message."""

    def __init__(self, big_endian: bool = False):
        self.buf = bytearray()
        self.order = ">" if big_endian else "<"

    def pad(self, alignment: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % alignment)

    def put(self, t: str, value, depth: int = 0) -> None:
        c = t[0]
        if c in _FIXED:
            self._put_fixed(t, value)
        elif c == "s" or c == "o":
            self._put_string(t, value)
        elif c == "g":
            self._put_signature(value)
        elif c == "v":
            self._put_variant(value, depth)
        elif c == "a":
            self._put_array(t, value, depth)
        elif c == "(":
            self._put_struct(t, value, depth)
        else:  # parse_signature never yields anything else
            raise _bad_signature(t, "not a single complete type")

    def _put_fixed(self, t: str, value) -> None:
        fmt, size = _FIXED[t]
        if t == "h":
            raise DBusError(ERR_NOT_SUPPORTED, "sending unix file descriptors ('h') is not supported")
        if t == "b":
            if value not in (0, 1) or not isinstance(value, int):
                raise _bad_value(t, value, "needs a bool")
            value = int(value)
        elif t == "d":
            if not isinstance(value, (int, float)):
                raise _bad_value(t, value, "needs a float")
            value = float(value)
        else:
            if not isinstance(value, int):
                raise _bad_value(t, value, "needs an int")
            low, high = _RANGES[t]
            if not low <= value <= high:
                raise _bad_value(t, value, f"needs an int in [{low}, {high}]")
        self.pad(size)
        self.buf += struct.pack(self.order + fmt, value)

    def _put_string(self, t: str, value) -> None:
        if not isinstance(value, str):
            raise _bad_value(t, value, "needs a str")
        if t == "o" and not _valid_path(value):
            raise _bad_value(t, value, "needs a valid object path")
        data = _utf8(t, value)
        self.pad(4)
        self.buf += struct.pack(self.order + "I", len(data))
        self.buf += data + b"\0"

    def _put_signature(self, value) -> None:
        if not isinstance(value, str):
            raise _bad_value("g", value, "needs a str")
        parse_signature(value)
        data = value.encode("ascii")
        self.buf.append(len(data))
        self.buf += data + b"\0"

    def _put_variant(self, value, depth: int) -> None:
        if not isinstance(value, Variant):
            raise _bad_value("v", value, "needs a Variant(signature, value)")
        if depth >= MAX_VARIANT_DEPTH:
            raise DBusError(ERR_LIMITS_EXCEEDED, f"variants nested deeper than {MAX_VARIANT_DEPTH}")
        types = parse_signature(value.signature)
        if len(types) != 1:
            raise _bad_signature(value.signature, "a variant holds exactly one complete type")
        self._put_signature(value.signature)
        self.put(value.signature, value.value, depth + 1)

    def _put_array(self, t: str, value, depth: int) -> None:
        elem = t[1:]
        self.pad(4)
        length_at = len(self.buf)
        self.buf += b"\0\0\0\0"
        # Padding to the first element's alignment comes after the length and is not
        # counted in it; it is present even when the array is empty.
        self.pad(_ALIGN[elem[0]])
        start = len(self.buf)
        if elem == "y":
            self.buf += _byte_array(value)
        elif elem[0] == "{":
            key_t, value_t = parse_signature(elem[1:-1])
            for key, item in _pairs(t, value):
                self.pad(8)
                self.put(key_t, key, depth)
                self.put(value_t, item, depth)
        else:
            if not isinstance(value, (list, tuple)):
                raise _bad_value(t, value, "needs a list")
            for item in value:
                self.put(elem, item, depth)
        length = len(self.buf) - start
        if length > MAX_ARRAY:
            raise DBusError(ERR_LIMITS_EXCEEDED, f"array of {length} bytes exceeds {MAX_ARRAY}")
        struct.pack_into(self.order + "I", self.buf, length_at, length)

    def _put_struct(self, t: str, value, depth: int) -> None:
        members = parse_signature(t[1:-1])
        if not isinstance(value, (tuple, list)) or len(value) != len(members):
            raise _bad_value(t, value, f"needs a tuple of {len(members)}")
        self.pad(8)
        for member_t, item in zip(members, value):
            self.put(member_t, item, depth)


def _utf8(t: str, value: str) -> bytes:
    if "\0" in value:
        raise _bad_value(t, value, "cannot contain NUL characters")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_value(t, value, "needs valid Unicode (no lone surrogates)") from None


def _byte_array(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        try:
            return bytes(value)
        except (TypeError, ValueError):
            raise _bad_value("ay", value, "needs ints in [0, 255]") from None
    raise _bad_value("ay", value, "needs bytes")


def _pairs(t: str, value):
    if isinstance(value, dict) or hasattr(value, "items"):
        return list(value.items())
    if isinstance(value, (list, tuple)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        return value
    raise _bad_value(t, value, "needs a dict")


def encode_body(signature: str, args=(), big_endian: bool = False) -> bytes:
    """Marshal ``args`` (one value per complete type of ``signature``) as a message body."""
    types = parse_signature(signature)
    if not isinstance(args, (tuple, list)):
        raise DBusError(ERR_INVALID_ARGS, f"arguments must be a tuple, got {type(args).__name__}")
    if len(args) != len(types):
        raise DBusError(ERR_INVALID_ARGS,
                        f"signature {signature!r} needs {len(types)} argument(s), got {len(args)}")
    writer = _Writer(big_endian)
    for index, (t, value) in enumerate(zip(types, args)):
        try:
            writer.put(t, value)
        except DBusError as err:
            raise DBusError(err.name, f"argument {index} ({t!r}): {err.message}") from None
        except RecursionError:
            raise DBusError(ERR_LIMITS_EXCEEDED, f"argument {index} ({t!r}): value nested too deeply") from None
    return bytes(writer.buf)


class _Reader:
    """Reads marshalled values from data[pos:end]; offsets are relative to the message start."""

    def __init__(self, data: bytes, pos: int, end: int, big_endian: bool):
        self.data = data
        self.pos = pos
        self.end = end
        self.order = ">" if big_endian else "<"

    def need(self, n: int) -> None:
        if self.pos + n > self.end:
            raise DBusError(ERR_INCONSISTENT_MESSAGE,
                            f"truncated: needs {n} byte(s) at offset {self.pos}, only {self.end - self.pos} left")

    def align(self, alignment: int) -> None:
        padding = -self.pos % alignment
        if padding:
            self.need(padding)
            if any(self.data[self.pos:self.pos + padding]):
                raise DBusError(ERR_INCONSISTENT_MESSAGE, f"non-zero alignment padding at offset {self.pos}")
            self.pos += padding

    def get(self, t: str, depth: int = 0):
        c = t[0]
        if c in _FIXED:
            return self._get_fixed(t)
        if c == "s" or c == "o":
            return self._get_string(t)
        if c == "g":
            return self._get_signature()
        if c == "v":
            return self._get_variant(depth)
        if c == "a":
            return self._get_array(t, depth)
        if c == "(":
            return self._get_struct(t, depth)
        raise _bad_signature(t, "not a single complete type")

    def _get_fixed(self, t: str):
        fmt, size = _FIXED[t]
        self.align(size)
        self.need(size)
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += size
        if t == "b":
            if value > 1:
                raise DBusError(ERR_INCONSISTENT_MESSAGE, f"boolean value {value} is neither 0 nor 1")
            return bool(value)
        return value

    def _get_string(self, t: str) -> str:
        self.align(4)
        self.need(4)
        (n,) = struct.unpack_from(self.order + "I", self.data, self.pos)
        self.pos += 4
        return self._get_text(t, n)

    def _get_text(self, t: str, n: int) -> str:
        self.need(n + 1)
        raw = bytes(self.data[self.pos:self.pos + n])
        if self.data[self.pos + n] != 0 or b"\0" in raw:
            raise DBusError(ERR_INCONSISTENT_MESSAGE, f"{t!r} value at offset {self.pos} is not NUL-terminated text")
        self.pos += n + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DBusError(ERR_INCONSISTENT_MESSAGE, f"{t!r} value {raw[:40]!r} is not valid UTF-8") from None
        if t == "o" and not _valid_path(text):
            raise DBusError(ERR_INCONSISTENT_MESSAGE, f"invalid object path {text!r}")
        return text

    def _get_signature(self) -> str:
        self.need(1)
        n = self.data[self.pos]
        self.pos += 1
        text = self._get_text("g", n)
        parse_signature(text)
        return text

    def _get_variant(self, depth: int) -> Variant:
        if depth >= MAX_VARIANT_DEPTH:
            raise DBusError(ERR_LIMITS_EXCEEDED, f"variants nested deeper than {MAX_VARIANT_DEPTH}")
        sig = self._get_signature()
        if len(parse_signature(sig)) != 1:
            raise DBusError(ERR_INCONSISTENT_MESSAGE, f"variant signature {sig!r} is not one complete type")
        return Variant(sig, self.get(sig, depth + 1))

    def _get_array(self, t: str, depth: int):
        self.align(4)
        self.need(4)
        (n,) = struct.unpack_from(self.order + "I", self.data, self.pos)
        self.pos += 4
        if n > MAX_ARRAY:
            raise DBusError(ERR_LIMITS_EXCEEDED, f"array of {n} bytes exceeds {MAX_ARRAY}")
        elem = t[1:]
        self.align(_ALIGN[elem[0]])
        self.need(n)
        end = self.pos + n
        if elem == "y":
            value = bytes(self.data[self.pos:end])
            self.pos = end
            return value
        if elem[0] == "{":
            key_t, value_t = parse_signature(elem[1:-1])
            result = {}
            while self.pos < end:
                self.align(8)
                key = self.get(key_t, depth)
                result[key] = self.get(value_t, depth)
        else:
            result = []
            while self.pos < end:
                result.append(self.get(elem, depth))
        if self.pos != end:
            raise DBusError(ERR_INCONSISTENT_MESSAGE, f"array elements overrun the array length {n}")
        return result

    def _get_struct(self, t: str, depth: int) -> tuple:
        self.align(8)
        return tuple(self.get(member_t, depth) for member_t in parse_signature(t[1:-1]))


def decode_body(signature: str, data: bytes, big_endian: bool = False) -> tuple:
    """Unmarshal a whole message body (offset 0 = an 8-aligned message offset)."""
    reader = _Reader(data, 0, len(data), big_endian)
    values = _read_values(reader, signature)
    if reader.pos != len(data):
        raise DBusError(ERR_INCONSISTENT_MESSAGE, f"{len(data) - reader.pos} byte(s) left after the body")
    return values


def _read_values(reader: _Reader, signature: str) -> tuple:
    try:
        return tuple(reader.get(t) for t in parse_signature(signature))
    except RecursionError:
        raise DBusError(ERR_LIMITS_EXCEEDED, "value nested too deeply") from None


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED, NO_AUTO_START, ALLOW_INTERACTIVE_AUTHORIZATION = 0x1, 0x2, 0x4

# Header field code -> (attribute, D-Bus type)
_FIELDS = {
    1: ("path", "o"), 2: ("interface", "s"), 3: ("member", "s"), 4: ("error_name", "s"),
    5: ("reply_serial", "u"), 6: ("destination", "s"), 7: ("sender", "s"),
    8: ("signature", "g"), 9: ("unix_fds", "u"),
}
# The order libdbus writes them in, so our bytes match dbus-send's for the same message.
_FIELD_ORDER = (1, 2, 3, 4, 5, 6, 7, 8)
_REQUIRED = {
    METHOD_CALL: ("path", "member"), METHOD_RETURN: ("reply_serial",),
    ERROR: ("error_name", "reply_serial"), SIGNAL: ("path", "interface", "member"),
}
_TYPE_NAMES = {METHOD_CALL: "method call", METHOD_RETURN: "method return", ERROR: "error", SIGNAL: "signal"}


class Message:
    """One D-Bus message; header fields that are absent are None (signature is '')."""

    __slots__ = ("type", "flags", "serial", "path", "interface", "member", "error_name",
                 "reply_serial", "destination", "sender", "signature", "unix_fds", "body")

    def __init__(self, type: int, *, flags: int = 0, serial: int = 0, path: str | None = None,
                 interface: str | None = None, member: str | None = None,
                 error_name: str | None = None, reply_serial: int | None = None,
                 destination: str | None = None, sender: str | None = None,
                 signature: str = "", body: tuple = (), unix_fds: int | None = None):
        self.type = type
        self.flags = flags
        self.serial = serial
        self.path = path
        self.interface = interface
        self.member = member
        self.error_name = error_name
        self.reply_serial = reply_serial
        self.destination = destination
        self.sender = sender
        self.signature = signature
        self.unix_fds = unix_fds
        # Anything else is kept as is, for encode_body to refuse with a clear message.
        self.body = tuple(body) if isinstance(body, (tuple, list)) else body

    def __repr__(self) -> str:
        kind = _TYPE_NAMES.get(self.type, f"type {self.type}")
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__[1:]
                           if getattr(self, name) not in (None, "", 0, ()))
        return f"<Message {kind}: {fields}>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None


def _check_names(msg: Message) -> None:
    """Refuse a message a bus would answer by disconnecting us."""
    if msg.type not in _REQUIRED:
        raise DBusError(ERR_INVALID_ARGS, f"unknown message type {msg.type!r}")
    for name in _REQUIRED[msg.type]:
        if getattr(msg, name) is None:
            raise DBusError(ERR_INVALID_ARGS, f"a {_TYPE_NAMES[msg.type]} needs a {name}")
    checks = (("path", _valid_path, "object path"), ("interface", _valid_interface, "interface name"),
              ("member", _valid_member, "member name"), ("error_name", _valid_interface, "error name"),
              ("destination", _valid_bus_name, "bus name"), ("sender", _valid_bus_name, "bus name"))
    for attr, valid, what in checks:
        value = getattr(msg, attr)
        if value is not None and (not isinstance(value, str) or not valid(value)):
            raise DBusError(ERR_INVALID_ARGS, f"{attr} {value!r} is not a valid D-Bus {what}")
    if not isinstance(msg.flags, int) or not 0 <= msg.flags <= 0xFF:
        raise DBusError(ERR_INVALID_ARGS, f"flags {msg.flags!r} must be an int in [0, 255]")


def encode_message(msg: Message, big_endian: bool = False) -> bytes:
    """The wire bytes of msg (little-endian unless asked; msg.serial must be set, non-zero)."""
    _check_names(msg)
    if not isinstance(msg.serial, int) or not 0 < msg.serial <= 0xFFFF_FFFF:
        raise DBusError(ERR_INVALID_ARGS, f"serial {msg.serial!r} must be in [1, 2**32-1]")
    body = encode_body(msg.signature, msg.body, big_endian)
    fields = []
    for code in _FIELD_ORDER:
        attr, t = _FIELDS[code]
        value = getattr(msg, attr)
        if value is not None and value != "":
            fields.append((code, Variant(t, value)))
    writer = _Writer(big_endian)
    writer.buf += struct.pack(writer.order + "cBBBII", b"B" if big_endian else b"l",
                              msg.type, msg.flags, 1, len(body), msg.serial)
    writer.put("a(yv)", fields)
    writer.pad(8)
    if len(writer.buf) + len(body) > MAX_MESSAGE:
        raise DBusError(ERR_LIMITS_EXCEEDED, f"message of {len(writer.buf) + len(body)} bytes exceeds {MAX_MESSAGE}")
    return bytes(writer.buf) + body


def message_size(head: bytes) -> int:
    """Total size of a message from its first 16 bytes (fixed header + fields length)."""
    if len(head) < 16:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, f"message header needs 16 bytes, got {len(head)}")
    if head[0:1] == b"l":
        order = "<"
    elif head[0:1] == b"B":
        order = ">"
    else:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, f"bad endianness byte {head[0:1]!r}")
    if head[3] != 1:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, f"unsupported protocol version {head[3]}")
    body_length, _serial, fields_length = struct.unpack_from(order + "III", head, 4)
    if fields_length > MAX_ARRAY:
        raise DBusError(ERR_LIMITS_EXCEEDED, f"header fields of {fields_length} bytes exceed {MAX_ARRAY}")
    header_end = 16 + fields_length
    total = header_end + (-header_end % 8) + body_length
    if total > MAX_MESSAGE:
        raise DBusError(ERR_LIMITS_EXCEEDED, f"message of {total} bytes exceeds {MAX_MESSAGE}")
    return total


def decode_message(data: bytes) -> Message:
    """Parse one complete message (exactly message_size(data[:16]) bytes)."""
    total = message_size(bytes(data[:16]))
    if len(data) != total:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, f"message is {len(data)} bytes, header says {total}")
    big_endian = data[0:1] == b"B"
    reader = _Reader(data, 12, total, big_endian)
    order = reader.order
    msg_type, flags = data[1], data[2]
    body_length, serial = struct.unpack_from(order + "II", data, 4)
    if serial == 0:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, "message serial is 0")
    if msg_type == 0:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, "message type 0 is invalid")
    msg = Message(msg_type, flags=flags, serial=serial)
    try:
        fields = reader.get("a(yv)")
    except RecursionError:
        raise DBusError(ERR_LIMITS_EXCEEDED, "header nested too deeply") from None
    for code, variant in fields:
        known = _FIELDS.get(code)
        if known is None:
            continue  # the specification says unknown fields must be ignored
        attr, t = known
        if variant.signature != t:
            raise DBusError(ERR_INCONSISTENT_MESSAGE,
                            f"header field {attr} has type {variant.signature!r}, expected {t!r}")
        setattr(msg, attr, variant.value)
    reader.align(8)
    if reader.pos + body_length != total:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, "header fields overrun the body")
    for name in _REQUIRED.get(msg_type, ()):
        if getattr(msg, name) is None:
            raise DBusError(ERR_INCONSISTENT_MESSAGE, f"{_TYPE_NAMES[msg_type]} without a {name} field")
    if body_length and not msg.signature:
        raise DBusError(ERR_INCONSISTENT_MESSAGE, f"{body_length}-byte body without a signature")
    body_start = reader.pos
    msg.body = _read_values(reader, msg.signature)
    if reader.pos != total:
        raise DBusError(ERR_INCONSISTENT_MESSAGE,
                        f"body is {body_length} bytes, signature {msg.signature!r} used {reader.pos - body_start}")
    return msg


# ---------------------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------------------

def _unescape(value: str) -> bytes:
    """Undo the %XX escaping of a D-Bus address value."""
    out = bytearray()
    raw = value.encode("utf-8")
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            try:
                out.append(int(raw[i + 1:i + 3], 16))
            except ValueError:
                raise DBusError(ERR_BAD_ADDRESS, f"bad %-escape in address value {value!r}") from None
            if len(raw[i + 1:i + 3]) != 2:
                raise DBusError(ERR_BAD_ADDRESS, f"bad %-escape in address value {value!r}")
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def parse_address(address: str) -> list[tuple[str, dict[str, bytes]]]:
    """Split a D-Bus address list into [(transport, {key: unescaped value})]."""
    entries = []
    for entry in address.split(";"):
        if not entry:
            continue
        transport, colon, rest = entry.partition(":")
        if not colon or not transport:
            raise DBusError(ERR_BAD_ADDRESS, f"address {entry!r} has no transport (like unix:path=...)")
        options = {}
        for pair in rest.split(",") if rest else ():
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise DBusError(ERR_BAD_ADDRESS, f"address {entry!r}: {pair!r} is not key=value")
            options[key] = _unescape(value)
        entries.append((transport, options))
    if not entries:
        raise DBusError(ERR_BAD_ADDRESS, f"empty D-Bus address {address!r}")
    return entries


def _socket_address(transport: str, options: dict[str, bytes]) -> bytes:
    """The AF_UNIX sockaddr for one parsed address entry."""
    if transport != "unix":
        raise DBusError(ERR_NOT_SUPPORTED, f"transport {transport!r} is not supported (only unix)")
    if "path" in options:
        return options["path"]
    if "abstract" in options:
        return b"\0" + options["abstract"]
    raise DBusError(ERR_BAD_ADDRESS, "a unix address needs path= or abstract=")


# ---------------------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------------------

BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
BUS_INTERFACE = "org.freedesktop.DBus"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"

_QUEUE_LIMIT = 16384        # queued signals/calls kept; the oldest are dropped beyond this
_LINE_LIMIT = 16384         # longest SASL line accepted


class Connection:
    """A blocking connection to a D-Bus message bus or a peer (no threads, CLOEXEC socket).

    Open with :meth:`open`.  Signals and method calls that arrive while waiting for a reply
    are queued and handed out by :meth:`wait_signal` / :meth:`wait_message`."""

    def __init__(self, sock, address: str, timeout: float):   # sock: a connected socket.socket
        self._sock = sock
        self._rbuf = bytearray()
        self._serial = 0
        self._queue: list[Message] = []
        self.address = address
        self.timeout = timeout
        self.guid: str | None = None
        self.unique_name: str | None = None   # set by Hello on a bus
        self.is_bus = False
        self.dropped = 0                       # queued messages dropped over _QUEUE_LIMIT

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, address: str, timeout: float = 5.0, hello: bool = True) -> "Connection":
        """Connect, authenticate (SASL EXTERNAL) and, if ``hello``, register on the bus.

        ``address`` may be a ';'-separated list; entries are tried in order.  Use
        ``hello=False`` for a peer-to-peer socket such as /run/systemd/private."""
        failures = []
        for transport, options in parse_address(address):
            entry = _format_entry(transport, options)
            try:
                return cls._open_one(entry, transport, options, timeout, hello)
            except DBusError as err:
                failures.append((entry, err))
        if len(failures) == 1:
            entry, err = failures[0]
            if isinstance(err, DBusTimeoutError):
                raise DBusTimeoutError(f"{entry}: {err.message}") from None
            raise DBusError(err.name, f"{entry}: {err.message}") from None
        reasons = "; ".join(f"{entry}: {err.message}" for entry, err in failures)
        raise DBusError(ERR_NO_SERVER, f"no address of {address!r} worked ({reasons})") from None

    @classmethod
    def _open_one(cls, entry: str, transport: str, options: dict, timeout: float, hello: bool) -> "Connection":
        # the C module: `socket` pulls in enum & co. (~9 ms on a container's create path)
        import _socket

        sockaddr = _socket_address(transport, options)
        deadline = time.monotonic() + timeout
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)   # non-inheritable: CLOEXEC
        conn = cls(sock, entry, timeout)
        try:
            sock.settimeout(max(timeout, 0.001))
            try:
                sock.connect(sockaddr)
            except TimeoutError:
                raise DBusTimeoutError(f"connect timed out after {timeout:g}s") from None
            except OSError as err:
                raise DBusError(ERR_NO_SERVER, f"connect: {err.strerror or err}") from None
            conn._authenticate(deadline)
            if hello:
                conn.is_bus = True
                (conn.unique_name,) = conn._call_until(deadline, BUS_NAME, BUS_PATH, BUS_INTERFACE, "Hello")
        except BaseException:
            conn.close()
            raise
        return conn

    def _authenticate(self, deadline: float) -> None:
        """SASL: NUL byte, AUTH EXTERNAL <hex of our uid>, expect OK <guid>, then BEGIN."""
        uid = str(os.geteuid()).encode("ascii").hex().encode("ascii")
        self._sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n", deadline)
        line = self._read_line(deadline)
        if line.startswith(b"OK "):
            self.guid = line[3:].strip().decode("ascii", "replace")
        elif line.startswith(b"REJECTED"):
            offered = line[8:].strip().decode("ascii", "replace") or "none"
            raise DBusError(ERR_AUTH_FAILED, f"server rejected EXTERNAL authentication (offers: {offered})")
        else:
            raise DBusError(ERR_AUTH_FAILED, f"unexpected reply to AUTH: {line[:80]!r}")
        self._sendall(b"BEGIN\r\n", deadline)

    # -- low-level I/O -------------------------------------------------------------------

    def _live_socket(self):
        if self._sock is None:
            raise DBusError(ERR_DISCONNECTED, "connection is closed")
        return self._sock

    def _remaining(self, deadline: float, what: str) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DBusTimeoutError(what)
        return remaining

    def _sendall(self, data: bytes, deadline: float) -> None:
        sock = self._live_socket()
        sock.settimeout(self._remaining(deadline, "timed out before sending"))
        try:
            sock.sendall(data)
        except OSError as err:   # includes timeouts: a half-sent message ruins the stream
            self.close()
            raise DBusError(ERR_DISCONNECTED, f"send failed: {err.strerror or err or 'timed out'}") from None

    def _recv_some(self, deadline: float, what: str) -> None:
        sock = self._live_socket()
        sock.settimeout(self._remaining(deadline, what))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise DBusTimeoutError(what) from None   # partial data stays in _rbuf
        except OSError as err:
            self.close()
            raise DBusError(ERR_DISCONNECTED, f"receive failed: {err.strerror or err}") from None
        if not chunk:
            self.close()
            raise DBusError(ERR_DISCONNECTED, "connection closed by the other side")
        self._rbuf += chunk

    def _read_line(self, deadline: float) -> bytes:
        while True:
            end = self._rbuf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._rbuf[:end])
                del self._rbuf[:end + 2]
                return line
            if len(self._rbuf) > _LINE_LIMIT:
                raise DBusError(ERR_AUTH_FAILED, "authentication line too long")
            self._recv_some(deadline, "timed out waiting for the authentication reply")

    def _read_message(self, deadline: float, what: str) -> Message:
        while True:
            if len(self._rbuf) >= 16:
                try:
                    size = message_size(bytes(self._rbuf[:16]))
                    if len(self._rbuf) >= size:
                        data = bytes(self._rbuf[:size])
                        del self._rbuf[:size]
                        return decode_message(data)
                except DBusError as err:
                    self.close()   # a stream we cannot parse cannot be resynchronised
                    raise DBusError(err.name, f"bad message from {self.address}: {err.message}") from None
            self._recv_some(deadline, what)

    def _enqueue(self, msg: Message) -> None:
        if msg.type in (SIGNAL, METHOD_CALL):
            if len(self._queue) >= _QUEUE_LIMIT:
                del self._queue[0]
                self.dropped += 1
            self._queue.append(msg)
        # Replies nobody waits for any more (timed out, NO_REPLY_EXPECTED) are dropped.

    # -- public API ----------------------------------------------------------------------

    def send(self, msg: Message, timeout: float | None = None) -> int:
        """Send msg with the next serial (msg.serial is set); returns the serial."""
        serial = self._serial % 0xFFFF_FFFF + 1
        msg.serial = serial
        data = encode_message(msg)     # validate everything before using up a serial
        self._serial = serial
        self._sendall(data, time.monotonic() + (self.timeout if timeout is None else timeout))
        return serial

    def call(self, destination: str | None, path: str, interface: str | None, member: str,
             signature: str = "", args=(), timeout: float | None = None, flags: int = 0) -> tuple:
        """Call a method and return the reply's body as a tuple.

        An error reply raises DBusError(error name, error text); no reply within
        ``timeout`` (default: the connection's) raises DBusTimeoutError.  With
        ``flags=NO_REPLY_EXPECTED`` returns () right after sending."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._call_until(deadline, destination, path, interface, member, signature, args, flags)

    def _call_until(self, deadline: float, destination, path, interface, member,
                    signature: str = "", args=(), flags: int = 0) -> tuple:
        budget = max(deadline - time.monotonic(), 0.0)
        msg = Message(METHOD_CALL, flags=flags, path=path, interface=interface, member=member,
                      destination=destination, signature=signature, body=args)
        serial = self._serial % 0xFFFF_FFFF + 1
        msg.serial = serial
        data = encode_message(msg)     # validate everything before using a serial
        self._serial = serial
        self._sendall(data, deadline)
        if flags & NO_REPLY_EXPECTED:
            return ()
        what = (f"no reply to {interface + '.' if interface else ''}{member} from "
                f"{destination or 'the peer'} within {budget:g}s")
        while True:
            reply = self._read_message(deadline, what)
            if reply.reply_serial == serial and reply.type in (METHOD_RETURN, ERROR):
                break
            self._enqueue(reply)
        if reply.type == ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(reply.error_name, text)
        return reply.body

    def wait_message(self, predicate=None, timeout: float | None = None) -> Message:
        """The first queued or arriving signal or method call for which predicate(msg) is true."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for index, msg in enumerate(self._queue):
            if predicate is None or predicate(msg):
                del self._queue[index]
                return msg
        limit = self.timeout if timeout is None else timeout
        while True:
            msg = self._read_message(deadline, f"no matching message within {limit:g}s")
            if msg.type in (SIGNAL, METHOD_CALL) and (predicate is None or predicate(msg)):
                return msg
            self._enqueue(msg)

    def wait_signal(self, predicate=None, timeout: float | None = None) -> Message:
        """The first queued or arriving signal for which predicate(msg) is true.

        Raises DBusTimeoutError (a DBusError and a TimeoutError) when none comes in time."""
        try:
            return self.wait_message(lambda m: m.type == SIGNAL and (predicate is None or predicate(m)),
                                     timeout)
        except DBusTimeoutError:
            limit = self.timeout if timeout is None else timeout
            raise DBusTimeoutError(f"no matching signal within {limit:g}s on {self.address}") from None

    def add_match(self, rule: str, timeout: float | None = None) -> None:
        """Ask the bus to route signals matching rule to us (no-op on a peer connection)."""
        if self.is_bus:
            self.call(BUS_NAME, BUS_PATH, BUS_INTERFACE, "AddMatch", "s", (rule,), timeout)

    def remove_match(self, rule: str, timeout: float | None = None) -> None:
        """Undo add_match (no-op on a peer connection)."""
        if self.is_bus:
            self.call(BUS_NAME, BUS_PATH, BUS_INTERFACE, "RemoveMatch", "s", (rule,), timeout)

    def close(self) -> None:
        """Close the socket; further calls raise DBusError (Disconnected).  Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def fileno(self) -> int:
        return self._live_socket().fileno()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("bus " + str(self.unique_name) if self.is_bus else "peer")
        return f"<dbus.Connection {self.address} {state}>"


def _format_entry(transport: str, options: dict[str, bytes]) -> str:
    """A readable form of one address entry for error messages."""
    parts = ",".join(f"{key}={value.decode('utf-8', 'backslashreplace')}" for key, value in options.items())
    return f"{transport}:{parts}"


# ---------------------------------------------------------------------------------------
# Helpers for systemd
# ---------------------------------------------------------------------------------------

SYSTEM_BUS_DEFAULT = "unix:path=/run/dbus/system_bus_socket"
SYSTEMD_PRIVATE = "unix:path=/run/systemd/private"
SYSTEMD_NAME = "org.freedesktop.systemd1"


def system_bus_addresses() -> list[tuple[str, bool]]:
    """Where to look for systemd, as (address, hello) pairs, in the order runc tries them.

    The system bus ($DBUS_SYSTEM_BUS_ADDRESS or the standard socket; a bus, so hello=True),
    then -- for root only -- systemd's private peer-to-peer socket (hello=False)."""
    addresses = [(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS_DEFAULT, True)]
    if os.geteuid() == 0:
        addresses.append((SYSTEMD_PRIVATE, False))
    return addresses


def connect_systemd(timeout: float = 5.0) -> Connection:
    """The first connection to systemd that works, from system_bus_addresses().

    On a bus, also checks that org.freedesktop.systemd1 is there (a dbus-daemon without
    systemd is of no use).  Raises one DBusError naming every address tried and why."""
    failures = []
    for address, hello in system_bus_addresses():
        try:
            conn = Connection.open(address, timeout, hello)
        except DBusError as err:
            failures.append(f"{address} ({err.message or err.name})")
            continue
        if not hello:
            return conn
        try:
            (present,) = conn.call(BUS_NAME, BUS_PATH, BUS_INTERFACE, "NameHasOwner", "s", (SYSTEMD_NAME,))
        except DBusError as err:
            conn.close()
            failures.append(f"{address} ({err})")
            continue
        if present:
            return conn
        conn.close()
        failures.append(f"{address} ({SYSTEMD_NAME} is not on this bus)")
    raise DBusError(ERR_NO_SERVER, "cannot reach systemd over D-Bus; tried " + "; ".join(failures))


def get_property(conn: Connection, destination: str | None, path: str, interface: str, name: str,
                 timeout: float | None = None):
    """One property via org.freedesktop.DBus.Properties.Get, unwrapped from its variant."""
    (value,) = conn.call(destination, path, PROPERTIES_INTERFACE, "Get", "ss", (interface, name), timeout)
    return value.value if isinstance(value, Variant) else value


def get_properties(conn: Connection, destination: str | None, path: str, interface: str,
                   timeout: float | None = None) -> dict:
    """All properties of interface via Properties.GetAll, as {name: unwrapped value}."""
    (values,) = conn.call(destination, path, PROPERTIES_INTERFACE, "GetAll", "s", (interface,), timeout)
    return {key: v.value if isinstance(v, Variant) else v for key, v in values.items()}
