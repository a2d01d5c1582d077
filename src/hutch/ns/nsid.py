"""Network namespace ids (NETNSID) over rtnetlink: RTM_GETNSID and RTM_NEWNSID.

A peer network namespace can be given a small integer id local to the current
netns (``ip netns set NAME ID``); lsns shows it as NETNSID and ``ip netns list``
as ``(id: N)``.  The kernel takes the peer namespace as an open fd
(NETNSA_FD), interpreted in the sending process's fd table.

Messages are packed by hand with ``struct``: the stdlib socket module speaks
AF_NETLINK, and two message types do not justify a dependency.
"""

from __future__ import annotations

import os
import socket
import struct

from hutch.errors import SysCallError

RTM_NEWNSID = 88
RTM_GETNSID = 90
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NETNSA_NSID = 1
NETNSA_FD = 3
NETNSA_NSID_NOT_ASSIGNED = -1

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_RTGENMSG = struct.Struct("=B3x")       # family, padded to NLMSG_ALIGNTO
_RTATTR_I32 = struct.Struct("=HHi")     # rta_len, rta_type, value


def build_request(msg_type: int, flags: int, seq: int, attrs: list[tuple[int, int]]) -> bytes:
    """One rtnetlink message: header, rtgenmsg(AF_UNSPEC), 32-bit attributes."""
    body = _RTGENMSG.pack(socket.AF_UNSPEC)
    body += b"".join(_RTATTR_I32.pack(_RTATTR_I32.size, kind, value) for kind, value in attrs)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def parse_reply(data: bytes) -> tuple[int, dict[int, int]]:
    """(error, attributes) of the first message in `data`.

    error is the positive errno of an NLMSG_ERROR reply (0 for an ACK), attributes
    maps the 32-bit attributes of an RTM_NEWNSID reply."""
    length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, 0)
    if msg_type == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, _NLMSGHDR.size)
        return -err, {}
    attrs: dict[int, int] = {}
    offset = _NLMSGHDR.size + _RTGENMSG.size
    while offset + 4 <= min(length, len(data)):
        rta_len, rta_type = struct.unpack_from("=HH", data, offset)
        if rta_len < 4:
            break
        if rta_len >= 8:
            (attrs[rta_type],) = struct.unpack_from("=i", data, offset + 4)
        offset += (rta_len + 3) & ~3
    return 0, attrs


class NsidClient:
    """A NETLINK_ROUTE socket asking about peer namespaces of the current netns."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "NsidClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _talk(self, msg_type: int, flags: int, attrs: list[tuple[int, int]]) -> tuple[int, dict]:
        self.seq += 1
        self.sock.send(build_request(msg_type, flags, self.seq, attrs))
        return parse_reply(self.sock.recv(65536))

    def get(self, ns_fd: int) -> int | None:
        """The nsid of the netns open as ns_fd: N, -1 (not assigned), None (unknown)."""
        err, attrs = self._talk(RTM_GETNSID, NLM_F_REQUEST, [(NETNSA_FD, ns_fd)])
        if err:
            return None
        return attrs.get(NETNSA_NSID)

    def set(self, ns_fd: int, nsid: int) -> None:
        """Assign nsid (-1: let the kernel pick) to the netns open as ns_fd."""
        err, _ = self._talk(RTM_NEWNSID, NLM_F_REQUEST | NLM_F_ACK,
                            [(NETNSA_FD, ns_fd), (NETNSA_NSID, nsid)])
        if err:
            raise SysCallError("RTM_NEWNSID", err, f"nsid {nsid}")


def nsid_of_path(path: str, client: NsidClient | None = None) -> int | None:
    """The nsid of the netns file at path (None if unknown), -1 when not assigned."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if client is not None:
            return client.get(fd)
        with NsidClient() as own:
            return own.get(fd)
    finally:
        os.close(fd)


def format_nsid(nsid: int | None) -> str | None:
    """lsns's NETNSID text: the number, "unassigned", or nothing."""
    if nsid is None or nsid < NETNSA_NSID_NOT_ASSIGNED:
        return None
    return "unassigned" if nsid == NETNSA_NSID_NOT_ASSIGNED else str(nsid)


__all__ = ["NsidClient", "nsid_of_path", "format_nsid", "build_request", "parse_reply",
           "NETNSA_NSID_NOT_ASSIGNED"]
