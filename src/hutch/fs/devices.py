"""The container's /dev: default device nodes, linux.devices, symlinks, ptmx, console.

Without a user namespace the nodes are made with mknod(2); inside one the kernel
forbids that, so the host's node is bind-mounted onto an empty file instead (as runc
does).  Every path is resolved inside the rootfs (see :mod:`hutch.fs.resolve`).
"""

from __future__ import annotations

import errno
import os
import stat

from hutch import syscall as _sys
from hutch.errors import ConfigError, SysCallError
from hutch.fs.resolve import clean, create_file_in_root, fd_path, mkdir_all_in_root

# (path, type, major, minor): runc's AllowedDevices that it creates, all 0666 root:root.
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
]

DEV_SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
]

_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}

# UNIX98 pty slaves live on majors 136..143.
_PTY_SLAVE_MAJORS = range(136, 144)


def parse_devices(spec: dict) -> list[dict]:
    """linux.devices validated into dicts with path/type/major/minor/mode/uid/gid."""
    devices = (spec.get("linux") or {}).get("devices") or []
    if not isinstance(devices, list):
        raise ConfigError("must be a list", where="linux.devices")
    out = []
    for i, dev in enumerate(devices):
        where = f"linux.devices[{i}]"
        if not isinstance(dev, dict):
            raise ConfigError("must be an object", where=where)
        path = dev.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"path must be an absolute path, got {path!r}", where=f"{where}.path")
        kind = dev.get("type")
        if kind not in _TYPE_BITS:
            raise ConfigError(f"type must be one of c, b, u, p, got {kind!r}", where=f"{where}.type")
        major, minor = dev.get("major", 0), dev.get("minor", 0)
        if kind != "p":
            for key, value in (("major", major), ("minor", minor)):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"must be a non-negative integer, got {value!r}",
                                      where=f"{where}.{key}")
        mode = dev.get("fileMode", 0o666)
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise ConfigError(f"must be a permission mode, got {mode!r}", where=f"{where}.fileMode")
        # Lexically cleaned as runc does ("/mnt/" is /mnt, "/dev/./x" is /dev/x).
        out.append({"path": clean(path), "type": kind, "major": major or 0, "minor": minor or 0,
                    "mode": mode, "uid": dev.get("uid", 0), "gid": dev.get("gid", 0),
                    "where": where})
    return out


def create_devices(root_fd: int, devices: list[dict], *, in_userns: bool) -> None:
    """Create each device in the rootfs (mknod, or bind from the host in a user namespace)."""
    old_umask = os.umask(0)
    try:
        for dev in devices:
            try:
                if in_userns:
                    _bind_host_node(root_fd, dev["path"])
                else:
                    _mknod(root_fd, dev)
            except SysCallError as exc:
                exc.where = dev.get("where")
                raise
    finally:
        os.umask(old_umask)


def default_devices() -> list[dict]:
    return [{"path": p, "type": t, "major": ma, "minor": mi, "mode": 0o666, "uid": 0, "gid": 0,
             "where": "default devices"} for p, t, ma, mi in DEFAULT_DEVICES]


def _mknod(root_fd: int, dev: dict) -> None:
    parent, name = os.path.split(dev["path"])
    if not name:
        return   # "/": an existing directory, left as it is (below)
    parent_fd = mkdir_all_in_root(root_fd, parent)
    try:
        kind = _TYPE_BITS[dev["type"]]
        rdev = os.makedev(dev["major"], dev["minor"]) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(name, kind | dev["mode"], rdev, dir_fd=parent_fd)
        except FileExistsError:
            if _is_directory(parent_fd, name):
                return   # runc leaves an existing directory there (its mknod's EEXIST)
            # Replace whatever the image had there (a file, or a symlink planted to
            # redirect our chown): we own /dev.
            _unlink_non_dir(parent_fd, name, dev["path"])
            os.mknod(name, kind | dev["mode"], rdev, dir_fd=parent_fd)
        except PermissionError:
            # No CAP_MKNOD (a user namespace the caller did not announce): bind instead.
            _bind_host_node(root_fd, dev["path"])
            return
        except OSError as exc:
            raise SysCallError("mknod", exc.errno, dev["path"]) from None
        try:
            os.chown(name, dev["uid"], dev["gid"], dir_fd=parent_fd, follow_symlinks=False)
            os.chmod(name, dev["mode"], dir_fd=parent_fd)
        except OSError as exc:
            raise SysCallError("chown", exc.errno, dev["path"]) from None
    finally:
        os.close(parent_fd)


def _is_directory(parent_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_non_dir(parent_fd: int, name: str, path: str) -> None:
    try:
        os.unlink(name, dir_fd=parent_fd)
    except OSError as exc:
        raise SysCallError("unlink", exc.errno, path) from None


def _bind_host_node(root_fd: int, path: str) -> None:
    """Bind the host's node at `path` onto an empty file at the same path in the rootfs."""
    try:
        src_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise SysCallError("open", exc.errno, f"host {path}") from None
    try:
        dst_fd = create_file_in_root(root_fd, path)
        try:
            _sys.mount(fd_path(src_fd), fd_path(dst_fd), None, _sys.MS_BIND)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def create_symlinks(root_fd: int, *, with_kcore: bool) -> None:
    """/dev/fd, stdin, stdout, stderr (and /dev/core when the kernel has /proc/kcore)."""
    links = list(DEV_SYMLINKS)
    if with_kcore:
        links.append(("/proc/kcore", "/dev/core"))
    for target, path in links:
        _symlink_in_root(root_fd, target, path, replace=False)


def setup_ptmx(root_fd: int) -> None:
    """/dev/ptmx -> pts/ptmx, so the container's own devpts instance hands out ptys."""
    _symlink_in_root(root_fd, "pts/ptmx", "/dev/ptmx", replace=True)


def _symlink_in_root(root_fd: int, target: str, path: str, *, replace: bool) -> None:
    parent, name = os.path.split(path)
    parent_fd = mkdir_all_in_root(root_fd, parent)
    try:
        if replace:
            try:
                os.unlink(name, dir_fd=parent_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SysCallError("unlink", exc.errno, path) from None
        try:
            os.symlink(target, name, dir_fd=parent_fd)
        except FileExistsError:
            pass  # runc keeps an existing entry
        except OSError as exc:
            raise SysCallError("symlink", exc.errno, path) from None
    finally:
        os.close(parent_fd)


def mount_console(root_fd: int, console_path: str) -> None:
    """Bind the pty slave `console_path` onto /dev/console inside the rootfs.

    Both ends are checked on the very objects that get mounted (CVE-2025-52565): the
    source must be a pty slave, and /dev/console must be a plain file or char device
    of our own, never a symlink into /proc or the host."""
    try:
        src_fd = os.open(console_path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise SysCallError("open", exc.errno, f"console {console_path}") from None
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) not in _PTY_SLAVE_MAJORS:
            raise SysCallError("open", errno.ENOTTY, f"console {console_path} is not a pty slave")
        dst_fd = create_file_in_root(root_fd, "/dev/console", 0o600)
        try:
            dst = os.fstat(dst_fd)
            if not (stat.S_ISREG(dst.st_mode) or stat.S_ISCHR(dst.st_mode)):
                raise SysCallError("mount", errno.EINVAL, "/dev/console is not a file")
            _sys.mount(fd_path(src_fd), fd_path(dst_fd), None, _sys.MS_BIND)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def bind_console(slave_path: str) -> None:
    """After pivot_root: bind the pty slave onto the container's /dev/console, with the
    same checks as :func:`mount_console` (a /dev/console symlink planted by the image,
    e.g. to /proc/sys/kernel/core_pattern, is refused rather than followed)."""
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mount_console(root_fd, slave_path)
    finally:
        os.close(root_fd)


def is_dev_null(fd: int) -> bool:
    """True if fd is the real /dev/null (char 1:3), not a look-alike (CVE-2025-31133)."""
    st = os.fstat(fd)
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def reopen_dev_null() -> None:
    """After pivot_root: stdio fds that point at the host's /dev/null are re-pointed at
    the container's, so nothing keeps a host file open."""
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not is_dev_null(fd):
            return
        null_rdev = os.fstat(fd).st_rdev
        for std in (0, 1, 2):
            try:
                st = os.fstat(std)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == null_rdev:
                os.dup2(fd, std, inheritable=True)
    finally:
        os.close(fd)


__all__ = ["DEFAULT_DEVICES", "parse_devices", "create_devices", "default_devices",
           "create_symlinks", "setup_ptmx", "mount_console", "bind_console", "is_dev_null", "reopen_dev_null"]
