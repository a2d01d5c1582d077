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

Cost: every process costs one readlink per namespace type (the link text
"net:[4026531833]" carries the inode: half the price of a stat), one listdir of
its fds and a readlink per fd; only the process that stands for a namespace (its
lowest pid) has its owner, parent and command line read.  Files are read with
os.open/os.read (no buffered file object: no fstat, lseek and isatty ioctl per
file), and nothing here imports re, json or ctypes (see bench/nstools).
"""

from __future__ import annotations

import os
from hutch.record import dataclass, field

from hutch.errors import ConfigError, NotFoundError, SysCallError
from hutch.syscall import constants as C

from hutch.ns.names import (ALIASES, CLONE_FLAGS, FLAG_TYPES, NS_TYPES,  # noqa: F401 (re-exported)
                            namespace_type, supported_types)

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


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


class _Process:
    """A process seen in /proc: its pid and namespace inodes (type -> inode)."""
    __slots__ = ("pid", "ns")

    def __init__(self, pid: int, ns: dict[str, int]):
        self.pid = pid
        self.ns = ns


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
    ns_type, bracket, rest = text.partition(":[")
    digits = rest[:-1]
    if (not bracket or ns_type not in NS_TYPES or not rest.endswith("]")
            or not (digits.isascii() and digits.isdigit())):
        return None
    return ns_type, int(digits)


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

def _read(path: str, record: bool = False) -> bytes | None:
    """The whole file, or None if it cannot be read (a process gone, not ours).
    record: a file the kernel hands out in one piece (/proc/PID/stat, cmdline,
    comm), so a short read is its end and the read of nothing after it is saved."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            if record and len(chunk) < 65536:
                break
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_process_namespaces(pid: int | str, types: list[str]) -> dict[str, int]:
    """type -> inode of process pid's namespaces; {} if it is gone.  A type we may
    not inspect is left out silently, as lsns does."""
    try:
        ns_dir = os.open(f"/proc/{pid}/ns", _O_DIR)
    except OSError:
        return {}
    readlink = os.readlink
    inodes = {}
    try:
        for ns_type in types:
            try:
                link = readlink(ns_type, dir_fd=ns_dir)     # "net:[4026531833]"
            except OSError:
                continue
            inodes[ns_type] = int(link[len(ns_type) + 2:-1])
    finally:
        os.close(ns_dir)
    return inodes


def read_processes(types: list[str]) -> list[_Process]:
    """Every process we can see, with its namespace inodes of the given types."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            inodes = read_process_namespaces(name, types)
            if inodes:
                out.append(_Process(int(name), inodes))
    return out


def process_details(pid: int) -> tuple[int, int] | None:
    """(ppid, uid) of process pid, or None if it is gone."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    data = _read(f"/proc/{pid}/stat", record=True)
    if not data:
        return None
    try:
        return parse_stat_ppid(data), uid
    except (ValueError, IndexError):
        return None


def _ns_ioctl(fd: int, request: int) -> int:
    """An nsfs ioctl's result (an fd, a type); OSError if refused.  fcntl, not
    hutch.syscall's ctypes wrapper: loading ctypes costs more than the listing."""
    import fcntl
    return fcntl.ioctl(fd, request)


def _ioctl_ino(fd: int, request: int) -> tuple[int, int]:
    """(inode, fd) of the namespace an nsfs ioctl returns; (0, -1) when not permitted."""
    try:
        new_fd = _ns_ioctl(fd, request)
    except OSError:
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
    import sys
    try:
        return int.from_bytes(fcntl.ioctl(userns_fd, C.NS_GET_OWNER_UID, b"\0" * 4), sys.byteorder)
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
        rows = self.rows
        pid = process.pid
        for ns_type, ino in process.ns.items():
            row = rows.get(ino)
            if row is None:
                if ns_type not in self.types:
                    continue
                row = rows[ino] = Namespace(ns=ino, type=ns_type, pid=pid)
            elif pid < row.pid:
                row.pid = pid
            row.nprocs += 1
            row.pids.append(pid)

    def settle_processes(self) -> None:
        """Give each row its lowest-pid process's parent and owner.  A process that
        is gone by now leaves every row, as if the scan had not seen it."""
        details: dict[int, tuple[int, int] | None] = {}
        gone: set[int] = set()
        for row in self.rows.values():
            while row.pid is not None:
                pid = row.pid
                if pid not in details:
                    details[pid] = process_details(pid)
                if details[pid] is not None:
                    row.ppid, row.uid = details[pid]
                    break
                gone.add(pid)
                row.pids = [p for p in row.pids if p != pid]
                row.pid = min(row.pids) if row.pids else None
        if gone:
            for ino, row in list(self.rows.items()):
                row.pids = [p for p in row.pids if p not in gone]
                row.nprocs = len(row.pids)
                if not row.pids:
                    del self.rows[ino]
        for row in self.rows.values():
            row.path = f"/proc/{row.pid}/ns/{row.type}"

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


def _nsfs_mounts_in(data: bytes | None) -> list[tuple[str, int, str]]:
    """nsfs_mounts of a raw mountinfo; most have none, so look before decoding."""
    if not data or b" - nsfs " not in data:
        return []
    return nsfs_mounts(data.decode(errors="replace"))


def _scan_mounts(collector: _Collector, processes: list[_Process], self_mounts: list) -> None:
    """Namespaces bind-mounted in our mount namespace and in every other one."""
    for ns_type, ino, target in self_mounts:
        collector.add_held(ns_type, ino, target, "mount")
    own_mnt = int(os.readlink("/proc/self/ns/mnt")[5:-1])
    seen_mnt = {own_mnt}
    for process in processes:
        mnt = process.ns.get("mnt")
        if mnt is None or mnt in seen_mnt:
            continue
        seen_mnt.add(mnt)
        for ns_type, ino, target in _nsfs_mounts_in(_read(f"/proc/{process.pid}/mountinfo")):
            # /proc/PID/root resolves target inside that process's mount namespace
            collector.add_held(ns_type, ino, f"/proc/{process.pid}/root{target}", "mount")


def _scan_fds(collector: _Collector, processes: list[_Process]) -> None:
    """Namespaces that an open file descriptor keeps.

    An fd opened through /proc/PID/ns/* reads TYPE:[INODE]; one opened through a
    bind mount reads as that path, so path-like links are stat()ed and kept when
    they are on nsfs.  Sockets, pipes and anon inodes are skipped unread."""
    nsfs_dev = os.stat("/proc/self/ns/user").st_dev
    readlink = os.readlink
    for process in processes:
        fd_dir = f"/proc/{process.pid}/fd/"
        try:
            names = os.listdir(fd_dir)     # by path: listdir(fd) costs a dup, fcntls, an fstat
        except OSError:
            continue
        for name in names:
            fd_path = fd_dir + name
            try:
                link = readlink(fd_path)
            except OSError:
                continue
            if link[-1:] == "]":
                if ":[" in link:
                    parsed = parse_nsfs_link(link)
                    if parsed:
                        collector.add_held(parsed[0], parsed[1], fd_path, "fd")
            elif link[:1] == "/" and not link.startswith(("/dev/", "/proc/", "/sys/")):
                _add_fd_by_stat(collector, fd_path, nsfs_dev)


def _add_fd_by_stat(collector: _Collector, fd_path: str, nsfs_dev: int) -> None:
    try:
        st = os.stat(fd_path)
    except OSError:
        return
    if st.st_dev != nsfs_dev or st.st_ino in collector.rows:
        return
    try:
        fd = os.open(fd_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        ns_type = FLAG_TYPES.get(_ns_ioctl(fd, C.NS_GET_NSTYPE))
    except OSError:
        return
    finally:
        os.close(fd)
    if ns_type:
        collector.add_held(ns_type, st.st_ino, fd_path, "fd")


def _command(pid: int) -> str:
    """lsns's COMMAND for pid: its command line, or its comm for a kernel thread."""
    cmdline = _read(f"/proc/{pid}/cmdline", record=True) or b""
    if cmdline.strip(b"\0"):
        return format_command(cmdline)
    return (_read(f"/proc/{pid}/comm", record=True) or b"").decode(errors="replace").strip()


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
                    users: bool = True) -> list[Namespace]:
    """Every namespace visible to us, sorted by inode.

    types: only these (default: all the kernel has); pid: only those pid is in;
    owners: inode -> container ids, to fill `containers` (see
    hutch.tools.containers.container_namespaces: this layer knows no runtime);
    related: ask for PNS/ONS; netnsid: ask rtnetlink for NETNSID; commands: read
    each namespace's first process's command line; held: also find namespaces
    kept only by bind mounts or open fds; users: fill `user` (and the `uid` of a
    namespace without processes, from its owning user namespace).  The switches
    only save time."""
    types = [namespace_type(t) for t in types] if types else supported_types()
    if pid is not None:
        check_pid(pid)
    scan_types = list(dict.fromkeys(types + (["mnt"] if held else [])))
    processes = read_processes(scan_types)
    collector = _Collector(types)
    for process in processes:
        collector.add_process(process)
    collector.settle_processes()
    self_mounts = _nsfs_mounts_in(_read("/proc/self/mountinfo"))
    if held and pid is None:
        _scan_mounts(collector, processes, self_mounts)
        _scan_fds(collector, processes)
    rows = sorted(collector.rows.values(), key=lambda r: r.ns)
    if pid is not None:
        rows = [r for r in rows if pid in r.pids]
    _describe(rows, self_mounts, owners or {}, related, netnsid, commands, users)
    return rows


def _describe(rows: list[Namespace], self_mounts: list, owners: dict[int, list[str]],
              related: bool, netnsid: bool, commands: bool, users: bool = True) -> None:
    """Fill the columns that cost a syscall or a file read per namespace."""
    mounts: dict[int, list[str]] = {}
    for _type, ino, target in self_mounts:
        mounts.setdefault(ino, []).append(target)
    command_of: dict[int, str] = {}       # a process stands for up to 8 namespaces
    for row in rows:
        if mounts:
            row.nsfs = join_nsfs(mounts.get(row.ns, []))
        if owners:
            row.containers = owners.get(row.ns, [])
        want_uid = users and row.uid is None
        if row.path and (related or want_uid):
            # a namespace without processes is attributed to its owning userns's creator
            pns, ons, owner_uid = related_inodes(row.path, row.type, want_uid=want_uid)
            if related:
                row.pns, row.ons = pns, ons
            if want_uid:
                row.uid = owner_uid
        if users and row.uid is not None:
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
    _describe([row], [], owners or {}, True, True, True)
    return row


def _identify_file(path: str) -> tuple[str, int]:
    """(type, inode) of the nsfs file at path; ConfigError if it is not one."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            flag = _ns_ioctl(fd, C.NS_GET_NSTYPE)
        except OSError:
            raise ConfigError(f"{path} is not a namespace file", where=path) from None
        return FLAG_TYPES[flag], os.fstat(fd).st_ino
    finally:
        os.close(fd)
