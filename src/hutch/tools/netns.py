"""`hutch netns`: iproute2's ``ip netns``, on the same files so both tools agree.

A named network namespace is a bind mount of its nsfs file on /run/netns/NAME.
Like iproute2, /run/netns is made a mount point (bound on itself) with shared
propagation, so that a namespace deleted here is unmounted in every mount
namespace that inherited the mount, and ``ip netns`` sees ours and vice versa.
``exec`` does what ``ip netns exec`` does: join the netns, a private mount
namespace in which /sys shows that netns and /etc/netns/NAME/* covers /etc/*.
"""

from __future__ import annotations

import errno
import os

from hutch.errors import ConfigError, HutchError, NotFoundError, StateError, SysCallError

NETNS_RUN_DIR = "/run/netns"
NETNS_ETC_DIR = "/etc/netns"


def check_name(name: str) -> str:
    """iproute2's rule: not empty, no '/', not '.' or '..', shorter than NAME_MAX."""
    if not name or "/" in name or name in (".", "..") or len(name.encode()) >= 255:
        raise ConfigError(f"invalid network namespace name {name!r}", where="netns name")
    return name


def netns_path(name: str, run_dir: str = NETNS_RUN_DIR) -> str:
    return os.path.join(run_dir, check_name(name))


def _is_mount_point(path: str) -> bool:
    """True if path is a mount point in our mount namespace (mountinfo, not st_dev:
    a bind mount of a directory on itself keeps the device)."""
    from hutch.syscall.proc import read_mountinfo
    return any(m.mount_point == path for m in read_mountinfo())


def prepare_run_dir(run_dir: str = NETNS_RUN_DIR) -> None:
    """mkdir run_dir and make it a shared mount point, as ``ip netns add`` does."""
    from hutch.syscall import MS_BIND, MS_REC, MS_SHARED, mount
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    made_mount = False
    while True:
        try:
            mount("", run_dir, "none", MS_SHARED | MS_REC)
            return
        except SysCallError as err:
            # EINVAL: not a mount point yet.  Upgrade it once, then retry.
            if err.errno != errno.EINVAL or made_mount:
                raise
        mount(run_dir, run_dir, "none", MS_BIND | MS_REC)
        made_mount = True


def add(name: str, pid: int | None = None, run_dir: str = NETNS_RUN_DIR) -> int:
    """Create netns NAME (a new one, or process pid's for attach); returns its inode.

    All or nothing: if the namespace cannot be made or mounted, the file is
    removed again."""
    from hutch.syscall import CLONE_NEWNET, MS_BIND, mount, setns, unshare
    path = netns_path(name, run_dir)
    if pid is not None:
        from hutch.ns.info import check_pid
        check_pid(pid)
    prepare_run_dir(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    except FileExistsError:
        raise StateError(f"network namespace {name} already exists", where=path) from None
    except OSError as err:
        raise SysCallError("create", err.errno, path) from None
    os.close(fd)
    try:
        if pid is not None:
            mount(f"/proc/{pid}/ns/net", path, "none", MS_BIND)
        else:
            # unshare then come back: the new netns lives on through the bind mount.
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                unshare(CLONE_NEWNET)
                try:
                    mount("/proc/thread-self/ns/net", path, "none", MS_BIND)
                finally:
                    setns(home, CLONE_NEWNET, detail="back to our network namespace")
            finally:
                os.close(home)
    except BaseException:
        _remove_file(path)
        raise
    return os.stat(path).st_ino


def _remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def delete(name: str, run_dir: str = NETNS_RUN_DIR) -> None:
    """Unmount (lazily, as ip does) and remove /run/netns/NAME."""
    from hutch.syscall import MNT_DETACH, umount2
    path = netns_path(name, run_dir)
    if not os.path.lexists(path):
        raise NotFoundError(f"network namespace {name} does not exist", where=path)
    try:
        umount2(path, MNT_DETACH)
    except SysCallError as err:
        if err.errno != errno.EINVAL:        # EINVAL: not mounted, just a stale file
            raise
    try:
        os.unlink(path)
    except OSError as err:
        raise SysCallError("unlink", err.errno, path) from None


def names(run_dir: str = NETNS_RUN_DIR) -> list[str]:
    """Entries of run_dir in directory order (ip netns list's order)."""
    try:
        return [n for n in os.listdir(run_dir) if n not in (".", "..")]
    except FileNotFoundError:
        return []


def list_netns(run_dir: str = NETNS_RUN_DIR) -> list[tuple[str, int | None]]:
    """(name, nsid) for each named netns; nsid None when none is assigned."""
    from hutch.ns.nsid import NsidClient
    out = []
    with NsidClient() as client:
        for name in names(run_dir):
            nsid = None
            try:
                fd = os.open(os.path.join(run_dir, name), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1
            if fd >= 0:
                try:
                    nsid = client.get(fd)
                finally:
                    os.close(fd)
            out.append((name, nsid if nsid is not None and nsid >= 0 else None))
    return out


def format_list(entries: list[tuple[str, int | None]]) -> str:
    """ip netns list's text: NAME, or NAME (id: N)."""
    return "".join(f"{name} (id: {nsid})\n" if nsid is not None else f"{name}\n"
                   for name, nsid in entries)


def set_id(name: str, nsid: str, run_dir: str = NETNS_RUN_DIR) -> None:
    """ip netns set NAME NSID: NSID a number >= 0, or "auto" (the kernel picks)."""
    from hutch.ns.nsid import NsidClient
    if nsid == "auto":
        value = -1
    else:
        try:
            value = int(nsid, 10)
        except ValueError:
            raise ConfigError(f"invalid nsid {nsid!r}: a number or \"auto\"", where="nsid") from None
        if value < 0:
            raise ConfigError(f"invalid nsid {nsid!r}: a number or \"auto\"", where="nsid")
    path = _existing(name, run_dir)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with NsidClient() as client:
            try:
                client.set(fd, value)
            except SysCallError as err:
                if err.errno == errno.EEXIST:
                    raise StateError(f"network namespace {name} already has an id, or id "
                                     f"{nsid} is taken", where=name) from None
                raise
    finally:
        os.close(fd)


def _existing(name: str, run_dir: str) -> str:
    path = netns_path(name, run_dir)
    if not os.path.exists(path):
        raise NotFoundError(f"network namespace {name} does not exist", where=path)
    return path


def identify(pid: int | None = None, run_dir: str = NETNS_RUN_DIR) -> list[str]:
    """Names under run_dir that are process pid's network namespace."""
    if pid is not None:
        from hutch.ns.info import check_pid
        check_pid(pid)
    try:
        target = os.stat(f"/proc/{pid or 'self'}/ns/net")
    except OSError as err:
        raise SysCallError("stat", err.errno, f"/proc/{pid}/ns/net") from None
    out = []
    for name in names(run_dir):
        try:
            st = os.stat(os.path.join(run_dir, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            out.append(name)
    return out


def pids(name: str, run_dir: str = NETNS_RUN_DIR) -> list[int]:
    """Processes in netns NAME, in /proc order (as ip netns pids prints them)."""
    st = os.stat(_existing(name, run_dir))
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pst = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
            out.append(int(entry))
    return out


def switch(name: str, run_dir: str = NETNS_RUN_DIR, etc_dir: str = NETNS_ETC_DIR) -> None:
    """ip's netns_switch: join netns NAME in a new mount namespace of our own where
    /sys describes it and /etc/netns/NAME/* is bound over /etc/*."""
    import sys as _sys
    from hutch.syscall import (CLONE_NEWNET, CLONE_NEWNS, MNT_DETACH, MS_BIND, MS_RDONLY, MS_REC,
                           MS_SLAVE, mount, setns, umount2, unshare)
    path = _existing(name, run_dir)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET, detail=f"network namespace {name}")
    finally:
        os.close(fd)
    unshare(CLONE_NEWNS)
    # Our mounts must not propagate back to the host.
    mount("", "/", "none", MS_SLAVE | MS_REC)
    flags = 0
    try:
        umount2("/sys", MNT_DETACH)
    except SysCallError:
        # Could not unmount: overlay it; a read-only sysfs cannot be shadowed read-write.
        if os.statvfs("/sys").f_flag & os.ST_RDONLY:
            flags = MS_RDONLY
    mount(name, "/sys", "sysfs", flags)
    etc_source = os.path.join(etc_dir, name)
    try:
        entries = os.listdir(etc_source)
    except OSError:
        entries = []
    for entry in entries:
        source, target = os.path.join(etc_source, entry), os.path.join("/etc", entry)
        try:
            mount(source, target, "none", MS_BIND)
        except HutchError as err:
            print(f"hutch: bind {source} -> {target} failed: {err}", file=_sys.stderr)


def exec_in(name: str, command: list[str], run_dir: str = NETNS_RUN_DIR) -> int:
    """ip netns exec NAME CMD: switch, then exec CMD (no fork, like ip)."""
    from hutch.tools.nsenter import exec_command
    if not command:
        raise ConfigError("no command given", where="netns exec")
    switch(name, run_dir)
    return exec_command(command)
