"""seccomp(2) binding: load a classic BPF filter for the calling thread."""

from __future__ import annotations

from hutch.syscall import ffi

from hutch import syscall as hsys
from hutch.errors import SysCallError

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2


class SockFprog(ffi.Structure):
    _fields_ = [("len", ffi.c_ushort), ("filter", ffi.c_void_p)]


def seccomp_set_mode_filter(prog: bytes, flags: int = 0) -> None:
    """Install `prog` (bytes of struct sock_filter, 8 bytes each); raises SysCallError."""
    if not prog or len(prog) % 8:
        raise ValueError("a BPF program is a non-empty array of 8-byte instructions")
    buffer = ffi.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ffi.addressof(buffer))
    hsys.syscall("seccomp", ffi.c_uint(SECCOMP_SET_MODE_FILTER), ffi.c_uint(flags),
                 ffi.byref(fprog), detail=f"{len(prog) // 8} instructions, flags {flags:#x}")


def action_available(action: int) -> bool:
    """Whether the kernel knows a SECCOMP_RET_* action."""
    value = ffi.c_uint32(action)
    try:
        hsys.syscall("seccomp", ffi.c_uint(SECCOMP_GET_ACTION_AVAIL), ffi.c_uint(0),
                     ffi.byref(value))
    except SysCallError:
        return False
    return True
