"""The only package that talks to libc (through _ctypes, see ffi.py).

Constants load at once; the calls (hutch.syscall.libc, which loads _ctypes)
load on first use, so commands that make no system call beyond os.* (state,
list, start) never pay for ctypes.  Every wrapper raises
:class:`hutch.errors.SysCallError` naming the call, its argument and the errno.
"""

from sys import modules as _modules

from hutch.syscall.constants import *  # noqa: F401,F403  (re-exported for callers)

# Submodules must stay unknown to __getattr__ so that `from hutch.syscall import proc` imports them.
_SUBMODULES = frozenset({"libc", "proc", "constants", "mountapi", "mm", "bpf", "sched", "seccomp",
                         "numbers", "gen_syscall_table", "ffi"})


def __getattr__(name: str):
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(name)
    import hutch.syscall.libc  # noqa: F401
    try:
        value = getattr(_modules["hutch.syscall.libc"], name)
    except AttributeError:
        raise AttributeError(f"module 'hutch.syscall' has no attribute {name!r}") from None
    globals()[name] = value
    return value
