"""sched_setattr(2)/sched_getattr(2): the scheduler policy of the calling thread."""

from __future__ import annotations

import ctypes
import os

from hutch.errors import SysCallError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

_NR = {"x86_64": {"sched_setattr": 314, "sched_getattr": 315},
       "aarch64": {"sched_setattr": 274, "sched_getattr": 275}}
_NR_HERE = _NR.get(os.uname().machine, _NR["x86_64"])


class SchedAttr(ctypes.Structure):
    """struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes, with the util clamps)."""
    _fields_ = [
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32),
    ]


def _raw(name: str, *args, detail: str | None = None) -> int:
    ret = _libc.syscall(ctypes.c_long(_NR_HERE[name]), *args)
    if ret < 0:
        raise SysCallError(name, ctypes.get_errno(), detail)
    return ret


def sched_setattr(attr: SchedAttr, pid: int = 0) -> None:
    attr.size = ctypes.sizeof(SchedAttr)
    _raw("sched_setattr", ctypes.c_int(pid), ctypes.byref(attr), ctypes.c_uint(0),
         detail=f"policy {attr.sched_policy}")


def sched_getattr(pid: int = 0) -> SchedAttr:
    attr = SchedAttr()
    _raw("sched_getattr", ctypes.c_int(pid), ctypes.byref(attr),
         ctypes.c_uint(ctypes.sizeof(SchedAttr)), ctypes.c_uint(0))
    return attr
