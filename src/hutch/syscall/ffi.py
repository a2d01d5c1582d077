"""The few C types and the libc handle hutch needs, straight from `_ctypes`.

`import ctypes` costs about 3 ms here: its __init__ defines some thirty types, a
Windows/macOS compatibility layer and pointer caches before anything is called, and
every container start pays for it twice (the runtime and, after fork, nothing new,
but before fork the runtime's own prctl calls need it).  `_ctypes`, the C module
under it, loads in about 0.4 ms.  This module builds only what hutch/syscall uses,
with the same names as ctypes so the wrappers read the same:

    c_int c_uint c_long c_ulong c_size_t c_int32 c_uint32 c_uint64 c_ushort c_void_p c_char
    Structure Array byref addressof sizeof get_errno create_string_buffer libc

The types are real ctypes types (subclasses of _SimpleCData with ctypes' type codes),
so calls convert and check arguments exactly as ctypes does.
"""

from __future__ import annotations

from _ctypes import (FUNCFLAG_CDECL, FUNCFLAG_USE_ERRNO, Array, CFuncPtr, Structure,  # noqa: F401
                     _SimpleCData, addressof, byref, dlopen, get_errno, sizeof)


def _simple(name: str, code: str) -> type:
    """A C scalar type as ctypes defines it: a _SimpleCData subclass with a type code."""
    return type(name, (_SimpleCData,), {"_type_": code})


c_int, c_uint = _simple("c_int", "i"), _simple("c_uint", "I")
c_long, c_ulong = _simple("c_long", "l"), _simple("c_ulong", "L")
c_short, c_ushort = _simple("c_short", "h"), _simple("c_ushort", "H")
c_longlong, c_ulonglong = _simple("c_longlong", "q"), _simple("c_ulonglong", "Q")
c_void_p, c_char = _simple("c_void_p", "P"), _simple("c_char", "c")

# Linux's LP64 and ILP32 ABIs: int is 32 bits, long is the pointer's size.
c_int32, c_uint32 = c_int, c_uint
c_int64, c_uint64 = c_longlong, c_ulonglong
c_size_t, c_ssize_t = c_ulong, c_long


def create_string_buffer(init: bytes | int, size: int | None = None) -> Array:
    """A zeroed char array of `size` bytes (or len(init)+1), starting with init's bytes."""
    if isinstance(init, int):
        return (c_char * init)()
    buffer = (c_char * (len(init) + 1 if size is None else size))()
    buffer[:len(init)] = init       # slice assignment copies every byte, NULs included
    return buffer


class _Function(CFuncPtr):
    """A libc function returning int, with errno saved for get_errno() (use_errno=True)."""
    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Library:
    """The process's own symbols (dlopen(NULL)): libc, already mapped by the interpreter."""

    def __init__(self):
        self._handle = dlopen(None, 0)          # RTLD_LOCAL, ctypes' default (RTLD_NOW is added)

    def __getattr__(self, name: str) -> _Function:
        if name.startswith("__"):
            raise AttributeError(name)
        function = _Function((name, self))
        setattr(self, name, function)
        return function


libc = _Library()
