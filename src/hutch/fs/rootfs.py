"""Build the container's filesystem view and jail the process in it.

Called by the launcher in the container's first process, already in its own mount
namespace (and user/pid/... namespaces as the spec asks), as root there:

    validate_fs(spec, bundle)          # before forking: bad input fails early, nothing made
    setup_rootfs(spec, bundle, in_userns=..., console_path=...)   # mounts, /dev, pivot_root
    ... hooks ...
    finish_rootfs(spec)                # process.cwd, sysctl, readonly & masked paths, read-only root

or, to run something between mounting and pivot_root, ``prepare_rootfs`` then
``enter_rootfs``.  Everything finish_rootfs needs is imported at module load: after
pivot_root the host's Python files are out of reach.
"""

from __future__ import annotations

import errno
import os
import stat

from hutch import syscall as _sys
from hutch.errors import ConfigError, HutchError, SysCallError
from hutch.fs import devices as _devices
from hutch.fs.mounts import (
    DEFAULT_MOUNT_FLAGS, MountContext, idmap_of, mount_entry, mount_flags_of, remount,
)
from hutch.fs.options import parse_options, propagation_flag
from hutch.fs.resolve import IN_ROOT, clean, fd_path, mkdir_all_in_root, open_root
from hutch.syscall import mountapi
from hutch.syscall.constants import (
    MNT_DETACH, MS_BIND, MS_MOVE, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID,
    MS_PRIVATE, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SLAVE,
)
from hutch.syscall.proc import read_mountinfo

HOST_ROOT = "hutch:host"
HOST_ROOT_PLACEHOLDER = "/run/hutch/.hostroot"
# Host directories the built-in root shows read-only (when present).
HOST_ROOT_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Fresh, private, writable directories of the built-in root: path -> tmpfs mode.
HOST_ROOT_TMPFS = {"/tmp": 0o1777, "/run": 0o755, "/var/tmp": 0o1777}
HOST_ROOT_EMPTY_DIRS = ("/proc", "/dev", "/sys", "/root", "/home", "/var", "/mnt")

# linux.sysctl keys namespaced by IPC (runc's list; plus the fs.mqueue. prefix).
IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

# Mount flags that stay as they are when / is remounted read-only.
_KEEP_ON_REMOUNT = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME


# --- the spec, read and checked -------------------------------------------------

def _namespaces(spec: dict) -> set[str]:
    return {ns.get("type") for ns in (spec.get("linux") or {}).get("namespaces") or []
            if isinstance(ns, dict)}


def rootfs_path(spec: dict, bundle: str) -> str:
    """root.path as a host path (relative paths are relative to the bundle)."""
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise ConfigError("is required", where="root.path")
    path = root["path"]
    if path == HOST_ROOT:
        return HOST_ROOT
    full = os.path.join(bundle, path) if not path.startswith("/") else path
    try:
        st = os.stat(full)
    except PermissionError:
        raise ConfigError(f"rootfs {full} is not reachable by the container's user ids "
                          "(permission denied on a parent directory)", where="root.path") from None
    except OSError:
        raise ConfigError(f"rootfs {full} does not exist", where="root.path") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"rootfs {full} is not a directory", where="root.path")
    return os.path.realpath(full)


def validate_fs(spec: dict, bundle: str) -> None:
    """Check every filesystem field of the spec without touching anything, so bad input
    fails before a process or mount exists."""
    rootfs_path(spec, bundle)
    mounts = spec.get("mounts") or []
    if not isinstance(mounts, list):
        raise ConfigError("must be a list", where="mounts")
    for i, entry in enumerate(mounts):
        where = f"mounts[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError("must be an object", where=where)
        if not isinstance(entry.get("destination"), str) or not entry["destination"]:
            raise ConfigError("is required", where=f"{where}.destination")
        opts = parse_options(entry.get("options"), where, bind_type=entry.get("type") == "bind")
        if opts.is_bind or entry.get("type") == "bind":
            idmap_of(entry, opts, "user" in _namespaces(spec), where)
        elif {"idmap", "ridmap"} & opts.extensions or entry.get("uidMappings"):
            raise ConfigError("idmapped mounts are supported for bind mounts only",
                              where=f"{where}.options")
    linux = spec.get("linux") or {}
    if linux.get("rootfsPropagation") is not None:
        propagation_flag(linux["rootfsPropagation"], "linux.rootfsPropagation")
    _devices.parse_devices(spec)
    for key in ("maskedPaths", "readonlyPaths"):
        paths = linux.get(key) or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise ConfigError("must be a list of absolute paths", where=f"linux.{key}")
    check_sysctls(spec)


def check_sysctls(spec: dict) -> dict[str, str]:
    """linux.sysctl: refuse keys that would change the host (runc's rules)."""
    sysctl = (spec.get("linux") or {}).get("sysctl") or {}
    if not isinstance(sysctl, dict):
        raise ConfigError("must be an object", where="linux.sysctl")
    namespaces = _namespaces(spec)
    for key, value in sysctl.items():
        where = f"linux.sysctl.{key}"
        if not isinstance(value, str):
            raise ConfigError(f"value must be a string, got {value!r}", where=where)
        if not key or "/" in key or ".." in key or key.startswith(".") or "\0" in key:
            raise ConfigError("invalid sysctl name", where=where)
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in namespaces:
                raise ConfigError("not allowed in the host's IPC namespace", where=where)
        elif key.startswith("net."):
            if "network" not in namespaces:
                raise ConfigError("not allowed in the host's network namespace", where=where)
        elif key == "kernel.domainname" and "uts" in namespaces:
            pass
        elif key == "kernel.hostname" and "uts" in namespaces:
            raise ConfigError("not allowed; use hostname instead", where=where)
        else:
            raise ConfigError("not in a separate kernel namespace", where=where)
    return sysctl


def needs_dev_setup(spec: dict) -> bool:
    """runc creates /dev nodes unless /dev itself is a bind mount from the spec."""
    for entry in spec.get("mounts") or []:
        if clean(entry.get("destination", "")) == "/dev":
            opts = entry.get("options") or []
            if entry.get("type") == "bind" or "bind" in opts or "rbind" in opts:
                return False
    return True


# --- step 1: mounts and devices ---------------------------------------------------

def setup_rootfs(spec: dict, bundle: str, *, in_userns: bool, console_path: str | None,
                 no_pivot: bool = False) -> str:
    """Mount everything, create /dev, then pivot_root (or MS_MOVE+chroot) into the rootfs.
    Returns the host path the rootfs had."""
    rootfs = prepare_rootfs(spec, bundle, in_userns=in_userns, console_path=console_path)
    enter_rootfs(spec, rootfs, no_pivot=no_pivot)
    return rootfs


def prepare_rootfs(spec: dict, bundle: str, *, in_userns: bool, console_path: str | None,
                   before_cgroup=None, source_fds: dict | None = None,
                   tree_fds: dict | None = None) -> str:
    """Everything before pivot_root: propagation, the rootfs bind, spec mounts, /dev.

    before_cgroup(), when given, runs once before the first cgroup mount (see MountContext);
    source_fds/tree_fds are bind sources the runtime opened (hutch.fs.sources), all
    closed on return."""
    source_fds = {} if source_fds is None else source_fds
    tree_fds = {} if tree_fds is None else tree_fds
    try:
        return _prepare_rootfs(spec, bundle, in_userns, console_path, before_cgroup,
                               source_fds, tree_fds)
    finally:
        for fds in (source_fds, tree_fds):
            for fd in fds.values():
                if fd >= 0:
                    os.close(fd)
            fds.clear()


def _prepare_rootfs(spec: dict, bundle: str, in_userns: bool, console_path: str | None,
                    before_cgroup, source_fds: dict, tree_fds: dict) -> str:
    root = rootfs_path(spec, bundle)
    linux = spec.get("linux") or {}
    prop = linux.get("rootfsPropagation")
    flag = propagation_flag(prop, "linux.rootfsPropagation") if prop else MS_SLAVE | MS_REC
    try:
        # Stop our mounts from propagating back to the host (rslave by default, as runc).
        _sys.mount(None, "/", None, flag)
    except SysCallError as exc:
        exc.where = "linux.rootfsPropagation"
        raise
    if root == HOST_ROOT:
        spec_dests = {clean(m.get("destination", "")) for m in spec.get("mounts") or []
                      if isinstance(m, dict) and isinstance(m.get("destination"), str)}
        root = build_host_root(in_userns=in_userns, skip=spec_dests)
    _make_parent_mount_private(root)
    try:
        _sys.mount(root, root, None, MS_BIND | MS_REC)
    except SysCallError as exc:
        exc.where = "root.path"
        raise
    root_fd = open_root(root)
    try:
        ns = _namespaces(spec)
        ctx = MountContext(rootfs=root, root_fd=root_fd, in_userns=in_userns,
                           has_netns="network" in ns, has_cgroupns="cgroup" in ns,
                           before_cgroup=before_cgroup, source_fds=source_fds, tree_fds=tree_fds)
        for i, entry in enumerate(spec.get("mounts") or []):
            mount_entry(ctx, i, entry)
        if needs_dev_setup(spec):
            _setup_dev(spec, root_fd, in_userns=in_userns)
        if console_path:
            try:
                _devices.mount_console(root_fd, console_path)
            except HutchError as exc:
                exc.where = exc.where or "process.terminal"
                raise
    finally:
        os.close(root_fd)
    return root


def _setup_dev(spec: dict, root_fd: int, *, in_userns: bool) -> None:
    devices = _devices.default_devices() + _devices.parse_devices(spec)
    _devices.create_devices(root_fd, devices, in_userns=in_userns)
    try:
        _devices.setup_ptmx(root_fd)
        _devices.create_symlinks(root_fd, with_kcore=os.path.exists("/proc/kcore"))
    except HutchError as exc:
        exc.where = exc.where or "/dev"
        raise


def _make_parent_mount_private(root: str) -> None:
    """pivot_root refuses a shared parent mount; make the mount holding root private."""
    best = None
    for m in read_mountinfo():
        mp = m.mount_point
        if root == mp or root.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    if best is not None and any(o.startswith("shared:") for o in best.optional):
        _sys.mount(None, best.mount_point, None, MS_PRIVATE)


def check_joinable_mount_namespace(path: str, where: str = "linux.namespaces") -> None:
    """A mount namespace given by path is joined and the rootfs set up inside it (its
    root is pivoted, as runc does); never the runtime's own nor init's (pid 1's, when
    the runtime itself runs in a child mount namespace): either would pivot the host."""
    try:
        joined, own = os.stat(path), os.stat("/proc/self/ns/mnt")
    except OSError as exc:
        raise ConfigError(f"cannot open namespace {path}: {exc.strerror}", where=where) from None
    hosts = [(own.st_dev, own.st_ino)]
    try:
        init = os.stat("/proc/1/ns/mnt")
        hosts.append((init.st_dev, init.st_ino))
    except OSError:
        pass      # pid 1 of another pid namespace, or hidden: only our own is known
    if (joined.st_dev, joined.st_ino) in hosts:
        raise ConfigError(f"{path} is the runtime's own or init's mount namespace: setting the "
                          "rootfs up there would replace the host's root; use a new mount "
                          "namespace or another one", where=where)


def ensure_host_root_placeholder() -> str:
    """Create the built-in root's placeholder directory on the host.  Call it before
    entering a user namespace whose root cannot write the host's /run."""
    os.makedirs(HOST_ROOT_PLACEHOLDER, mode=0o755, exist_ok=True)
    return HOST_ROOT_PLACEHOLDER


def build_host_root(*, in_userns: bool, skip: set[str] = frozenset()) -> str:
    """The built-in root: a fresh tmpfs holding read-only binds of the host's system
    directories, private /tmp, /run, /var/tmp and empty mount points.  Mounted on a
    placeholder directory that only this (private) mount namespace sees.  Paths in
    `skip` (the spec's own mount destinations) are left as empty directories."""
    placeholder = HOST_ROOT_PLACEHOLDER
    try:
        os.makedirs(placeholder, mode=0o755, exist_ok=True)
        placeholder = os.path.realpath(placeholder)
    except OSError as exc:
        err = SysCallError("mkdir", exc.errno, f"{placeholder} (create it before entering a user namespace)")
        err.where = "root.path"
        raise err from None
    _sys.mount("tmpfs", placeholder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for path in HOST_ROOT_DIRS:
        if path in skip and os.path.isdir(path) and not os.path.islink(path):
            os.makedirs(placeholder + path, mode=0o755, exist_ok=True)
        else:
            _add_host_dir(placeholder, path)
    for path in HOST_ROOT_EMPTY_DIRS:
        os.makedirs(placeholder + path, mode=0o755, exist_ok=True)
    for path, mode in HOST_ROOT_TMPFS.items():
        target = placeholder + path
        os.makedirs(target, mode=0o755, exist_ok=True)
        if path in skip:
            continue
        _sys.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o}")
    return placeholder


def _add_host_dir(root: str, path: str) -> None:
    if os.path.islink(path):
        os.symlink(os.readlink(path), root + path)
        return
    if not os.path.isdir(path):
        return
    target = root + path
    os.makedirs(target, mode=0o755, exist_ok=True)
    _sys.mount(path, target, None, MS_BIND | MS_REC)
    fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
    try:
        _make_readonly(fd, lambda: MS_RDONLY, f"{path} (built-in root)")
    finally:
        os.close(fd)


def _make_readonly(fd: int, remount_flags, label: str) -> None:
    """The mount at fd read-only: mount_setattr, or where the kernel lacks it a remount
    with remount_flags() (computed only then)."""
    try:
        mountapi.mount_setattr(fd, "", mountapi.MOUNT_ATTR_RDONLY)
    except SysCallError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        remount(fd, remount_flags(), label)


# --- step 2: into the rootfs ------------------------------------------------------

def enter_rootfs(spec: dict, rootfs: str, *, no_pivot: bool = False) -> None:
    """pivot_root into rootfs (or MS_MOVE + chroot), then apply rootfsPropagation."""
    try:
        if no_pivot:
            _move_root(rootfs)
        else:
            pivot_root(rootfs)
    except SysCallError as exc:
        exc.where = exc.where or "root.path"
        raise
    prop = (spec.get("linux") or {}).get("rootfsPropagation")
    if prop:
        flag = propagation_flag(prop, "linux.rootfsPropagation")
        # Done after the switch so it applies to the container's "/", not the host's.
        if not flag & MS_PRIVATE:
            _sys.mount(None, "/", None, flag)
    if needs_dev_setup(spec):
        _devices.reopen_dev_null()


def pivot_root(rootfs: str) -> None:
    """pivot_root(".", ".") then lazily detach the old root stacked underneath, after
    making it rslave so the unmount does not propagate to the host."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        _sys.pivot_root(".", ".")
        os.fchdir(old_root)
        _sys.mount(None, ".", None, MS_SLAVE | MS_REC)
        _sys.umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def _move_root(rootfs: str) -> None:
    """--no-pivot: hide every host mount outside the rootfs, MS_MOVE it to / and chroot."""
    base = rootfs.rstrip("/")
    mounts = sorted((m.mount_point for m in read_mountinfo()), key=len, reverse=True)
    for mp in mounts:
        if mp == "/" or mp == base or mp.startswith(base + "/") or base.startswith(mp.rstrip("/") + "/"):
            continue
        try:
            _sys.mount(None, mp, None, MS_SLAVE | MS_REC)
            _sys.umount2(mp, MNT_DETACH)
        except SysCallError:
            pass  # locked in a user namespace or already gone with a parent: not reachable after chroot
    os.chdir(rootfs)
    _sys.mount(rootfs, "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/")


# --- step 3: after hooks, before exec --------------------------------------------

def finish_rootfs(spec: dict) -> None:
    """Inside the pivoted root: process.cwd, sysctls, readonlyPaths, maskedPaths, read-only
    /dev and /."""
    linux = spec.get("linux") or {}
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _with_where("process.cwd", make_cwd, root_fd, (spec.get("process") or {}).get("cwd") or "/")
        _remount_dev_readonly(spec)
        for key, value in check_sysctls(spec).items():
            write_sysctl(root_fd, key, value)
        for i, path in enumerate(linux.get("readonlyPaths") or []):
            _with_where(f"linux.readonlyPaths[{i}]", readonly_path, root_fd, path)
        for i, path in enumerate(linux.get("maskedPaths") or []):
            _with_where(f"linux.maskedPaths[{i}]", mask_path, root_fd, path)
        if (spec.get("root") or {}).get("readonly"):
            _with_where("root.readonly", set_root_readonly)
    finally:
        os.close(root_fd)
    os.umask(0o022)


def make_cwd(root_fd: int, cwd: str) -> None:
    """Create a missing process.cwd as runc does: each missing directory 0755 (less the
    umask), owned by the container's root, before the root is made read-only.  Every
    component is resolved inside the root (symlinks cannot lead the mkdir out of it)."""
    try:
        os.close(mkdir_all_in_root(root_fd, cwd, 0o755))
    except SysCallError as exc:
        raise HutchError(f"cannot create working directory {cwd}: {os.strerror(exc.errno)}",
                         where="process.cwd") from None


def _with_where(where: str, func, *args) -> None:
    try:
        func(*args)
    except HutchError as exc:
        exc.where = exc.where or where
        raise


def _remount_dev_readonly(spec: dict) -> None:
    for i, entry in enumerate(spec.get("mounts") or []):
        if clean(entry.get("destination", "")) == "/dev":
            if "ro" in (entry.get("options") or []):
                _with_where(f"mounts[{i}]", _remount_path_readonly, "/dev")
            return


def _remount_path_readonly(path: str) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        remount(fd, MS_RDONLY | (mount_flags_of(fd) & _KEEP_ON_REMOUNT), path)
    finally:
        os.close(fd)


def _open_target(root_fd: int, path: str) -> int | None:
    """O_PATH fd of path inside the container root, or None if it does not exist."""
    try:
        return _sys.openat2(root_fd, clean(path).lstrip("/") or ".", os.O_PATH, 0, IN_ROOT)
    except SysCallError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _mount_target(fd: int, path: str) -> str:
    """Name of fd's object for mount(2): the fd's magic link when /proc is there."""
    return fd_path(fd) if os.path.isdir("/proc/self/fd") else path


def mask_path(root_fd: int, path: str) -> None:
    """Hide path: /dev/null bound over a file, an empty read-only tmpfs over a directory.
    The /dev/null used is verified to be char 1:3 on the fd that gets mounted, so a
    container that swapped /dev/null for a symlink or another file gains nothing
    (CVE-2025-31133)."""
    fd = _open_target(root_fd, path)
    if fd is None:
        return
    try:
        target = _mount_target(fd, path)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            _sys.mount("tmpfs", target, "tmpfs", MS_RDONLY, None)
            return
        null_fd = _sys.openat2(root_fd, "dev/null", os.O_PATH, 0,
                               _sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_SYMLINKS)
        try:
            if not _devices.is_dev_null(null_fd):
                raise SysCallError("mount", errno.EINVAL, "/dev/null is not the null device (char 1:3)")
            _sys.mount(_mount_target(null_fd, "/dev/null"), target, None, MS_BIND)
        finally:
            os.close(null_fd)
    finally:
        os.close(fd)


def readonly_path(root_fd: int, path: str) -> None:
    """Bind path onto itself and make it (recursively) read-only."""
    fd = _open_target(root_fd, path)
    if fd is None:
        return
    try:
        _sys.mount(_mount_target(fd, path), _mount_target(fd, path), None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    fd = _open_target(root_fd, path)
    try:
        _make_readonly(fd, lambda: MS_RDONLY | MS_REC | (mount_flags_of(fd) & _KEEP_ON_REMOUNT), path)
    finally:
        os.close(fd)


def set_root_readonly() -> None:
    """Remount / read-only, keeping nosuid/nodev/noexec/atime as they are (the kernel
    refuses to clear flags locked by a parent user namespace)."""
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | (mount_flags_of("/") & _KEEP_ON_REMOUNT)
    _sys.mount(None, "/", None, flags)


def write_sysctl(root_fd: int, key: str, value: str) -> None:
    """Write /proc/sys/<key with dots as slashes>, only through a real procfs file
    (a bind mount planted over /proc/sys cannot redirect the write; CVE-2025-52881)."""
    where = f"linux.sysctl.{key}"
    rel = "proc/sys/" + key.replace(".", "/")
    try:
        fd = _sys.openat2(root_fd, rel, os.O_WRONLY | os.O_NOFOLLOW, 0,
                          _sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_SYMLINKS)
    except SysCallError as exc:
        exc.where = where
        raise
    try:
        if mountapi.fstatfs_type(fd) != mountapi.PROC_SUPER_MAGIC:
            raise SysCallError("write", errno.EXDEV, f"/{rel} is not on procfs")
        os.write(fd, value.encode())
    except OSError as exc:
        if isinstance(exc, HutchError):
            exc.where = where
            raise
        err = SysCallError("write", exc.errno, f"/{rel}")
        err.where = where
        raise err from None
    finally:
        os.close(fd)


__all__ = ["HOST_ROOT", "ensure_host_root_placeholder", "validate_fs", "setup_rootfs", "prepare_rootfs", "enter_rootfs",
           "finish_rootfs", "build_host_root", "mask_path", "readonly_path", "set_root_readonly",
           "write_sysctl", "check_sysctls", "needs_dev_setup", "rootfs_path", "DEFAULT_MOUNT_FLAGS"]
