"""What both backends share: interface-file I/O, the write plan with rollback, the
manager base class (create/destroy bookkeeping, pids, kill), and OOM watchers."""

from __future__ import annotations

import errno
import os
import select
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)
import time
from hutch.record import dataclass, field

from hutch.errors import HutchError


def rdma_line(name: str, rd: dict) -> str:
    """rdma.max line: 'mlx5_1 hca_handle=3 hca_object=100'."""
    parts = [name]
    if rd.get("hcaHandles") is not None:
        parts.append(f"hca_handle={rd['hcaHandles']}")
    if rd.get("hcaObjects") is not None:
        parts.append(f"hca_object={rd['hcaObjects']}")
    return " ".join(parts)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_or(path: str, default=None):
    try:
        return read_file(path).strip()
    except OSError:
        return default


def read_int(path: str, default: int = 0) -> int:
    """A number from an interface file; 'max' reads as 0 (runc's convention in stats)."""
    text = read_or(path)
    if text is None or text == "max" or text == "":
        return default
    try:
        return int(text.split()[0])
    except ValueError:
        return default


def read_flat_keyed(path: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat, memory.events) -> dict."""
    return parse_flat_keyed(read_or(path, "") or "")


def parse_flat_keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def write_file(path: str, value: str) -> None:
    """Write one value to an interface file in one write(2); never creates the file."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # TRUNC: as `echo >`
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass
class Write:
    """One value for one interface file, with what to tell the user if it fails."""
    path: str
    value: str
    where: str                      # JSON path of the resource
    label: str = ""                 # e.g. "memory limit"
    restore: bool = True            # can the old value be written back as read?
    check: object = None            # optional callable(path, value) run after the write
    _old: str | None = field(default=None, repr=False)

    def do(self) -> None:
        if self.restore:
            self._old = read_or(self.path)
        try:
            write_file(self.path, self.value)
        except OSError as err:
            raise refusal(self, err) from None
        if self.check:
            self.check(self)

    def undo(self) -> None:
        if self._old is not None:
            try:
                write_file(self.path, self._old)
            except OSError:
                pass


@dataclass
class Action:
    """A step that is not a single file write (device rules, eBPF programs)."""
    do_fn: object
    undo_fn: object = None
    where: str = ""

    def do(self) -> None:
        self.do_fn()

    def undo(self) -> None:
        if self.undo_fn:
            try:
                self.undo_fn()
            except (OSError, HutchError):
                pass


def refusal(step: Write, err: OSError) -> HutchError:
    """The kernel refused a value: name the resource, the value and the file."""
    name = os.path.basename(step.path)
    if err.errno == errno.ENOENT:
        ctl = name.split(".")[0]
        return HutchError(f"cannot set {step.label or name} to {step.value!r}: the {ctl} "
                          f"controller does not provide {name} here", where=step.where)
    return HutchError(f"cannot set {step.label or name} to {step.value!r}: the kernel refused "
                      f"it ({os.strerror(err.errno)}, {name})", where=step.where)


def run_plan(steps: list) -> None:
    """Do every step; if one fails, undo the ones done (newest first) and re-raise."""
    done = []
    try:
        for step in steps:
            step.do()
            done.append(step)
    except BaseException:
        for step in reversed(done):
            step.undo()
        raise


def not_available(controller: str, where: str, driver: str) -> HutchError:
    return HutchError(f"the {controller} controller is not available on this host "
                      f"(cgroup {driver})", where=where)


def rmdir_retry(path: str, attempts: int = 50) -> bool:
    """rmdir, retrying on EBUSY for a moment (tasks still exiting). False if never emptied."""
    for i in range(attempts):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as err:
            if err.errno not in (errno.EBUSY, errno.EAGAIN) or i == attempts - 1:
                if err.errno in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN):
                    return False
                raise
            time.sleep(0.02)
    return False


def makedirs_recorded(path: str, created: list[str]) -> None:
    """mkdir -p, appending each directory it actually made (top-down) to created.

    A shared parent (/hutch) may vanish under us when another container's destroy
    removes it at that moment: start again a few times."""
    for attempt in range(5):
        try:
            return _makedirs_once(path, created)
        except FileNotFoundError:
            if attempt == 4:
                raise


def _makedirs_once(path: str, created: list[str]) -> None:
    missing = []
    cur = path
    while not os.path.isdir(cur):
        missing.append(cur)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
            if d not in created:
                created.append(d)
        except FileExistsError:
            pass


def enable_controllers(root: str, path: str, controllers: set[str]) -> list[tuple[str, str]]:
    """cgroup v2: write +ctl to cgroup.subtree_control from root down to path's parent,
    where it is not enabled yet, so the controller's files appear in path.

    Returns the (directory, controller) pairs it enabled, for disable_controllers()."""
    done: list[tuple[str, str]] = []
    chain = []
    d = os.path.dirname(path)
    while True:
        chain.append(d)
        if os.path.normpath(d) == os.path.normpath(root) or d in ("/", ""):
            break
        d = os.path.dirname(d)
    for d in reversed(chain):
        have = set((read_or(os.path.join(d, "cgroup.subtree_control"), "") or "").split())
        for ctl in sorted(controllers - have):
            try:
                write_file(os.path.join(d, "cgroup.subtree_control"), f"+{ctl}")
                done.append((d, ctl))
            except OSError as err:
                disable_controllers(done)
                raise HutchError(f"cannot enable the {ctl} controller in {d}: "
                                 f"{os.strerror(err.errno)}", where="cgroup") from None
    return done


def disable_controllers(enabled: list[tuple[str, str]]) -> None:
    """Undo enable_controllers (deepest first), best effort: another cgroup may use them now."""
    for d, ctl in reversed(enabled):
        try:
            write_file(os.path.join(d, "cgroup.subtree_control"), f"-{ctl}")
        except OSError:
            pass


def check_hugepage_sizes(limits: list, where: str, sysfs: str = "/sys/kernel/mm/hugepages") -> None:
    """Refuse a pageSize this kernel does not have (before anything is written)."""
    from hutch.cgroups.convert import bytes_to_hugepage_size
    try:
        names = os.listdir(sysfs)
    except OSError:
        return
    sizes = {bytes_to_hugepage_size(int(n.split("-")[1].removesuffix("kB")) * 1024)
             for n in names if n.startswith("hugepages-") and n.endswith("kB")}
    for i, hp in enumerate(limits or []):
        if hp["pageSize"] not in sizes:
            raise HutchError(f"hugepage size {hp['pageSize']} is not supported by this kernel "
                             f"(supported: {', '.join(sorted(sizes)) or 'none'})",
                             where=f"{where}[{i}].pageSize")


def procs_recursive(directory: str) -> list[int]:
    """Every pid in the cgroup and its descendants (cgroup.procs of each)."""
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(directory):
        text = read_or(os.path.join(dirpath, "cgroup.procs"), "")
        pids.extend(int(p) for p in text.split())
    return sorted(set(pids))


class Manager:
    """Base of the v1 and v2 managers: bookkeeping shared by both."""

    driver = "?"

    def __init__(self, container_id: str, root: str):
        self.id = container_id
        self.root = root
        self.created: list[str] = []

    # -- to be provided by the backends -------------------------------------------------
    def leaf_dirs(self) -> list[str]:
        raise NotImplementedError

    def validate(self, resources: dict) -> dict:
        raise NotImplementedError

    def plan(self, resources: dict) -> list:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def apply(self, resources: dict | None) -> None:
        """Validate, then write every value; on a refusal undo what was written."""
        resources = self.validate(resources or {})
        run_plan(self.plan(resources))

    def destroy(self) -> None:
        """Remove the directories this manager created, deepest first."""
        leaves = set(self.leaf_dirs())
        busy = []
        for d in sorted(set(self.created), key=lambda p: p.count("/"), reverse=True):
            if not rmdir_retry(d, attempts=50 if d in leaves else 1) and d in leaves:
                busy.append(d)
        if busy:
            raise HutchError(f"cannot remove cgroup {busy[0]}: it still has processes or "
                             "child cgroups", where="cgroup")
        for leaf in leaves:
            # The default parent (<hierarchy>/hutch) is shared by all containers; whoever
            # leaves last removes it, whether or not it made it.
            parent = os.path.dirname(leaf)
            if os.path.basename(parent) == "hutch" and (
                    os.path.ismount(os.path.dirname(parent)) or
                    os.path.normpath(os.path.dirname(parent)) == os.path.normpath(self.root)):
                rmdir_retry(parent, attempts=1)
        self.created = [d for d in self.created if os.path.isdir(d)]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.leaf_dirs())

    def pids(self) -> list[int]:
        return procs_recursive(self.procs_dir())

    def procs_dir(self) -> str:
        return self.leaf_dirs()[0]

    def signal_each(self, sig: int) -> None:
        """Freeze, signal every task, thaw: no task can fork past the signal (as runc)."""
        frozen = False
        try:
            self.freeze()
            frozen = True
        except HutchError:
            pass
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        self.signal_each(sig)

    def wait_empty(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pids():
                return True
            time.sleep(0.02)
        return not self.pids()


class EventfdOOMWatch:
    """cgroup v1: an eventfd registered on memory.oom_control through cgroup.event_control."""

    def __init__(self, memory_dir: str):
        self.memory_dir = memory_dir
        self.efd = os.eventfd(0, os.EFD_CLOEXEC)
        self.ofd = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            write_file(os.path.join(memory_dir, "cgroup.event_control"), f"{self.efd} {self.ofd}")
        except OSError as err:
            self.close()
            raise HutchError(f"cannot watch OOM events of {memory_dir}: {os.strerror(err.errno)}")

    def fileno(self) -> int:
        return self.efd

    def wait(self, timeout: float | None) -> int:
        """Block up to timeout seconds; the number of OOM notifications (0 on timeout).

        The eventfd also fires when the cgroup is removed: that is not an OOM."""
        ready, _, _ = select.select([self.efd], [], [], timeout)
        if not ready:
            return 0
        count = os.eventfd_read(self.efd)
        if not os.path.isdir(self.memory_dir):
            return 0
        return int(count)

    def close(self) -> None:
        for fd in (getattr(self, "ofd", -1), getattr(self, "efd", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.efd = self.ofd = -1


class EventsFileOOMWatch:
    """cgroup v2: poll(POLLPRI) on memory.events, which the kernel signals on change;
    wait() returns by how much the oom_kill counter grew."""

    def __init__(self, directory: str, name: str = "memory.events", key: str = "oom_kill"):
        self.path = os.path.join(directory, name)
        self.key = key
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLPRI | select.POLLERR)
        self.last = self._count()

    def _count(self) -> int:
        # Read through the polled fd: kernfs re-arms POLLPRI for an fd only when it is read.
        os.lseek(self.fd, 0, os.SEEK_SET)
        text = os.read(self.fd, 4096).decode()
        return parse_flat_keyed(text).get(self.key, 0)

    def fileno(self) -> int:
        return self.fd

    def wait(self, timeout: float | None) -> int:
        events = self.poller.poll(None if timeout is None else int(timeout * 1000))
        now = self._count()
        new, self.last = max(0, now - self.last), now
        return new if events or new else 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
