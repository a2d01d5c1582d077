"""Mount-API syscalls the base layer lacks: open_tree(2), move_mount(2), mount_setattr(2)
(also with MOUNT_ATTR_IDMAP) and fstatfs(2)'s f_type.

Same style as :mod:`hutch.syscall`: each wrapper raises :class:`SysCallError` naming the
call, so callers never look at return codes.
"""

from __future__ import annotations

from hutch.syscall import ffi
import os

from hutch.errors import SysCallError
from hutch.syscall.libc import _libc, syscall

AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100

MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR__ATIME = 0x00000070
MOUNT_ATTR_RELATIME = 0x00000000
MOUNT_ATTR_NOATIME = 0x00000010
MOUNT_ATTR_STRICTATIME = 0x00000020
MOUNT_ATTR_NODIRATIME = 0x00000080
MOUNT_ATTR_IDMAP = 0x00100000
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000

OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000          # O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040
AT_FDCWD = -100

# statfs(2) f_type magics hutch checks against.
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
DEVPTS_SUPER_MAGIC = 0x1CD1


class _MountAttr(ffi.Structure):
    _fields_ = [("attr_set", ffi.c_uint64), ("attr_clr", ffi.c_uint64),
                ("propagation", ffi.c_uint64), ("userns_fd", ffi.c_uint64)]


def mount_setattr(dirfd: int, path: str, attr_set: int, attr_clr: int = 0,
                  propagation: int = 0, flags: int = AT_EMPTY_PATH | AT_RECURSIVE,
                  detail: str | None = None) -> None:
    """mount_setattr(2): change mount attributes, recursively by default (the 'r*' options)."""
    attr = _MountAttr(attr_set, attr_clr, propagation, 0)
    syscall("mount_setattr", ffi.c_int(dirfd), os.fsencode(path), ffi.c_uint(flags),
            ffi.byref(attr), ffi.c_size_t(ffi.sizeof(attr)), detail=detail or path)


def set_idmap(tree_fd: int, userns_fd: int, recursive: bool, detail: str) -> None:
    """mount_setattr(MOUNT_ATTR_IDMAP) on a detached tree: its ids go through userns_fd's maps."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    syscall("mount_setattr", ffi.c_int(tree_fd), b"", ffi.c_uint(flags),
            ffi.byref(attr), ffi.c_size_t(ffi.sizeof(attr)), detail=detail)


def open_tree(dirfd: int, path: str, flags: int, detail: str | None = None) -> int:
    """open_tree(2); with OPEN_TREE_CLONE a detached copy of the mount (tree) at path."""
    return syscall("open_tree", ffi.c_int(dirfd), os.fsencode(path),
                   ffi.c_uint(flags | OPEN_TREE_CLOEXEC), detail=detail or path)


def move_mount_fd(from_fd: int, to_fd: int, detail: str) -> None:
    """move_mount(2) of a detached tree (from_fd) onto the object to_fd names."""
    syscall("move_mount", ffi.c_int(from_fd), b"", ffi.c_int(to_fd), b"",
            ffi.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), detail=detail)


def fstatfs_type(fd: int) -> int:
    """The filesystem magic (f_type) of the file behind fd (O_PATH fds work)."""
    # struct statfs starts with a long f_type on every Linux ABI hutch supports;
    # 256 bytes is more than the whole structure.
    buf = ffi.create_string_buffer(256)
    if _libc.fstatfs(ffi.c_int(fd), buf) < 0:
        raise SysCallError("fstatfs", ffi.get_errno(), str(fd))
    return ffi.c_long.from_buffer(buf).value & 0xFFFFFFFF


def statfs_type(path: str) -> int:
    """The filesystem magic (f_type) of path (following symlinks)."""
    buf = ffi.create_string_buffer(256)
    if _libc.statfs(os.fsencode(path), buf) < 0:
        raise SysCallError("statfs", ffi.get_errno(), path)
    return ffi.c_long.from_buffer(buf).value & 0xFFFFFFFF
