"""Mount one OCI ``mounts[]`` entry inside the rootfs, safely.

Every destination is resolved inside the rootfs by the kernel (openat2
RESOLVE_IN_ROOT), checked against runc's /proc rules on the *resolved* path, created
if missing, and mounted through ``/proc/self/fd/N`` of an O_PATH fd, so a symlink
swapped in between check and use cannot redirect the mount to the host
(CVE-2019-19921, CVE-2021-30465, CVE-2023-27561).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from hutch.record import dataclass

from hutch import syscall as _sys
from hutch.errors import ConfigError, HutchError, SysCallError
from hutch.fs.options import MountOptions, parse_options
from hutch.fs.resolve import (
    IN_ROOT, create_file_in_root, exists_in_root, fd_path, mkdir_all_in_root, open_in_root, real_path,
    resolve_in_root,
)
from hutch.syscall import mountapi
from hutch.syscall.proc import read_mountinfo
from hutch.syscall.constants import (
    MS_BIND, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC,
    MS_RELATIME, MS_REMOUNT, MS_STRICTATIME,
)

DEFAULT_MOUNT_FLAGS = MS_NOEXEC | MS_NOSUID | MS_NODEV

# Files under /proc a mount may cover: what lxcfs emulates (runc's checkProcMount list).
VALID_PROC_MOUNTS = (
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
)

# statvfs f_flag bits -> mount(2) flags (ST_RELATIME is 4096, which is MS_BIND's value).
_STATVFS_TO_MS = {
    os.ST_RDONLY: MS_RDONLY, os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
# Flags the kernel locks on mounts inherited into a user namespace.
LOCKED_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME


@dataclass
class MountContext:
    """What mounting needs to know about the container being built."""

    rootfs: str                 # host path of the rootfs (already a mount point)
    root_fd: int                # O_PATH fd of it
    in_userns: bool = False
    has_netns: bool = True
    has_cgroupns: bool = False
    rootfs_real: str = ""
    # Called once before the first cgroup mount: the launcher defers the container's
    # cgroup join (and its cgroup namespace) until then, so the slow first cgroup.procs
    # write runs in the parent while this process builds the rest of the rootfs.
    before_cgroup: object = None
    # Bind sources the runtime opened for us (hutch.fs.sources), by mount index: O_PATH
    # fds of plain binds (or -errno), detached idmapped trees.  Each is closed once used.
    source_fds: dict = None
    tree_fds: dict = None

    def __post_init__(self) -> None:
        if not self.rootfs_real:
            self.rootfs_real = real_path(self.root_fd)
        self.source_fds = {} if self.source_fds is None else self.source_fds
        self.tree_fds = {} if self.tree_fds is None else self.tree_fds


def mount_flags_of(fd_or_path: int | str) -> int:
    """The per-mount flags (ro, nosuid, nodev, noexec, atime) of the mount holding fd/path."""
    st = os.statvfs(fd_or_path)
    flags = 0
    for st_bit, ms_bit in _STATVFS_TO_MS.items():
        if st.f_flag & st_bit:
            flags |= ms_bit
    return flags


def in_root_path(ctx: MountContext, fd: int) -> str:
    """The container-visible path of an fd resolved inside the rootfs."""
    host = real_path(fd)
    base = ctx.rootfs_real.rstrip("/")
    if host == base:
        return "/"
    if not host.startswith(base + "/"):
        # Cannot happen with RESOLVE_IN_ROOT; refuse loudly if it ever does.
        raise SysCallError("openat2", errno.EXDEV, f"{host} escaped the rootfs")
    return host[len(base):]


def resolve_existing(ctx: MountContext, path: str) -> str:
    """Container path of `path` with symlinks (dangling ones too) resolved inside the
    rootfs; components that do not exist yet are kept as they are."""
    return resolve_in_root(ctx.root_fd, path)


def check_proc_mount(dest: str, fstype: str | None, source: str | None, where: str) -> None:
    """runc's checkProcMount on the resolved destination: /proc itself only for a procfs,
    nothing under /proc except the few files lxcfs emulates."""
    if dest != "/proc" and not dest.startswith("/proc/"):
        return
    if dest == "/proc":
        if fstype == "proc" or _source_is_proc(source):
            return
        raise ConfigError(f"{dest!r} cannot be mounted because it is not of type proc", where=where)
    if dest in VALID_PROC_MOUNTS:
        return
    raise ConfigError(f"{dest!r} cannot be mounted because it is inside /proc", where=where)


def _source_is_proc(source: str | None) -> bool:
    if not source or not source.startswith("/"):
        return False
    try:
        return mountapi.statfs_type(source) == mountapi.PROC_SUPER_MAGIC
    except SysCallError:
        return False


def _do_mount(source: str | None, fd: int, fstype: str | None, flags: int, data: str | None,
              label: str) -> None:
    """mount(2) onto the object behind fd; the error names `label`, not /proc/self/fd/N."""
    try:
        _sys.mount(source, fd_path(fd), fstype, flags, data)
    except SysCallError as exc:
        raise SysCallError("mount", exc.errno, label) from None


def remount(fd: int, flags: int, label: str, *, keep_locked: bool = True) -> None:
    """MS_REMOUNT|MS_BIND with `flags` (the kernel ignores per-mount flags on the first
    bind).  In a user namespace, flags locked by the parent (nosuid, nodev, noexec,
    ro, atime) must be kept: on EPERM retry with the mount's current locked flags."""
    try:
        _do_mount(None, fd, None, MS_REMOUNT | MS_BIND | flags, None, label)
    except SysCallError as exc:
        if exc.errno != errno.EPERM or not keep_locked:
            raise
        current = mount_flags_of(fd) & LOCKED_FLAGS
        if flags & (MS_NOATIME | MS_STRICTATIME | MS_RELATIME):
            current &= ~(MS_NOATIME | MS_RELATIME | MS_STRICTATIME)
        _do_mount(None, fd, None, MS_REMOUNT | MS_BIND | flags | current, None, label)


def apply_propagation(fd: int, opts: MountOptions, label: str) -> None:
    for flag in opts.propagation:
        _do_mount(None, fd, None, flag, None, f"propagation of {label}")


def apply_recursive_attrs(fd: int, opts: MountOptions, label: str) -> None:
    if opts.has_recursive_attrs:
        try:
            mountapi.mount_setattr(fd, "", opts.attr_set, opts.attr_clr)
        except SysCallError as exc:
            raise SysCallError("mount_setattr", exc.errno, label) from None


def mount_entry(ctx: MountContext, index: int, entry: dict) -> None:
    """Mount spec ``mounts[index]``; every failure names the entry."""
    where = f"mounts[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError("must be an object", where=where)
    dest = entry.get("destination")
    if not isinstance(dest, str) or not dest:
        raise ConfigError(f"destination must be a path, got {dest!r}", where=f"{where}.destination")
    fstype = entry.get("type") or None
    source = entry.get("source")
    if source is not None and not isinstance(source, str):
        raise ConfigError(f"must be a string, got {source!r}", where=f"{where}.source")
    if fstype is not None and not isinstance(fstype, str):
        raise ConfigError(f"must be a string, got {fstype!r}", where=f"{where}.type")
    opts = parse_options(entry.get("options"), where, bind_type=fstype == "bind")
    try:
        if opts.is_bind or fstype == "bind":
            mount_bind(ctx, dest, source, opts, where, _idmap_of(ctx, entry, opts, where),
                       src_fd=ctx.source_fds.pop(index, None), tree=ctx.tree_fds.pop(index, None))
        elif fstype == "cgroup":
            mount_cgroup(ctx, dest, opts, where)
        else:
            mount_fs(ctx, dest, fstype, source, opts, where)
    except HutchError as exc:
        if exc.where is None:
            exc.where = where
        raise
    except OSError as exc:  # an os.* call outside the wrapped ones: still name the mount
        err = SysCallError("mount", exc.errno or errno.EIO, dest)
        err.where = where
        raise err from None


def _idmap_of(ctx: MountContext, entry: dict, opts: MountOptions, where: str) -> tuple | None:
    return idmap_of(entry, opts, ctx.in_userns, where)


def idmap_of(entry: dict, opts: MountOptions, in_userns: bool, where: str) -> tuple | None:
    """(uid maps, gid maps) of an idmapped bind, or None for a plain one."""
    uid_maps, gid_maps = entry.get("uidMappings") or [], entry.get("gidMappings") or []
    if not (uid_maps or gid_maps or {"idmap", "ridmap"} & opts.extensions):
        return None
    if not (uid_maps and gid_maps):
        # runc and crun then take the container's own maps; hutch needs them on the mount.
        raise ConfigError("an idmapped mount needs uidMappings and gidMappings on the mount",
                          where=f"{where}.uidMappings")
    # In a user namespace the runtime makes the idmapped tree before the fork, in the
    # host's namespaces (hutch.fs.sources): the maps are the host's ids there too.
    return uid_maps, gid_maps


def _prepare_dest(ctx: MountContext, dest: str, fstype: str | None, source: str | None,
                  where: str, *, is_dir: bool) -> tuple[str, int, bool]:
    """Resolve, check and create the destination; return (container path, O_PATH fd,
    whether it existed before)."""
    resolved = resolve_existing(ctx, dest)
    if fstype in ("proc", "sysfs") and resolved != posixpath.normpath("/" + dest.lstrip("/")):
        # An image whose /proc is a symlink would get procfs somewhere the container can
        # later replace with fake files the runtime reads (CVE-2023-28642).
        raise ConfigError(f"{fstype} must not be mounted through a symlink ({dest} -> {resolved})",
                          where=f"{where}.destination")
    check_proc_mount(resolved, fstype, source, where)
    existed = exists_in_root(ctx.root_fd, resolved)
    fd = mkdir_all_in_root(ctx.root_fd, resolved) if is_dir else create_file_in_root(ctx.root_fd, resolved)
    # Re-check on the object we will really mount on: a racing symlink swap shows here.
    actual = in_root_path(ctx, fd)
    if actual != resolved:
        os.close(fd)
        raise SysCallError("mount", errno.ELOOP, f"{dest} moved while being prepared ({actual})")
    return resolved, fd, existed


def _reopen(ctx: MountContext, path: str) -> int:
    """A fresh fd of `path` after a mount covered it (the old fd sees the covered object)."""
    return open_in_root(ctx.root_fd, path, os.O_PATH, follow=False)


def mount_bind(ctx: MountContext, dest: str, source: str | None, opts: MountOptions, where: str,
               idmap: tuple | None = None, *, src_fd: int | None = None, tree: int | None = None) -> None:
    """A bind of `source`; src_fd (or -errno) / tree, when given, are the source the
    runtime opened on the host's side (hutch.fs.sources) and are closed here."""
    if not source:
        raise ConfigError("a bind mount needs a source", where=f"{where}.source")
    if idmap is not None:
        return mount_idmapped(ctx, dest, source, opts, where, *idmap, tree=tree)
    if src_fd is None:
        try:
            src_fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            src_fd = -exc.errno
    if src_fd < 0:
        raise SysCallError("open", -src_fd, f"bind source {source}")
    try:
        is_dir = stat.S_ISDIR(os.fstat(src_fd).st_mode)
        resolved, fd, _ = _prepare_dest(ctx, dest, "bind", source, where, is_dir=is_dir)
        label = f"{source} on {resolved}"
        try:
            _do_mount(fd_path(src_fd), fd, None, MS_BIND | (opts.flags & MS_REC), None, label)
        finally:
            os.close(fd)
    finally:
        os.close(src_fd)
    _finish_mount(ctx, resolved, opts, label, bind=True)


def mount_idmapped(ctx: MountContext, dest: str, source: str, opts: MountOptions, where: str,
                   uid_maps: list, gid_maps: list, *, tree: int | None = None) -> None:
    """A bind whose ids go through the mount's maps (see hutch.fs.idmapped); "ridmap"
    maps every mount of an rbind, "idmap" (or maps alone) the top one.  `tree`: the
    idmapped tree the runtime already made (in a user namespace, hutch.fs.sources)."""
    label = f"{source} on {dest} (idmapped)"
    if tree is None:
        tree = _idmapped_tree(source, opts, where, uid_maps, gid_maps, label)
    try:
        is_dir = stat.S_ISDIR(os.fstat(tree).st_mode)
        resolved, fd, _ = _prepare_dest(ctx, dest, "bind", source, where, is_dir=is_dir)
        try:
            mountapi.move_mount_fd(tree, fd, label)
        finally:
            os.close(fd)
    finally:
        os.close(tree)
    _finish_mount(ctx, resolved, opts, label, bind=True)


def _idmapped_tree(source: str, opts: MountOptions, where: str, uid_maps: list, gid_maps: list,
                   label: str) -> int:
    from hutch.fs.idmapped import idmap_userns
    tree = mountapi.open_tree(mountapi.AT_FDCWD, source, mountapi.OPEN_TREE_CLONE |
                              (mountapi.AT_RECURSIVE if opts.flags & MS_REC else 0),
                              f"bind source {source}")
    try:
        userns = idmap_userns(uid_maps, gid_maps, where)
        try:
            mountapi.set_idmap(tree, userns, "ridmap" in opts.extensions, label)
        finally:
            os.close(userns)
    except BaseException:
        os.close(tree)
        raise
    return tree


def _finish_mount(ctx: MountContext, resolved: str, opts: MountOptions, label: str, *, bind: bool) -> None:
    """Per-mount flags (binds need a remount), propagation, recursive attributes."""
    fd = _reopen(ctx, resolved)
    try:
        if bind and opts.flags & ~(MS_REC | MS_REMOUNT | MS_BIND):
            remount(fd, opts.flags & ~(MS_REC | MS_REMOUNT | MS_BIND), label)
        apply_propagation(fd, opts, label)
        apply_recursive_attrs(fd, opts, label)
    finally:
        os.close(fd)


def mount_fs(ctx: MountContext, dest: str, fstype: str | None, source: str | None,
             opts: MountOptions, where: str) -> None:
    """proc, sysfs, tmpfs, devpts, mqueue, cgroup2, anything else mount(2) knows."""
    if not fstype:
        raise ConfigError("type is required for a mount that is not a bind mount", where=f"{where}.type")
    resolved, fd, existed = _prepare_dest(ctx, dest, fstype, source, where, is_dir=True)
    label = f"{fstype} on {resolved}"
    data = opts.data
    copy_from = -1
    host_sys_bound = False
    try:
        if fstype == "tmpfs":
            if existed:
                # Keep the covered directory's mode unless the options say otherwise (runc).
                data = [f"mode={stat.S_IMODE(os.fstat(fd).st_mode):04o}", *data]
            if "tmpcopyup" in opts.extensions:
                copy_from = open_in_root(ctx.root_fd, resolved, os.O_RDONLY | os.O_DIRECTORY)
        flags = opts.flags & ~MS_REMOUNT
        try:
            _do_mount(source or fstype, fd, fstype, flags, ",".join(data) or None, label)
        except SysCallError as exc:
            if fstype == "sysfs" and exc.errno == errno.EPERM and ctx.in_userns:
                # No netns of our own in a user namespace: sysfs cannot be mounted,
                # bind the host's /sys instead, as runc does.
                _do_mount("/sys", fd, None, MS_BIND | MS_REC, None, label)
                host_sys_bound = True
            else:
                raise
        if copy_from >= 0:
            _copy_up(copy_from, ctx, resolved, label)
    finally:
        os.close(fd)
        if copy_from >= 0:
            os.close(copy_from)
    if host_sys_bound:
        _restrict_bound_tree(ctx, resolved, opts, label)
    _finish_mount(ctx, resolved, opts, label, bind=False)


def _restrict_bound_tree(ctx: MountContext, resolved: str, opts: MountOptions, label: str) -> None:
    """Apply a filesystem mount's flags to a host tree bound in its place, recursively."""
    attrs = 0
    for ms_flag, attr in ((MS_RDONLY, mountapi.MOUNT_ATTR_RDONLY), (MS_NOSUID, mountapi.MOUNT_ATTR_NOSUID),
                          (MS_NODEV, mountapi.MOUNT_ATTR_NODEV), (MS_NOEXEC, mountapi.MOUNT_ATTR_NOEXEC)):
        if opts.flags & ms_flag:
            attrs |= attr
    if not attrs:
        return
    fd = _reopen(ctx, resolved)
    try:
        mountapi.mount_setattr(fd, "", attrs, detail=label)
    finally:
        os.close(fd)


def _copy_up(old_fd: int, ctx: MountContext, resolved: str, label: str) -> None:
    """tmpcopyup: copy what the tmpfs now covers into it (old_fd still sees the old dir)."""
    new_fd = open_in_root(ctx.root_fd, resolved, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _copy_tree(old_fd, new_fd)
        st = os.fstat(old_fd)
        os.fchmod(new_fd, stat.S_IMODE(st.st_mode))
        os.fchown(new_fd, st.st_uid, st.st_gid)
    except OSError as exc:
        raise SysCallError("tmpcopyup", exc.errno or errno.EIO, label) from None
    finally:
        os.close(new_fd)


def _copy_tree(src_dir: int, dst_dir: int) -> None:
    """Copy a directory's entries (files, dirs, symlinks, owners, modes) fd to fd,
    never following a symlink.  Plain os calls: no module import in the container."""
    for entry in os.scandir(src_dir):
        name = entry.name
        st = entry.stat(follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_dir), name, dir_fd=dst_dir)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst_dir)
            sub_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
            sub_dst = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst_dir)
            try:
                _copy_tree(sub_src, sub_dst)
            finally:
                os.close(sub_src)
                os.close(sub_dst)
        elif stat.S_ISREG(st.st_mode):
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
            try:
                dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
                try:
                    while os.sendfile(dst, src, None, 1 << 20):
                        pass
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        else:
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_dir)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(name, mode, dir_fd=dst_dir)


# --- cgroups -------------------------------------------------------------------

_NON_CONTROLLER_OPTIONS = {"rw", "ro", "xattr", "noprefix", "cpuset_v2_mode", "clone_children",
                           "favordynmods", "nofavordynmods"}


def host_cgroup_v1_hierarchies(exclude_under: str | None = None) -> list[tuple[str, str, str]]:
    """(mount point, mount root, controllers data) of each v1 hierarchy on the host, once.

    Mounts under exclude_under (the rootfs) are skipped: an earlier mount of the spec may
    have brought copies of the host's hierarchies there (a `/sys` rbind), and a second
    mount of one hierarchy on the same directory is EBUSY, a bind of a copy hidden by the
    new tmpfs ENOENT."""
    out, seen = [], set()
    prefix = exclude_under.rstrip("/") + "/" if exclude_under else None
    for m in read_mountinfo():
        if m.fstype != "cgroup" or (prefix and (m.mount_point + "/").startswith(prefix)):
            continue
        controllers = ",".join(o for o in m.super_options.split(",")
                               if o and o not in _NON_CONTROLLER_OPTIONS
                               and not o.startswith("release_agent="))
        if controllers in seen:
            continue          # the same hierarchy bound elsewhere too
        seen.add(controllers)
        out.append((m.mount_point, m.root, controllers))
    return out


def own_cgroup_paths() -> dict[str, str]:
    """controller list (as in /proc/self/cgroup) -> this process's cgroup path."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def mount_cgroup(ctx: MountContext, dest: str, opts: MountOptions, where: str) -> None:
    """type "cgroup": cgroup2 on a unified host; on a v1/hybrid host a tmpfs holding one
    mount per v1 hierarchy (fresh in a cgroup namespace, else a bind of our own cgroup)."""
    if ctx.before_cgroup is not None:
        ready, ctx.before_cgroup = ctx.before_cgroup, None
        ready()
    if mountapi.statfs_type("/sys/fs/cgroup") == mountapi.CGROUP2_SUPER_MAGIC:
        _mount_cgroup2(ctx, dest, opts, where)
    else:
        _mount_cgroup_v1(ctx, dest, opts, where)


def _mount_cgroup2(ctx: MountContext, dest: str, opts: MountOptions, where: str) -> None:
    resolved, fd, _ = _prepare_dest(ctx, dest, "cgroup2", None, where, is_dir=True)
    label = f"cgroup2 on {resolved}"
    try:
        try:
            _do_mount("cgroup2", fd, "cgroup2", opts.flags & ~MS_REMOUNT, opts.data_string, label)
        except SysCallError as exc:
            if exc.errno not in (errno.EPERM, errno.EBUSY):
                raise
            # Without a cgroup namespace of our own the kernel refuses: bind the host's.
            _do_mount("/sys/fs/cgroup", fd, None, MS_BIND | MS_REC, None, label)
            bound = True
        else:
            bound = False
    finally:
        os.close(fd)
    if bound:
        _restrict_bound_tree(ctx, resolved, opts, label)
    _finish_mount(ctx, resolved, opts, label, bind=False)


def _mount_cgroup_v1(ctx: MountContext, dest: str, opts: MountOptions, where: str) -> None:
    readonly = opts.readonly
    tmpfs_opts = MountOptions(flags=DEFAULT_MOUNT_FLAGS, propagation=list(opts.propagation),
                              data=["mode=755"])
    root_path = resolve_existing(ctx, dest)
    mount_fs(ctx, dest, "tmpfs", "tmpfs", tmpfs_opts, where)
    own = own_cgroup_paths()
    merged = []
    for mount_point, mount_root, controllers in host_cgroup_v1_hierarchies(ctx.rootfs):
        name = posixpath.basename(mount_point)
        sub = posixpath.join(root_path, name)
        if "," in name:
            merged.append(name)
        flags = opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if ctx.has_cgroupns and _mount_cgroup_hierarchy(ctx, sub, controllers, flags, where):
            continue
        own_path = own.get(controllers) or "/"
        rel = posixpath.relpath(own_path, mount_root) if own_path.startswith(mount_root) else "."
        source = posixpath.normpath(posixpath.join(mount_point, rel))
        bind_opts = MountOptions(flags=MS_BIND | MS_REC | flags, propagation=list(opts.propagation))
        mount_bind(ctx, sub, source, bind_opts, where)
    for name in merged:
        for ctrl in name.split(","):
            _symlink(ctx, posixpath.join(root_path, ctrl), name)
    if readonly:
        fd = _reopen(ctx, root_path)
        try:
            remount(fd, DEFAULT_MOUNT_FLAGS | MS_RDONLY, f"tmpfs on {root_path}")
        finally:
            os.close(fd)


def _mount_cgroup_hierarchy(ctx: MountContext, sub: str, controllers: str, flags: int,
                            where: str) -> bool:
    """Mount a fresh v1 hierarchy (we are in a cgroup namespace, so its root is our own
    cgroup).  False when the kernel refuses (a user namespace): the caller binds instead."""
    fd = mkdir_all_in_root(ctx.root_fd, sub)
    try:
        source = "systemd" if controllers == "name=systemd" else "cgroup"
        try:
            _do_mount(source, fd, "cgroup", DEFAULT_MOUNT_FLAGS | flags, controllers, f"cgroup on {sub}")
        except SysCallError as exc:
            if exc.errno in (errno.EPERM, errno.EBUSY) and ctx.in_userns:
                return False
            raise
        return True
    finally:
        os.close(fd)


def _symlink(ctx: MountContext, path: str, target: str) -> None:
    parent, name = posixpath.split(path)
    parent_fd = mkdir_all_in_root(ctx.root_fd, parent)
    try:
        os.symlink(target, name, dir_fd=parent_fd)
    except FileExistsError:
        pass
    finally:
        os.close(parent_fd)


__all__ = ["MountContext", "mount_entry", "remount", "mount_flags_of", "check_proc_mount",
           "resolve_existing", "in_root_path", "DEFAULT_MOUNT_FLAGS", "IN_ROOT"]
