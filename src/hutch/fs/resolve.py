"""Resolve paths *inside* a root directory without ever leaving it.

The kernel does the work: openat2(2) with RESOLVE_IN_ROOT treats the root fd as "/"
for every absolute symlink and every "..", so a container's ``/etc -> /host/etc``
or ``../../../etc`` cannot point a mount at the host.  Callers get O_PATH file
descriptors and act on ``/proc/self/fd/N`` (the way runc fixed CVE-2021-30465): the
object checked is the object used, with no window to swap a symlink in between.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from hutch import syscall as _sys
from hutch.errors import ConfigError, SysCallError

O_PATH = os.O_PATH
# RESOLVE_NO_MAGICLINKS: /proc/PID/fd/N style links inside a container root are never
# a legitimate way to name a mount point.
IN_ROOT = _sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_MAGICLINKS


def fd_path(fd: int) -> str:
    """The magic-link path that names the object behind fd (for mount(2) and friends)."""
    return f"/proc/self/fd/{fd}"


def real_path(fd: int) -> str:
    """Where fd's object is, as the kernel sees it from our root (readlink of the fd)."""
    return os.readlink(fd_path(fd))


def clean(path: str) -> str:
    """Lexically clean an in-container path to an absolute one ('a/../b' -> '/b')."""
    return posixpath.normpath("/" + path).replace("//", "/")


def open_root(root: str) -> int:
    """An O_PATH directory fd for a root directory (a host path, trusted)."""
    try:
        return os.open(root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SysCallError("open", exc.errno, root) from None


def open_in_root(root_fd: int, path: str, flags: int = O_PATH, *, follow: bool = True,
                 mode: int = 0) -> int:
    """Open `path` resolved inside the root; `follow=False` refuses a final symlink
    (returns the link itself with O_PATH, ELOOP otherwise)."""
    rel = clean(path).lstrip("/") or "."
    if not follow:
        flags |= os.O_NOFOLLOW
    return _sys.openat2(root_fd, rel, flags, mode, IN_ROOT)


def exists_in_root(root_fd: int, path: str) -> bool:
    try:
        os.close(open_in_root(root_fd, path))
        return True
    except SysCallError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise


def mkdir_all_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """Create every missing directory of `path` inside the root; return an O_PATH fd of it.

    Each component is created with mkdirat() relative to an fd of its parent that was
    itself resolved inside the root, so a symlink swapped in cannot redirect it."""
    parts = [p for p in clean(path).split("/") if p]
    fd = os.dup(root_fd)
    done = ""
    try:
        for part in parts:
            done = f"{done}/{part}"
            try:
                next_fd = open_in_root(root_fd, done, O_PATH | os.O_DIRECTORY)
            except SysCallError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # lost a race with another creator, or a dangling symlink: reopen decides
                except OSError as mk_exc:
                    raise SysCallError("mkdir", mk_exc.errno, done) from None
                next_fd = open_in_root(root_fd, done, O_PATH | os.O_DIRECTORY)
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def create_file_in_root(root_fd: int, path: str, mode: int = 0o644) -> int:
    """Make sure a non-directory exists at `path` (creating an empty regular file and its
    parent directories); return an O_PATH fd of it.  A final symlink is not followed:
    a symlink planted at a mount point is refused rather than mounted through."""
    parent, name = posixpath.split(clean(path))
    if not name:
        raise SysCallError("create", errno.EISDIR, path)
    parent_fd = mkdir_all_in_root(root_fd, parent)
    try:
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=parent_fd)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SysCallError("create", exc.errno, path) from None
    finally:
        os.close(parent_fd)
    fd = open_in_root(root_fd, path, O_PATH, follow=False)
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise SysCallError("open", errno.ELOOP, f"{path} (a symlink where a file is expected)")
    return fd


MAX_SYMLINKS = 40


def resolve_in_root(root_fd: int, path: str) -> str:
    """The container path `path` names, with every symlink resolved inside the root
    (absolute targets restart at the root, ".." never climbs above it), dangling ones
    included: components that do not exist yet are kept as they are (securejoin's rules).

    The result contains no symlink among its existing components, so creating the
    missing ones and then re-checking with :func:`open_in_root` is race-evident."""
    remaining = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    missing = False
    while remaining:
        part = remaining.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join(resolved + [part])
        if missing:
            resolved.append(part)
            continue
        try:
            fd = open_in_root(root_fd, candidate, O_PATH, follow=False)
        except SysCallError as exc:
            if exc.errno != errno.ENOENT:
                raise
            missing = True  # from here on nothing exists: the rest is taken lexically
            resolved.append(part)
            continue
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                resolved.append(part)
                continue
            links += 1
            if links > MAX_SYMLINKS:
                raise SysCallError("open", errno.ELOOP, path)
            target = os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): the link's own target
        finally:
            os.close(fd)
        if target.startswith("/"):
            resolved = []
        remaining = [p for p in target.split("/") if p and p != "."] + remaining
    return "/" + "/".join(resolved)


def safe_join(root: str, path: str) -> str:
    """The host path of container path `path` under `root`, with every symlink resolved
    inside the root (missing components appended as they are).

    Use for process.cwd and anything named by the container before pivot_root."""
    root_fd = open_root(root)
    try:
        inside = resolve_in_root(root_fd, path)
        return real_path(root_fd).rstrip("/") + inside if inside != "/" else real_path(root_fd)
    finally:
        os.close(root_fd)


def enter_cwd(path: str, where: str = "process.cwd") -> None:
    """chdir to `path` inside the (already pivoted) container root and prove that the
    result is reachable from the root: a cwd inherited from a leaked host fd shows up as
    "(unreachable)..." in getcwd() (CVE-2024-21626)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"must be an absolute path, got {path!r}", where=where)
    try:
        os.chdir(path)
        cwd = os.getcwd()
    except OSError as exc:
        raise SysCallError("chdir", exc.errno, path) from None
    if not cwd.startswith("/"):
        raise SysCallError("chdir", errno.ENOENT, f"{path} (outside the container root)")
