"""Bring up `lo` in a new network namespace (the kernel creates it down)."""

from __future__ import annotations

import fcntl
import os
import struct

from hutch import syscall as hsys

AF_INET = 2
SOCK_DGRAM = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up_loopback() -> None:
    fd = hsys.socket_fd(AF_INET, SOCK_DGRAM)
    try:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(fd, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    finally:
        os.close(fd)
