"""The libc calls, through hutch.syscall.ffi (loaded on first use via hutch.syscall).

Every wrapper raises :class:`hutch.errors.SysCallError` naming the call, its
main argument and the errno, so callers never inspect return codes.  Where the
standard library already has the call (``os.*``), use that instead.
"""

from __future__ import annotations

from hutch.syscall import ffi
import os


from hutch.errors import SysCallError
from hutch.syscall.constants import *  # noqa: F401,F403
from hutch.syscall.numbers import number

_libc = ffi.libc
_syscall = _libc.syscall
_syscall.restype = ffi.c_long


def _fs(value: str | bytes | None) -> bytes | None:
    return os.fsencode(value) if value is not None else None


def _check(ret: int, call: str, detail: str | None = None) -> int:
    if ret < 0:
        raise SysCallError(call, ffi.get_errno(), detail)
    return ret


def syscall(name: str, *args, detail: str | None = None) -> int:
    """Invoke a raw syscall by name, for those glibc 2.36 has no wrapper for (or wraps
    awkwardly); the number comes from hutch.syscall.numbers (NoSyscallNumber if none)."""
    return _check(_syscall(ffi.c_long(number(name)), *args), name, detail)


# --- namespaces ---------------------------------------------------------------

def unshare(flags: int) -> None:
    _check(_libc.unshare(ffi.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0, detail: str | None = None) -> None:
    _check(_libc.setns(ffi.c_int(fd), ffi.c_int(nstype)), "setns", detail)


# --- mounts ------------------------------------------------------------------

def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_fs(source), _fs(target), _fs(fstype), ffi.c_ulong(flags), _fs(data))
    _check(ret, "mount", f"{source or fstype} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_fs(target), ffi.c_int(flags)), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", _fs(new_root), _fs(put_old), detail=new_root)


# --- identity ----------------------------------------------------------------

def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ffi.c_size_t(len(raw))), "sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ffi.c_size_t(len(raw))), "setdomainname", name)


# --- process attributes --------------------------------------------------------

def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(ffi.c_int(option), ffi.c_ulong(arg2), ffi.c_ulong(arg3),
                              ffi.c_ulong(arg4), ffi.c_ulong(arg5)), "prctl", str(option))


def set_name(name: str) -> None:
    """Set the calling thread's comm (what ps and lsns show), up to 15 bytes."""
    buf = ffi.create_string_buffer(name.encode()[:15])   # kept alive across the call
    prctl(PR_SET_NAME, ffi.addressof(buf))


def personality(persona: int) -> int:
    return _check(_libc.personality(ffi.c_ulong(persona)), "personality", hex(persona))


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    syscall("close_range", ffi.c_uint(first), ffi.c_uint(last), ffi.c_uint(flags),
            detail=f"{first}..{last}")


class _CapHeader(ffi.Structure):
    _fields_ = [("version", ffi.c_uint32), ("pid", ffi.c_int)]


class _CapData(ffi.Structure):
    _fields_ = [("effective", ffi.c_uint32), ("permitted", ffi.c_uint32),
                ("inheritable", ffi.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    syscall("capget", ffi.byref(header), data)
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
    syscall("capset", ffi.byref(header), data)


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    syscall("ioprio_set", ffi.c_int(which), ffi.c_int(who), ffi.c_int(ioprio),
            detail=str(ioprio))


def ioctl_int(fd: int, request: int, arg: int = 0) -> int:
    return _check(_libc.ioctl(ffi.c_int(fd), ffi.c_ulong(request), ffi.c_ulong(arg)),
                  "ioctl", hex(request))


# --- files -------------------------------------------------------------------

class _OpenHow(ffi.Structure):
    _fields_ = [("flags", ffi.c_uint64), ("mode", ffi.c_uint64), ("resolve", ffi.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): the kernel resolves `path` under the rules in `resolve`."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return syscall("openat2", ffi.c_int(dirfd), _fs(path), ffi.byref(how),
                   ffi.c_size_t(ffi.sizeof(how)), detail=path)


def pidfd_open(pid: int) -> int:
    return syscall("pidfd_open", ffi.c_int(pid), ffi.c_uint(0), detail=str(pid))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    syscall("pidfd_send_signal", ffi.c_int(pidfd), ffi.c_int(sig), None, ffi.c_uint(0),
            detail=str(sig))


def socket_fd(family: int, sock_type: int, proto: int = 0) -> int:
    """A raw socket fd (close-on-exec) without importing the socket module."""
    return _check(_libc.socket(ffi.c_int(family), ffi.c_int(sock_type | 0o2000000),
                               ffi.c_int(proto)), "socket", str(family))


def get_child_subreaper() -> bool:
    value = ffi.c_int(0)
    _check(_libc.prctl(ffi.c_int(37), ffi.byref(value), ffi.c_ulong(0), ffi.c_ulong(0),
                       ffi.c_ulong(0)), "prctl", "PR_GET_CHILD_SUBREAPER")
    return bool(value.value)


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """Give the caller a new session keyring called name (keyctl(2))."""
    return syscall("keyctl", ffi.c_int(KEYCTL_JOIN_SESSION_KEYRING), _fs(name), detail=name)
