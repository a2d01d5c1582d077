"""Find every namespace on the system and describe it (what lsns shows, and more).

A namespace lives as long as something refers to it.  We find it through each
of those references, like util-linux lsns (2.40) does:

* a process in it: ``/proc/PID/ns/TYPE`` of every process;
* a bind mount of its nsfs file (``ip netns add``, ``unshare --net=FILE``): nsfs
  entries in the mountinfo of our mount namespace and of every other mount
  namespace (opened through ``/proc/PID/root`` of one process inside it);
* an open file descriptor: ``/proc/PID/fd/N`` links that read ``TYPE:[INODE]``.

The relations come from nsfs ioctls: NS_GET_USERNS gives the owning user
namespace (ONS), NS_GET_PARENT the parent of a pid or user namespace (PNS).
Each is asked once per namespace, not once per process.
"""

from __future__ import annotations

import os
import re
from hutch.record import dataclass, field

from hutch.errors import ConfigError, NotFoundError, SysCallError
from hutch.syscall import constants as C

from hutch.ns.names import (ALIASES, CLONE_FLAGS, FLAG_TYPES, NS_TYPES,  # noqa: F401 (re-exported)
                            namespace_type, supported_types)

_NSFS_LINK = re.compile(rf"^({'|'.join(NS_TYPES)}):\[(\d+)\]$")


@dataclass
class Namespace:
    """One namespace, as a row of `hutch ns ls` (lsns's columns plus ours)."""

    ns: int                              # inode number: the namespace's identity
    type: str                            # mnt, net, pid, uts, ipc, user, cgroup, time
    nprocs: int = 0                      # processes in it
    pid: int | None = None               # lowest pid in it
    ppid: int | None = None              # that process's parent
    uid: int | None = None               # that process's owner (or the owner of the userns)
    user: str | None = None
    command: str | None = None           # that process's command line
    netnsid: str | None = None           # for net: the nsid here, "unassigned", or None
    nsfs: list[str] = field(default_factory=list)   # bind mounts of it in our mount ns
    pns: int = 0                         # parent namespace (pid and user only)
    ons: int = 0                         # owning user namespace
    path: str | None = None              # a path that opens it
    containers: list[str] = field(default_factory=list)  # hutch containers using it
    pids: list[int] = field(default_factory=list)        # every process in it
    held_by: str = "process"             # process, mount or fd: what keeps it alive

    @property
    def container(self) -> str | None:
        return ",".join(self.containers) or None


@dataclass
class _Process:
    pid: int
    ppid: int
    uid: int
    ns: dict[str, int]                   # type -> inode


# --- names and small helpers ---------------------------------------------------

def check_pid(pid: int, where: str = "pid") -> int:
    """pid if such a process exists (and is not a zombie), else NotFoundError."""
    from hutch.syscall import proc
    if pid <= 0 or not proc.is_alive(pid):
        raise NotFoundError(f"no process with pid {pid}", where=where)
    return pid


def ns_inode(pid: int | str, ns_type: str) -> int:
    """The inode of process pid's namespace of ns_type (NotFoundError if no such process)."""
    try:
        return os.stat(f"/proc/{pid}/ns/{ns_type}").st_ino
    except FileNotFoundError:
        raise NotFoundError(f"no process with pid {pid}") from None
    except PermissionError as err:
        raise SysCallError("stat", err.errno, f"/proc/{pid}/ns/{ns_type}") from None


def parse_nsfs_link(text: str) -> tuple[str, int] | None:
    """('net', 4026532000) for a nsfs link or mount root like 'net:[4026532000]'."""
    match = _NSFS_LINK.match(text)
    return (match.group(1), int(match.group(2))) if match else None


def parse_stat_ppid(data: bytes) -> int:
    """The ppid field of /proc/PID/stat (after the comm, which may hold ') ')."""
    return int(data[data.rindex(b")") + 2:].split(maxsplit=2)[1])


def format_command(cmdline: bytes, comm: str = "") -> str:
    """lsns's COMMAND: argv joined by spaces, or the comm for kernel threads."""
    text = cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return text or comm


def nsfs_mounts(mountinfo_text: str) -> list[tuple[str, int, str]]:
    """(type, inode, mount point) of each nsfs mount in a mountinfo text."""
    from hutch.syscall.proc import parse_mountinfo
    lines = [line for line in mountinfo_text.splitlines() if " - nsfs " in line]
    out = []
    for mount in parse_mountinfo("\n".join(lines)):
        parsed = parse_nsfs_link(mount.root)
        if mount.fstype == "nsfs" and parsed:
            out.append((parsed[0], parsed[1], mount.mount_point))
    return out


def join_nsfs(targets: list[str]) -> list[str]:
    """Mount points without repeats, in mountinfo order (lsns lists each once)."""
    seen: list[str] = []
    for target in targets:
        if target not in seen:
            seen.append(target)
    return seen


# --- reading the system -----------------------------------------------------------

def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _read_process(pid: int, types: list[str]) -> _Process | None:
    """The process's owner, parent and namespace inodes; None if gone or not ours to see."""
    base = f"/proc/{pid}"
    try:
        uid = os.stat(base).st_uid
        with open(f"{base}/stat", "rb") as f:
            ppid = parse_stat_ppid(f.read())
    except (OSError, ValueError):
        return None
    inodes = {}
    for ns_type in types:
        try:
            inodes[ns_type] = os.stat(f"{base}/ns/{ns_type}").st_ino
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue          # as lsns: a process we may not inspect is skipped silently
    if not inodes:
        return None
    return _Process(pid, ppid, uid, inodes)


def read_processes(types: list[str]) -> list[_Process]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            process = _read_process(int(name), types)
            if process is not None:
                out.append(process)
    return out


def _ioctl_ino(fd: int, request: int) -> tuple[int, int]:
    """(inode, fd) of the namespace an nsfs ioctl returns; (0, -1) when not permitted."""
    from hutch.syscall import ioctl_int
    try:
        new_fd = ioctl_int(fd, request)
    except SysCallError:
        return 0, -1     # EPERM: the relative is outside our view (e.g. the initial userns)
    return os.fstat(new_fd).st_ino, new_fd


def related_inodes(path: str, ns_type: str, want_uid: bool = True) -> tuple[int, int, int | None]:
    """(parent, owner, owner's uid) of the namespace at path; zeros when unknown.
    The uid (of the owning user namespace's creator) only when want_uid."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0, 0, None
    try:
        parent = 0
        if ns_type in ("pid", "user"):
            parent, pfd = _ioctl_ino(fd, C.NS_GET_PARENT)
            if pfd >= 0:
                os.close(pfd)
        owner, ofd = _ioctl_ino(fd, C.NS_GET_USERNS)
        owner_uid = None
        if ofd >= 0:
            if want_uid:
                owner_uid = _owner_uid(ofd)
            os.close(ofd)
        elif ns_type == "user" and want_uid:
            owner_uid = _owner_uid(fd)
        return parent, owner, owner_uid
    finally:
        os.close(fd)


def _owner_uid(userns_fd: int) -> int | None:
    """The uid that created the user namespace open as userns_fd (NS_GET_OWNER_UID)."""
    import fcntl
    import struct
    try:
        return struct.unpack("I", fcntl.ioctl(userns_fd, C.NS_GET_OWNER_UID, b"\0" * 4))[0]
    except OSError:
        return None


_user_names: dict[int, str] = {}


def user_name(uid: int) -> str:
    """The login name of uid, or the number as text (as lsns prints it)."""
    if uid not in _user_names:
        import pwd
        try:
            _user_names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _user_names[uid] = str(uid)
    return _user_names[uid]


# --- the listing ---------------------------------------------------------------------

class _Collector:
    """Builds the Namespace rows from processes, mounts and fds."""

    def __init__(self, types: list[str]):
        self.types = types
        self.rows: dict[int, Namespace] = {}

    def add_process(self, process: _Process) -> None:
        for ns_type, ino in process.ns.items():
            if ns_type not in self.types:
                continue
            row = self.rows.get(ino)
            if row is None:
                row = self.rows[ino] = Namespace(ns=ino, type=ns_type)
            row.nprocs += 1
            row.pids.append(process.pid)
            if row.pid is None or process.pid < row.pid:
                row.pid, row.ppid, row.uid = process.pid, process.ppid, process.uid
                row.path = f"/proc/{process.pid}/ns/{ns_type}"

    def add_held(self, ns_type: str, ino: int, path: str, held_by: str) -> None:
        """A namespace kept by a mount or an fd; path must open it (checked by inode)."""
        if ns_type not in self.types or ino in self.rows:
            return
        try:
            if os.stat(path).st_ino != ino:
                return
        except OSError:
            return
        self.rows[ino] = Namespace(ns=ino, type=ns_type, path=path, held_by=held_by)


def _scan_mounts(collector: _Collector, processes: list[_Process], self_text: str) -> None:
    """Namespaces bind-mounted in our mount namespace and in every other one."""
    for ns_type, ino, target in nsfs_mounts(self_text):
        collector.add_held(ns_type, ino, target, "mount")
    own_mnt = os.stat("/proc/self/ns/mnt").st_ino
    seen_mnt = {own_mnt}
    for process in processes:
        mnt = process.ns.get("mnt")
        if mnt is None or mnt in seen_mnt:
            continue
        seen_mnt.add(mnt)
        text = _read(f"/proc/{process.pid}/mountinfo")
        if not text:
            continue
        for ns_type, ino, target in nsfs_mounts(text.decode(errors="replace")):
            # /proc/PID/root resolves target inside that process's mount namespace
            collector.add_held(ns_type, ino, f"/proc/{process.pid}/root{target}", "mount")


def _scan_fds(collector: _Collector, processes: list[_Process]) -> None:
    """Namespaces that an open file descriptor keeps.

    An fd opened through /proc/PID/ns/* reads TYPE:[INODE]; one opened through a
    bind mount reads as that path, so path-like links are stat()ed and kept when
    they are on nsfs.  Sockets, pipes and anon inodes are skipped unread."""
    nsfs_dev = os.stat("/proc/self/ns/user").st_dev
    for process in processes:
        fd_dir = f"/proc/{process.pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            fd_path = f"{fd_dir}/{name}"
            try:
                link = os.readlink(fd_path)
            except OSError:
                continue
            if link.endswith("]") and ":[" in link:
                parsed = parse_nsfs_link(link)
                if parsed:
                    collector.add_held(parsed[0], parsed[1], fd_path, "fd")
            elif link.startswith("/") and not link.startswith(("/dev/", "/proc/", "/sys/")):
                _add_fd_by_stat(collector, fd_path, nsfs_dev)


def _add_fd_by_stat(collector: _Collector, fd_path: str, nsfs_dev: int) -> None:
    try:
        st = os.stat(fd_path)
    except OSError:
        return
    if st.st_dev != nsfs_dev or st.st_ino in collector.rows:
        return
    from hutch.syscall import ioctl_int
    try:
        fd = os.open(fd_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        ns_type = FLAG_TYPES.get(ioctl_int(fd, C.NS_GET_NSTYPE))
    except SysCallError:
        return
    finally:
        os.close(fd)
    if ns_type:
        collector.add_held(ns_type, st.st_ino, fd_path, "fd")


def _command(pid: int) -> str:
    """lsns's COMMAND for pid: its command line, or its comm for a kernel thread."""
    cmdline = _read(f"/proc/{pid}/cmdline") or b""
    if cmdline.strip(b"\0"):
        return format_command(cmdline)
    return (_read(f"/proc/{pid}/comm") or b"").decode(errors="replace").strip()


def _fill_netnsid(rows: list[Namespace]) -> None:
    from hutch.ns.nsid import NsidClient, format_nsid, nsid_of_path
    try:
        client = NsidClient()
    except OSError:
        return
    with client:
        for row in rows:
            if row.type == "net" and row.path:
                row.netnsid = format_nsid(nsid_of_path(row.path, client))


def list_namespaces(types: list[str] | None = None, pid: int | None = None,
                    owners: dict[int, list[str]] | None = None, *, related: bool = True,
                    netnsid: bool = True, commands: bool = True, held: bool = True,
                    ) -> list[Namespace]:
    """Every namespace visible to us, sorted by inode.

    types: only these (default: all the kernel has); pid: only those pid is in;
    owners: inode -> container ids, to fill `containers` (see
    hutch.tools.containers.container_namespaces: this layer knows no runtime);
    related: ask for PNS/ONS; netnsid: ask rtnetlink for NETNSID; commands: read
    each namespace's first process's command line; held: also find namespaces
    kept only by bind mounts or open fds.  The switches only save time."""
    types = [namespace_type(t) for t in types] if types else supported_types()
    if pid is not None:
        check_pid(pid)
    scan_types = list(dict.fromkeys(types + (["mnt"] if held else [])))
    processes = read_processes(scan_types)
    collector = _Collector(types)
    for process in processes:
        collector.add_process(process)
    self_mountinfo = (_read("/proc/self/mountinfo") or b"").decode(errors="replace")
    if held and pid is None:
        _scan_mounts(collector, processes, self_mountinfo)
        _scan_fds(collector, processes)
    rows = sorted(collector.rows.values(), key=lambda r: r.ns)
    if pid is not None:
        rows = [r for r in rows if pid in r.pids]
    _describe(rows, self_mountinfo, owners or {}, related, netnsid, commands)
    return rows


def _describe(rows: list[Namespace], self_mountinfo: str, owners: dict[int, list[str]],
              related: bool, netnsid: bool, commands: bool) -> None:
    """Fill the columns that cost a syscall or a file read per namespace."""
    mounts: dict[int, list[str]] = {}
    for _type, ino, target in nsfs_mounts(self_mountinfo):
        mounts.setdefault(ino, []).append(target)
    command_of: dict[int, str] = {}       # a process stands for up to 8 namespaces
    for row in rows:
        row.nsfs = join_nsfs(mounts.get(row.ns, []))
        row.containers = owners.get(row.ns, [])
        if row.path and (related or row.uid is None):
            # a namespace without processes is attributed to its owning userns's creator
            pns, ons, owner_uid = related_inodes(row.path, row.type, want_uid=row.uid is None)
            if related:
                row.pns, row.ons = pns, ons
            if row.uid is None:
                row.uid = owner_uid
        if row.uid is not None:
            row.user = user_name(row.uid)
        if commands and row.pid is not None:
            if row.pid not in command_of:
                command_of[row.pid] = _command(row.pid)
            row.command = command_of[row.pid]
    if netnsid:
        _fill_netnsid(rows)


def inspect(target: int | str, ns_type: str | None = None,
            owners: dict[int, list[str]] | None = None) -> Namespace:
    """Describe one namespace: of process `target` (an int, with ns_type) or the nsfs
    file at path `target` (a str: /run/netns/NAME, /proc/PID/ns/net, ...)."""
    if isinstance(target, int):
        if ns_type is None:
            raise ConfigError("a namespace type is needed with a pid", where="type")
        ns_type = namespace_type(ns_type)
        check_pid(target)
        ino = ns_inode(target, ns_type)
    else:
        try:
            link_type, ino = _identify_file(target)
        except OSError as err:
            raise NotFoundError(f"cannot open {target}: {err.strerror}") from None
        if ns_type is not None and namespace_type(ns_type) != link_type:
            raise ConfigError(f"{target} is a {link_type} namespace, not {ns_type}", where=target)
        ns_type = link_type
    for row in list_namespaces([ns_type], owners=owners):
        if row.ns == ino:
            if isinstance(target, str) and row.path is None:
                row.path = target
            return row
    # Alive only through the caller's own reference (e.g. a path we could not scan).
    row = Namespace(ns=ino, type=ns_type, path=target if isinstance(target, str) else
                    f"/proc/{target}/ns/{ns_type}", held_by="fd")
    _describe([row], "", owners or {}, True, True, True)
    return row


def _identify_file(path: str) -> tuple[str, int]:
    """(type, inode) of the nsfs file at path; ConfigError if it is not one."""
    from hutch.syscall import ioctl_int
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            flag = ioctl_int(fd, C.NS_GET_NSTYPE)
        except SysCallError:
            raise ConfigError(f"{path} is not a namespace file", where=path) from None
        return FLAG_TYPES[flag], os.fstat(fd).st_ino
    finally:
        os.close(fd)
