"""IP addresses and networks: the part of the standard `ipaddress` module IPAM uses.

`import ipaddress` costs about 5 ms here (functools, collections, itertools and its own
classes), a fifth of what networking adds to a container's start.  The C socket
module's inet_pton parses both families and inet_ntop prints IPv4; IPv6 is printed
here in RFC 5952's form; the rest is integer arithmetic.  Same names and behaviour as
`ipaddress` for what is here (ValueError on bad input, "has host bits set").
"""

from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

_BITS = {4: 32, 6: 128}
_FAMILY = {4: AF_INET, 6: AF_INET6}


class Address:
    __slots__ = ("version", "value")

    def __init__(self, version: int, value: int):
        self.version, self.value = version, value

    def __int__(self) -> int:
        return self.value

    def __str__(self) -> str:
        if self.version == 4:
            return inet_ntop(AF_INET, self.value.to_bytes(4, "big"))
        return _format_v6(self.value)

    __repr__ = __str__

    def __add__(self, n: int) -> "Address":
        return Address(self.version, self.value + n)

    def __eq__(self, other) -> bool:
        return isinstance(other, Address) and (self.version, self.value) == (other.version, other.value)

    def __hash__(self) -> int:
        return hash((self.version, self.value))


class Network:
    __slots__ = ("version", "value", "prefixlen")

    def __init__(self, version: int, value: int, prefixlen: int):
        self.version, self.value, self.prefixlen = version, value, prefixlen

    @property
    def num_addresses(self) -> int:
        return 1 << (_BITS[self.version] - self.prefixlen)

    @property
    def network_address(self) -> Address:
        return Address(self.version, self.value)

    @property
    def broadcast_address(self) -> Address:
        return Address(self.version, self.value + self.num_addresses - 1)

    def __contains__(self, address) -> bool:
        return (isinstance(address, Address) and address.version == self.version
                and self.value <= address.value < self.value + self.num_addresses)

    def overlaps(self, other: "Network") -> bool:
        return (self.version == other.version and self.value < other.value + other.num_addresses
                and other.value < self.value + self.num_addresses)

    def hosts(self):
        """The first host address (what callers take with next())."""
        first = 0 if self.num_addresses <= 2 else 1
        yield Address(self.version, self.value + first)

    @property
    def is_loopback(self) -> bool:
        return self._within("127.0.0.0", 8) if self.version == 4 else (self.prefixlen == 128 and self.value == 1)

    @property
    def is_multicast(self) -> bool:
        return self._within("224.0.0.0", 4) if self.version == 4 else self._within("ff00::", 8)

    @property
    def is_link_local(self) -> bool:
        return self._within("169.254.0.0", 16) if self.version == 4 else self._within("fe80::", 10)

    def _within(self, base: str, prefix: int) -> bool:
        return self.prefixlen >= prefix and ip_network(f"{base}/{prefix}").overlaps(self)

    def __str__(self) -> str:
        return f"{self.network_address}/{self.prefixlen}"

    __repr__ = __str__


def _format_v6(value: int) -> str:
    """RFC 5952, as ipaddress prints: the longest run of two or more zero groups (the
    first of equals) becomes "::".  (inet_ntop writes ::0.1.0.0 for ::1:0.)"""
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len, start = -1, 0, None
    for i, group in enumerate(groups + [1]):
        if group == 0 and i < 8:
            start = i if start is None else start
        elif start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    text = [f"{g:x}" for g in groups]
    if best_len < 2:
        return ":".join(text)
    return ":".join(text[:best_start]) + "::" + ":".join(text[best_start + best_len:])


def _parse(text: str) -> Address:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 address")
    for version in (4, 6):
        try:
            raw = inet_pton(_FAMILY[version], text)
        except OSError:
            continue
        if version == 4 and text.count(".") != 3:
            break                          # inet_pton takes no short forms, but be sure
        return Address(version, int.from_bytes(raw, "big"))
    raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 address")


def ip_address(text: str) -> Address:
    return _parse(text)


def _split(text: str) -> tuple[Address, int]:
    address_text, slash, prefix_text = str(text).partition("/")
    address = _parse(address_text)
    bits = _BITS[address.version]
    if not slash:
        return address, bits
    if not prefix_text.isdigit() or not 0 <= int(prefix_text) <= bits:
        raise ValueError(f"{prefix_text!r} is not a valid netmask")
    return address, int(prefix_text)


def ip_network(text: str, strict: bool = True) -> Network:
    address, prefix = _split(text)
    host_bits = _BITS[address.version] - prefix
    base = (address.value >> host_bits) << host_bits
    if strict and base != address.value:
        raise ValueError(f"{text} has host bits set")
    return Network(address.version, base, prefix)


class Interface:
    """An address with its prefix ("10.66.0.6/16"): .ip and .network."""
    __slots__ = ("ip", "network")

    def __init__(self, text: str):
        self.ip, prefix = _split(text)
        self.network = ip_network(f"{self.ip}/{prefix}", strict=False)


def ip_interface(text: str) -> Interface:
    return Interface(text)


def from_bytes(version: int, raw: bytes) -> Address:
    return Address(version, int.from_bytes(raw, "big"))
