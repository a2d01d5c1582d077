"""Keep a namespace alive without a process: bind-mount its nsfs file onto a path.

This is what ``ip netns add`` and ``unshare --net=FILE`` do; the namespace lives
until the mount is gone (:func:`unpersist`) and every process has left.
"""

from __future__ import annotations

import os

from hutch.errors import ConfigError, HutchError, SysCallError
from hutch.ns.names import namespace_type


def persist(target: int | str, ns_type: str, path: str) -> int:
    """Bind-mount target's namespace of ns_type (a pid, or an nsfs path) onto path.

    path is created as an empty file if missing (and removed again if the mount
    fails).  Returns the namespace's inode.  Mount namespaces can only be bound
    onto a path in an older mount namespace, on a mount that is not shared: the
    kernel forbids the loops anything else could make."""
    from hutch.ns.join import namespace_path
    from hutch.syscall import MS_BIND, mount
    ns_type = namespace_type(ns_type)
    source = namespace_path(target, ns_type)
    try:
        ino = os.stat(source).st_ino
    except FileNotFoundError:
        raise ConfigError(f"no such process or namespace file: {source}", where=str(target)) from None
    if os.path.ismount(path):
        raise ConfigError(f"{path} is already a mount point", where=path)
    created = False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
        os.close(fd)
        created = True
    except FileExistsError:
        if os.path.isdir(path):
            raise ConfigError(f"{path} is a directory", where=path) from None
    except OSError as err:
        raise SysCallError("open", err.errno, path) from None
    try:
        mount(source, path, None, MS_BIND)
    except HutchError:
        if created:
            os.unlink(path)
        raise
    return ino


def unpersist(path: str, remove: bool = True) -> None:
    """Undo persist(): lazily unmount path (other users of the namespace keep it) and,
    with remove, delete the file."""
    from hutch.syscall import MNT_DETACH, umount2
    if not os.path.lexists(path):
        raise ConfigError(f"{path} does not exist", where=path)
    try:
        umount2(path, MNT_DETACH)
    except SysCallError as err:
        if err.errno != 22:      # EINVAL: not a mount point (already unmounted)
            raise
    if remove:
        try:
            os.unlink(path)
        except OSError as err:
            raise SysCallError("unlink", err.errno, path) from None
