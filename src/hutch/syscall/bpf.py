"""bpf(2) for cgroup device programs: load, attach, query, detach.

Only what the cgroup v2 device controller needs.  The ``union bpf_attr`` is built
as a zeroed 128-byte buffer with struct.pack_into at the kernel's offsets.
"""

from __future__ import annotations

from hutch.syscall import ffi
import os

import struct

from hutch.errors import SysCallError
from hutch.syscall.libc import syscall

_ATTR_SIZE = 128

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


def _bpf(cmd: int, attr: ffi.Array, detail: str) -> int:
    return syscall("bpf", ffi.c_int(cmd), attr, ffi.c_uint(_ATTR_SIZE), detail=detail)


def prog_load_device(insns: bytes, name: str = "hutch_dev") -> int:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd (close it when attached)."""
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    code = ffi.create_string_buffer(insns, len(insns))
    license_ = ffi.create_string_buffer(b"Apache")
    log = ffi.create_string_buffer(65536)
    struct.pack_into("<IIQQIIQII", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ffi.addressof(code), ffi.addressof(license_), 1, len(log),
                     ffi.addressof(log), 0, 0)
    struct.pack_into("16s", attr, 48, name.encode()[:15])
    struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)
    try:
        return _bpf(BPF_PROG_LOAD, attr, "PROG_LOAD device program")
    except SysCallError as err:
        text = log.value.decode(errors="replace").strip().splitlines()
        if text:
            err.message += f" (verifier: {text[0] if len(text) < 2 else text[-2]})"
        raise


def prog_attach(cgroup_fd: int, prog_fd: int, flags: int = BPF_F_ALLOW_MULTI) -> None:
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _bpf(BPF_PROG_ATTACH, attr, "PROG_ATTACH cgroup device")


def prog_detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<III", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE)
    _bpf(BPF_PROG_DETACH, attr, "PROG_DETACH cgroup device")


def prog_query(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached directly to the cgroup."""
    ids = (ffi.c_uint32 * 64)()
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0,
                     ffi.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr, "PROG_QUERY cgroup device")
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def prog_fd_by_id(prog_id: int) -> int:
    attr = ffi.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, f"PROG_GET_FD_BY_ID {prog_id}")


def replace_device_program(cgroup_dir: str, insns: bytes) -> int:
    """Attach a new device program to cgroup_dir, then detach the ones it had before.

    Attach-then-detach means there is never a moment without a filter.  Returns the
    new program's id position count (number of programs detached)."""
    cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old_ids = prog_query(cgroup_fd)
        prog_fd = prog_load_device(insns)
        try:
            prog_attach(cgroup_fd, prog_fd)
        finally:
            os.close(prog_fd)
        for prog_id in old_ids:
            try:
                old_fd = prog_fd_by_id(prog_id)
            except SysCallError:
                continue
            try:
                prog_detach(cgroup_fd, old_fd)
            finally:
                os.close(old_fd)
        return len(old_ids)
    finally:
        os.close(cgroup_fd)


def attached_device_programs(cgroup_dir: str) -> list[int]:
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return prog_query(fd)
    finally:
        os.close(fd)
