"""The container's terminal: a pty made in the container's own devpts, its
master handed to whoever asked (a --console-socket, or `hutch run -t`) over
SCM_RIGHTS, its slave bound on /dev/console and used as the process's stdio."""

from __future__ import annotations

import fcntl
import os
import struct

from hutch import syscall as hsys

TIOCGPTN = 0x80045430


def open_pty() -> tuple[int, int, str]:
    """Open a new pty pair in /dev/pts (the container's own instance)."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, hsys.TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    name = f"/dev/pts/{number}"
    slave = os.open(name, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave, name


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, hsys.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, hsys.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return None


def bind_console(slave_name: str) -> None:
    """Bind the pty slave onto /dev/console, refusing a planted symlink (CVE-2025-52565)."""
    from hutch.fs.devices import bind_console as bind_checked
    bind_checked(slave_name)


def send_fd(sock_fd: int, fd: int, name: str) -> None:
    import array
    import socket
    sock = socket.socket(fileno=os.dup(sock_fd))
    try:
        sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    finally:
        sock.close()


def receive_fd(sock) -> int:
    """Receive one fd sent with SCM_RIGHTS on a connected socket."""
    import socket
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("no file descriptor received on the console socket")
    return fds[0]


def setup_container_console(sock_fd: int, size: tuple[int, int] | None) -> int:
    """In the container (after pivot_root): make the pty, send the master, return the slave."""
    master, slave, name = open_pty()
    if size:
        set_size(slave, *size)
    bind_console(name)
    send_fd(sock_fd, master, name)
    os.close(master)
    return slave


def make_controlling(slave: int) -> None:
    """Make slave the controlling terminal and the stdio of this (session leader) process."""
    fcntl.ioctl(slave, hsys.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
