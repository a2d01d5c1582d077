"""rtnetlink of hutch's own: links, addresses and routes over one NETLINK_ROUTE socket.

Two halves kept apart: pure packing/parsing functions (bytes in, bytes or dicts out,
tested without root) and :class:`Netlink`, which owns the socket, numbers the requests
and turns NLMSG_ERROR into one-line :class:`NetlinkError`.

The C ``_socket`` module is used instead of ``socket``: the Python wrapper pulls in
enum and selectors (a few ms) for nothing netlink needs.  Namespace switching goes
through hutch.syscall (setns), loaded only when a netns is asked for.

A socket keeps the network namespace it was opened in, so ``Netlink(netns=...)`` moves
the calling thread there only for the ``socket()`` call and moves it straight back.
"""

from __future__ import annotations

import errno
import os
import struct

import _socket

from hutch.errors import ConfigError, HutchError, NotFoundError, SysCallError

WHERE = "netlink"

# --- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h) ---
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10          # errors do not echo our whole request back
NETLINK_EXT_ACK = 11          # errors carry the kernel's own explanation (NLMSGERR_ATTR_MSG)

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x8, 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_CAPPED = 0x100          # in an NLMSG_ERROR: only the request's header was copied back
NLM_F_ACK_TLVS = 0x200        # in an NLMSG_ERROR/DONE: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF
NLA_ALIGNTO = 4

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK, IFLA_NET_NS_FD = 16, 18, 20, 29, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3      # dumps without the (large) statistics blocks
IFF_UP = 0x1
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 3, 4, 8
IFA_F_NODAD = 0x02

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3                # what `ip route add` uses by default
RTPROT_STATIC = 4              # "proto static": set by an administrator's tool (netavark too)
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1

AF_UNSPEC, AF_INET, AF_INET6 = 0, _socket.AF_INET, _socket.AF_INET6
FAMILIES = {4: AF_INET, 6: AF_INET6}
IFNAMSIZ = 16
IFALIASZ = 256

# struct nlmsghdr, ifinfomsg, ifaddrmsg, rtmsg, nlattr (host byte order: netlink is local)
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")
NLATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")


class NetlinkError(SysCallError):
    """A request the kernel refused: ``cannot add link hutch0: File exists``.

    A SysCallError (callers look at .errno, e.g. EEXIST) whose text is the operation,
    its object and the kernel's reason (its extended-ack message when it gave one)."""

    def __init__(self, what: str, err: int, kernel_message: str | None = None):
        SysCallError.__init__(self, what, err)
        reason = os.strerror(err) if err else "malformed reply"
        if kernel_message and kernel_message.rstrip(".").lower() != reason.lower():
            reason = f"{reason} ({kernel_message})"
        self.message = f"{what}: {reason}"
        self.where = WHERE
        self.kernel_message = kernel_message

    def __str__(self) -> str:
        return HutchError.__str__(self)


# --- packing -------------------------------------------------------------------------

def align(n: int) -> int:
    return (n + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1)


def attr(kind: int, payload: bytes) -> bytes:
    """One nlattr: header, payload, zero padding to the next 4-byte boundary."""
    length = NLATTR.size + len(payload)
    return NLATTR.pack(length, kind) + payload + b"\0" * (align(length) - length)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def message(kind: int, flags: int, seq: int, body: bytes, pid: int = 0) -> bytes:
    """One nlmsghdr + body (bodies here are always 4-byte aligned already)."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, pid) + body


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = AF_UNSPEC) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


# --- parsing -------------------------------------------------------------------------

def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """{type: payload} of the attributes from offset on (flags masked off; last wins)."""
    data = memoryview(data)
    attrs: dict[int, bytes] = {}
    end = len(data)
    while offset + NLATTR.size <= end:
        length, kind = NLATTR.unpack_from(data, offset)
        if length < NLATTR.size or offset + length > end:
            raise ValueError(f"netlink attribute of length {length} at offset {offset} overruns {end}")
        attrs[kind & NLA_TYPE_MASK] = bytes(data[offset + NLATTR.size:offset + length])
        offset += align(length)
    return attrs


def parse_messages(data: bytes | memoryview):
    """Yield (type, flags, seq, pid, payload) for every nlmsghdr in one datagram."""
    data = memoryview(data)
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise ValueError(f"netlink message of length {length} at offset {offset} overruns {len(data)}")
        yield kind, flags, seq, pid, bytes(data[offset + NLMSGHDR.size:offset + length])
        offset += align(length)


def parse_error(payload: bytes, flags: int = 0, done: bool = False) -> tuple[int, str | None]:
    """(errno, kernel message) of an NLMSG_ERROR payload (errno 0 is an ACK), or of an
    NLMSG_DONE one (done=True: its extended-ack attributes follow the error directly)."""
    if len(payload) < I32.size:
        return (0, None) if done else (errno.EPROTO, None)
    err = -I32.unpack_from(payload)[0]
    text = None
    if err and flags & NLM_F_ACK_TLVS:
        if done:
            start = I32.size
        else:
            # the request comes back after the error: capped (NETLINK_CAP_ACK) to its header
            copied = NLMSGHDR.size if flags & NLM_F_CAPPED else NLMSGHDR.unpack_from(payload, I32.size)[0]
            start = I32.size + align(copied)
        raw = parse_attrs(payload, start).get(NLMSGERR_ATTR_MSG)
        text = raw.rstrip(b"\0").decode(errors="replace") if raw else None
    return err, text


def _cstr(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def _u32(raw: bytes | None) -> int | None:
    return U32.unpack_from(raw)[0] if raw is not None and len(raw) >= 4 else None


def format_mac(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw is not None else None


def parse_link(payload: bytes) -> dict:
    family, kind_, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload, IFINFOMSG.size)
    kind = None
    if IFLA_LINKINFO in attrs:
        kind = _cstr(parse_attrs(attrs[IFLA_LINKINFO]).get(IFLA_INFO_KIND))
    operstate = attrs.get(IFLA_OPERSTATE)
    state = operstate[0] if operstate else 0
    master = _u32(attrs.get(IFLA_MASTER))
    return {
        "index": index,
        "name": _cstr(attrs.get(IFLA_IFNAME)),
        "kind": kind,
        "mtu": _u32(attrs.get(IFLA_MTU)),
        "master": master or None,
        "up": bool(flags & IFF_UP),
        "address": format_mac(attrs.get(IFLA_ADDRESS)),
        "alias": _cstr(attrs.get(IFLA_IFALIAS)) or None,
        "operstate": OPERSTATES[state] if state < len(OPERSTATES) else str(state),
        "flags": flags,
        "link": _u32(attrs.get(IFLA_LINK)),     # a veth's peer index (in its own netns)
    }


def _ip_text(family: int, raw: bytes) -> str:
    return _socket.inet_ntop(family, raw)


def parse_address(payload: bytes) -> dict:
    family, prefixlen, flags, scope, index = IFADDRMSG.unpack_from(payload)
    attrs = parse_attrs(payload, IFADDRMSG.size)
    # IPv4: IFA_LOCAL is the interface's address, IFA_ADDRESS the peer on point-to-point
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    return {
        "index": index,
        "family": 6 if family == AF_INET6 else 4,
        "address": _ip_text(family, raw) if raw else None,
        "prefixlen": prefixlen,
        "flags": _u32(attrs.get(IFA_FLAGS)) or flags,
        "scope": scope,
        "label": _cstr(attrs.get(IFA_LABEL)),
    }


def parse_route(payload: bytes) -> dict:
    family, dst_len, _src_len, _tos, table, protocol, scope, rtype, _flags = RTMSG.unpack_from(payload)
    attrs = parse_attrs(payload, RTMSG.size)
    dst = attrs.get(RTA_DST)
    gateway = attrs.get(RTA_GATEWAY)
    prefsrc = attrs.get(RTA_PREFSRC)
    return {
        "dst": f"{_ip_text(family, dst)}/{dst_len}" if dst else "default",
        "gateway": _ip_text(family, gateway) if gateway else None,
        "oif": _u32(attrs.get(RTA_OIF)),
        "metric": _u32(attrs.get(RTA_PRIORITY)),
        "table": _u32(attrs.get(RTA_TABLE)) or table,
        "protocol": protocol,
        "scope": scope,
        "type": rtype,
        "prefsrc": _ip_text(family, prefsrc) if prefsrc else None,
        "family": 6 if family == AF_INET6 else 4,
    }


# --- input checks ----------------------------------------------------------------------

def check_name(name, what: str = "link name") -> str:
    """The kernel's dev_valid_name(): 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    if not isinstance(name, str):
        raise ConfigError(f"invalid {what} {name!r}: not a string", where=WHERE)
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise ConfigError(f"invalid {what} {name!r}: must be 1-{IFNAMSIZ - 1} bytes", where=WHERE)
    if name in (".", "..") or "/" in name or ":" in name or any(c.isspace() for c in name) or "\0" in name:
        raise ConfigError(f"invalid {what} {name!r}: no '/', ':', whitespace, '.' or '..'", where=WHERE)
    return name


def check_alias(alias) -> str:
    if not isinstance(alias, str) or len(alias.encode()) >= IFALIASZ or "\0" in alias:
        raise ConfigError(f"invalid link alias {alias!r}: a string under {IFALIASZ} bytes", where=WHERE)
    return alias


def check_mtu(mtu) -> int:
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 0 < mtu < 1 << 31:
        raise ConfigError(f"invalid mtu {mtu!r}: a positive integer", where=WHERE)
    return mtu


def parse_ip(text, family: int | None = None) -> tuple[int, bytes]:
    """(AF_INET or AF_INET6, packed address) of "10.1.2.3" / "fd42::5"."""
    if not isinstance(text, str):
        raise ConfigError(f"invalid IP address {text!r}", where=WHERE)
    af = AF_INET6 if ":" in text else AF_INET
    try:
        raw = _socket.inet_pton(af, text)
    except (OSError, ValueError):
        raise ConfigError(f"invalid IP address {text!r}", where=WHERE) from None
    if family is not None and FAMILIES.get(family) != af:
        raise ConfigError(f"IP address {text} is not IPv{family}", where=WHERE)
    return af, raw


def parse_cidr(text, family: int | None = None) -> tuple[int, bytes, int]:
    """(family, packed address, prefix length) of "10.1.2.3/24"; no prefix = a host."""
    if not isinstance(text, str):
        raise ConfigError(f"invalid address {text!r}: want ADDRESS/PREFIX", where=WHERE)
    address, slash, prefix = text.partition("/")
    af, raw = parse_ip(address, family)
    bits = 32 if af == AF_INET else 128
    if not slash:
        return af, raw, bits
    if not prefix.isdigit() or int(prefix) > bits:
        raise ConfigError(f"invalid address {text!r}: prefix length must be 0-{bits}", where=WHERE)
    return af, raw, int(prefix)


def link_attrs(name: str | None = None, mtu: int | None = None, master: int | None = None,
               netns_fd: int | None = None, alias: str | None = None) -> bytes:
    parts = []
    if name is not None:
        parts.append(attr_str(IFLA_IFNAME, check_name(name)))
    if mtu is not None:
        parts.append(attr_u32(IFLA_MTU, check_mtu(mtu)))
    if master is not None:
        parts.append(attr_u32(IFLA_MASTER, master))
    if netns_fd is not None:
        parts.append(attr_u32(IFLA_NET_NS_FD, netns_fd))
    if alias is not None:
        parts.append(attr(IFLA_IFALIAS, check_alias(alias).encode()))
    return b"".join(parts)


def linkinfo(kind: str, data: bytes | None = None) -> bytes:
    children = [attr_str(IFLA_INFO_KIND, kind)]
    if data is not None:
        children.append(attr_nested(IFLA_INFO_DATA, data))
    return attr_nested(IFLA_LINKINFO, *children)


def veth_request(name: str, peer: str, peer_netns: int | None = None, mtu: int | None = None,
                 master: int | None = None) -> bytes:
    """The RTM_NEWLINK body of a veth pair; the peer's own ifinfomsg + attributes ride
    inside IFLA_INFO_DATA/VETH_INFO_PEER, so it is made directly in its netns."""
    peer_body = ifinfo() + link_attrs(peer, mtu=mtu, netns_fd=peer_netns)
    data = attr(VETH_INFO_PEER | NLA_F_NESTED, peer_body)
    return ifinfo() + link_attrs(name, mtu=mtu, master=master) + linkinfo("veth", data)


def address_request(index: int, cidr: str, nodad: bool = True, broadcast: str | None = None) -> bytes:
    af, raw, prefixlen = parse_cidr(cidr)
    flags = IFA_F_NODAD if nodad and af == AF_INET6 else 0
    body = IFADDRMSG.pack(af, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
    # as iproute2: IFA_LOCAL and IFA_ADDRESS both (no peer: the same address)
    body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw) + attr_u32(IFA_FLAGS, flags)
    if broadcast is not None:
        body += attr(IFA_BROADCAST, parse_ip(broadcast, 4)[1])
    return body


def route_request(dst: str = "default", gateway: str | None = None, oif: int | None = None,
                  family: int = 4, metric: int | None = None, protocol: int = RTPROT_BOOT) -> bytes:
    if dst == "default":
        af, dst_raw, dst_len = FAMILIES.get(family), None, 0
        if af is None:
            raise ConfigError(f"invalid route family {family!r}: 4 or 6", where=WHERE)
    else:
        af, dst_raw, dst_len = parse_cidr(dst, family)
    # iproute2's default scope: link for a route with no gateway, universe otherwise
    scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    body = RTMSG.pack(af, dst_len, 0, 0, RT_TABLE_MAIN, protocol, scope, RTN_UNICAST, 0)
    if dst_raw is not None:
        body += attr(RTA_DST, dst_raw)
    if gateway is not None:
        body += attr(RTA_GATEWAY, parse_ip(gateway, 6 if af == AF_INET6 else 4)[1])
    if oif is not None:
        body += attr_u32(RTA_OIF, oif)
    if metric is not None:
        if isinstance(metric, bool) or not isinstance(metric, int) or not 0 <= metric < 1 << 32:
            raise ConfigError(f"invalid route metric {metric!r}", where=WHERE)
        body += attr_u32(RTA_PRIORITY, metric)
    return body


def describe_route(dst: str, gateway: str | None, dev) -> str:
    text = f"route {dst}"
    if gateway:
        text += f" via {gateway}"
    if dev is not None:
        text += f" dev {dev}"
    return text


# --- network namespaces --------------------------------------------------------------------

def _open_netns(netns: str | int) -> tuple[int, bool]:
    """(fd, whether we opened it) of a netns given as a path or an fd."""
    if isinstance(netns, bool) or not isinstance(netns, (str, int)):
        raise ConfigError(f"invalid network namespace {netns!r}: a path or an fd", where=WHERE)
    if isinstance(netns, int):
        return netns, False
    try:
        return os.open(netns, os.O_RDONLY | os.O_CLOEXEC), True
    except FileNotFoundError:
        raise NotFoundError(f"network namespace {netns} does not exist", where=WHERE) from None
    except OSError as exc:
        raise SysCallError("open network namespace", exc.errno or 0, netns) from None


class in_netns:
    """``with in_netns(path_or_fd):`` -- the calling thread is in that network namespace
    inside the block and back in its own after it, even when the block raises."""

    def __init__(self, netns: str | int):
        self.netns = netns
        self._home = -1

    def __enter__(self):
        from hutch import syscall
        target, owned = _open_netns(self.netns)
        try:
            self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscall.setns(target, syscall.CLONE_NEWNET, detail=f"network namespace {self.netns}")
            except BaseException:
                os.close(self._home)
                raise
        finally:
            if owned:
                os.close(target)
        return self

    def __exit__(self, *exc) -> None:
        from hutch import syscall
        try:
            syscall.setns(self._home, syscall.CLONE_NEWNET, detail="back to the original network namespace")
        finally:
            os.close(self._home)


# --- the socket ----------------------------------------------------------------------------

def open_socket():
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


class Netlink:
    """One NETLINK_ROUTE socket, optionally opened inside another network namespace.

    Not thread-safe: one request at a time, each answered before the next goes out."""

    RECV_SIZE = 1 << 16

    def __init__(self, netns: str | int | None = None):
        self._seq = 0
        if netns is None:
            self.sock = open_socket()
        else:
            with in_netns(netns):
                self.sock = open_socket()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the exchange --

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[bytes]:
        """Send one request and return the payloads of its replies.

        Dumps (NLM_F_DUMP) end at NLMSG_DONE, whose payload carries an error too; other
        requests ask for an ACK and end at the NLMSG_ERROR that answers them (errno 0)."""
        if self.sock is None:
            raise HutchError(f"{what}: the netlink socket is closed", where=WHERE)
        for _attempt in range(5):
            self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
            seq = self._seq
            dump = flags & NLM_F_DUMP == NLM_F_DUMP
            sock_flags = NLM_F_REQUEST | flags | (0 if dump else NLM_F_ACK)
            self.sock.send(message(kind, sock_flags, seq, body))
            replies, interrupted = self._collect(seq, what)
            if not interrupted:
                return replies
            # a dump raced a change and is inconsistent: ask again
        raise NetlinkError(what, errno.EAGAIN, "dump kept being interrupted")

    def _collect(self, seq: int, what: str) -> tuple[list[bytes], bool]:
        replies: list[bytes] = []
        interrupted = False
        while True:
            data, _anc, msg_flags, _addr = self.sock.recvmsg(self.RECV_SIZE)
            if msg_flags & _socket.MSG_TRUNC:
                raise NetlinkError(what, errno.EMSGSIZE, "reply larger than the receive buffer")
            for kind, flags, mseq, _pid, payload in parse_messages(data):
                if mseq != seq:
                    continue        # a stale answer to an earlier, abandoned request
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if kind == NLMSG_ERROR:
                    err, text = parse_error(payload, flags)
                    if err:
                        raise NetlinkError(what, err, text)
                    return replies, interrupted
                if kind == NLMSG_DONE:
                    err, text = parse_error(payload, flags, done=True)
                    if err:
                        raise NetlinkError(what, err, text)
                    return replies, interrupted
                if kind != NLMSG_NOOP:
                    replies.append(payload)

    # -- links --

    def link(self, name: str) -> dict | None:
        """The link named name (or with that index), None when there is none."""
        try:
            return parse_link(self._get_link(name)[0])
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise

    def _get_link(self, name_or_index) -> list[bytes]:
        index, name_attr = self._link_selector(name_or_index)
        body = ifinfo(index) + name_attr + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return self.request(RTM_GETLINK, 0, body, f"cannot find link {name_or_index}")

    def links(self) -> list[dict]:
        body = ifinfo() + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [parse_link(p) for p in self.request(RTM_GETLINK, NLM_F_DUMP, body, "cannot list links")]

    def index(self, name_or_index, what: str | None = None) -> int:
        """The ifindex of a link given by name or index; NetlinkError (ENODEV) if none."""
        if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
            return self._link_selector(name_or_index)[0]
        try:
            return IFINFOMSG.unpack_from(self._get_link(name_or_index)[0])[2]
        except NetlinkError as exc:
            if what is not None:
                raise NetlinkError(what, exc.errno, exc.kernel_message) from None
            raise

    @staticmethod
    def _link_selector(name_or_index) -> tuple[int, bytes]:
        """(ifi_index, IFLA_IFNAME attribute): the kernel finds a link by either."""
        if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
            if name_or_index <= 0:
                raise ConfigError(f"invalid link index {name_or_index}", where=WHERE)
            return name_or_index, b""
        return 0, attr_str(IFLA_IFNAME, check_name(name_or_index))

    def _master_index(self, master, what: str) -> int | None:
        if master is None:
            return None
        if master == 0 or master == "":
            return 0                      # release from the current master
        return self.index(master, what)

    def _new_link(self, name: str, body: bytes, alias: str | None, what: str) -> int:
        replies = self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, body, what)
        # NLM_F_ECHO (kernel >= 6.3) hands back the new link; older kernels: look it up
        index = next((link["index"] for link in map(parse_link, replies) if link["name"] == name), None)
        if index is None:
            index = self.index(name, what)
        if alias is not None:
            # rtnl_create_link ignores IFLA_IFALIAS: it is only applied by a setlink
            self.set_link(index, alias=alias)
        return index

    def add_bridge(self, name: str, mtu: int | None = None, alias: str | None = None) -> int:
        check_name(name)
        if alias is not None:
            check_alias(alias)
        body = ifinfo() + link_attrs(name, mtu=mtu) + linkinfo("bridge")
        return self._new_link(name, body, alias, f"cannot add link {name}")

    def add_veth(self, name: str, peer: str, peer_netns: int | str | None = None, mtu: int | None = None,
                 master: int | str | None = None, alias: str | None = None) -> int:
        check_name(name)
        check_name(peer, "peer name")
        if alias is not None:
            check_alias(alias)
        what = f"cannot add link {name}"
        master_index = self._master_index(master, f"{what} with master {master}")
        fd, owned = _open_netns(peer_netns) if peer_netns is not None else (None, False)
        try:
            body = veth_request(name, peer, fd, mtu, master_index)
            return self._new_link(name, body, alias, what)
        finally:
            if owned:
                os.close(fd)

    def set_link(self, name_or_index, *, up: bool | None = None, mtu: int | None = None,
                 master: int | str | None = None, netns_fd: int | str | None = None,
                 new_name: str | None = None, alias: str | None = None) -> None:
        what = f"cannot set link {name_or_index}"
        if new_name is not None:
            check_name(new_name)
            index, name_attr = self.index(name_or_index, what), b""
        else:
            index, name_attr = self._link_selector(name_or_index)
        master_index = self._master_index(master, f"{what} master {master}")
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        fd, owned = _open_netns(netns_fd) if netns_fd is not None else (None, False)
        try:
            body = (ifinfo(index, flags, change) + name_attr
                    + link_attrs(new_name, mtu=mtu, master=master_index, netns_fd=fd, alias=alias))
            self.request(RTM_SETLINK, 0, body, what)
        finally:
            if owned:
                os.close(fd)

    def delete_link(self, name_or_index) -> bool:
        """Delete a link (a veth takes its peer along); False when it did not exist."""
        index, name_attr = self._link_selector(name_or_index)
        try:
            self.request(RTM_DELLINK, 0, ifinfo(index) + name_attr, f"cannot delete link {name_or_index}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    # -- addresses --

    def add_address(self, name_or_index, cidr: str, nodad: bool = True, broadcast: str | None = None) -> None:
        what = f"cannot add address {cidr} to link {name_or_index}"
        address_request(0, cidr, nodad, broadcast)    # bad input fails before any request
        index = self.index(name_or_index, what)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, address_request(index, cidr, nodad, broadcast), what)

    def addresses(self, name_or_index=None) -> list[dict]:
        index = None if name_or_index is None else self.index(name_or_index, "cannot list addresses")
        body = IFADDRMSG.pack(AF_UNSPEC, 0, 0, 0, 0)
        rows = [parse_address(p) for p in self.request(RTM_GETADDR, NLM_F_DUMP, body, "cannot list addresses")]
        return [r for r in rows if index is None or r["index"] == index]

    # -- routes --

    def add_route(self, dst: str = "default", gateway: str | None = None, dev=None, family: int = 4,
                  metric: int | None = None, protocol: int = RTPROT_BOOT) -> None:
        if dst != "default" and isinstance(dst, str) and ":" in dst:
            family = 6
        elif gateway is not None and isinstance(gateway, str) and ":" in gateway:
            family = 6
        what = "cannot add " + describe_route(dst, gateway, dev)
        body = route_request(dst, gateway, None, family, metric, protocol)     # checks input first
        if dev is not None:
            body = route_request(dst, gateway, self.index(dev, what), family, metric, protocol)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, what)

    def routes(self, family: int = 4) -> list[dict]:
        af = FAMILIES.get(family)
        if af is None:
            raise ConfigError(f"invalid route family {family!r}: 4 or 6", where=WHERE)
        body = RTMSG.pack(af, 0, 0, 0, 0, 0, 0, 0, 0)
        rows = [parse_route(p) for p in self.request(RTM_GETROUTE, NLM_F_DUMP, body, "cannot list routes")]
        return [r for r in rows if r["table"] == RT_TABLE_MAIN]
