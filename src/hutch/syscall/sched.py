"""sched_setattr(2)/sched_getattr(2): the scheduler policy of the calling thread."""

from __future__ import annotations

import ctypes

from hutch.syscall.libc import syscall


class SchedAttr(ctypes.Structure):
    """struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes, with the util clamps)."""
    _fields_ = [
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32),
    ]


def sched_setattr(attr: SchedAttr, pid: int = 0) -> None:
    attr.size = ctypes.sizeof(SchedAttr)
    syscall("sched_setattr", ctypes.c_int(pid), ctypes.byref(attr), ctypes.c_uint(0),
            detail=f"policy {attr.sched_policy}")


def sched_getattr(pid: int = 0) -> SchedAttr:
    attr = SchedAttr()
    syscall("sched_getattr", ctypes.c_int(pid), ctypes.byref(attr),
            ctypes.c_uint(ctypes.sizeof(SchedAttr)), ctypes.c_uint(0))
    return attr
