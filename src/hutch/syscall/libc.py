"""The libc calls, through ctypes (loaded on first use via hutch.syscall).

Every wrapper raises :class:`hutch.errors.SysCallError` naming the call, its
main argument and the errno, so callers never inspect return codes.  Where the
standard library already has the call (``os.*``), use that instead.
"""

from __future__ import annotations

import ctypes
import os


from hutch.errors import SysCallError
from hutch.syscall.constants import *  # noqa: F401,F403
from hutch.syscall.numbers import number

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _fs(value: str | bytes | None) -> bytes | None:
    return os.fsencode(value) if value is not None else None


def _check(ret: int, call: str, detail: str | None = None) -> int:
    if ret < 0:
        raise SysCallError(call, ctypes.get_errno(), detail)
    return ret


def syscall(name: str, *args, detail: str | None = None) -> int:
    """Invoke a raw syscall by name, for those glibc 2.36 has no wrapper for (or wraps
    awkwardly); the number comes from hutch.syscall.numbers (NoSyscallNumber if none)."""
    return _check(_syscall(ctypes.c_long(number(name)), *args), name, detail)


# --- namespaces ---------------------------------------------------------------

def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0, detail: str | None = None) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", detail)


# --- mounts ------------------------------------------------------------------

def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_fs(source), _fs(target), _fs(fstype), ctypes.c_ulong(flags), _fs(data))
    _check(ret, "mount", f"{source or fstype} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_fs(target), ctypes.c_int(flags)), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", _fs(new_root), _fs(put_old), detail=new_root)


# --- identity ----------------------------------------------------------------

def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname", name)


# --- process attributes --------------------------------------------------------

def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl", str(option))


def set_name(name: str) -> None:
    """Set the calling thread's comm (what ps and lsns show), up to 15 bytes."""
    buf = ctypes.create_string_buffer(name.encode()[:15])   # kept alive across the call
    prctl(PR_SET_NAME, ctypes.addressof(buf))


def personality(persona: int) -> int:
    return _check(_libc.personality(ctypes.c_ulong(persona)), "personality", hex(persona))


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    syscall("close_range", ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags),
            detail=f"{first}..{last}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    syscall("capget", ctypes.byref(header), data)
    return tuple((data[1].__getattribute__(f) << 32) | data[0].__getattribute__(f)
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    syscall("capset", ctypes.byref(header), data)


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    syscall("ioprio_set", ctypes.c_int(which), ctypes.c_int(who), ctypes.c_int(ioprio),
            detail=str(ioprio))


def ioctl_int(fd: int, request: int, arg: int = 0) -> int:
    return _check(_libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_ulong(arg)),
                  "ioctl", hex(request))


# --- files -------------------------------------------------------------------

class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): the kernel resolves `path` under the rules in `resolve`."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return syscall("openat2", ctypes.c_int(dirfd), _fs(path), ctypes.byref(how),
                   ctypes.c_size_t(ctypes.sizeof(how)), detail=path)


def pidfd_open(pid: int) -> int:
    return syscall("pidfd_open", ctypes.c_int(pid), ctypes.c_uint(0), detail=str(pid))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    syscall("pidfd_send_signal", ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0),
            detail=str(sig))


def socket_fd(family: int, sock_type: int, proto: int = 0) -> int:
    """A raw socket fd (close-on-exec) without importing the socket module."""
    return _check(_libc.socket(ctypes.c_int(family), ctypes.c_int(sock_type | 0o2000000),
                               ctypes.c_int(proto)), "socket", str(family))


def get_child_subreaper() -> bool:
    value = ctypes.c_int(0)
    _check(_libc.prctl(ctypes.c_int(37), ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), "prctl", "PR_GET_CHILD_SUBREAPER")
    return bool(value.value)


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """Give the caller a new session keyring called name (keyctl(2))."""
    return syscall("keyctl", ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _fs(name), detail=name)
