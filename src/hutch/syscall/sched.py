"""sched_setattr(2)/sched_getattr(2): the scheduler policy of the calling thread."""

from __future__ import annotations

from hutch.syscall import ffi

from hutch.syscall.libc import syscall


class SchedAttr(ffi.Structure):
    """struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes, with the util clamps)."""
    _fields_ = [
        ("size", ffi.c_uint32), ("sched_policy", ffi.c_uint32),
        ("sched_flags", ffi.c_uint64), ("sched_nice", ffi.c_int32),
        ("sched_priority", ffi.c_uint32), ("sched_runtime", ffi.c_uint64),
        ("sched_deadline", ffi.c_uint64), ("sched_period", ffi.c_uint64),
        ("sched_util_min", ffi.c_uint32), ("sched_util_max", ffi.c_uint32),
    ]


def sched_setattr(attr: SchedAttr, pid: int = 0) -> None:
    attr.size = ffi.sizeof(SchedAttr)
    syscall("sched_setattr", ffi.c_int(pid), ffi.byref(attr), ffi.c_uint(0),
            detail=f"policy {attr.sched_policy}")


def sched_getattr(pid: int = 0) -> SchedAttr:
    attr = SchedAttr()
    syscall("sched_getattr", ffi.c_int(pid), ffi.byref(attr),
            ffi.c_uint(ffi.sizeof(SchedAttr)), ffi.c_uint(0))
    return attr
