"""Entering namespaces: nsenter's order of setns calls, and two Python APIs.

* ``with enter(pid, "net"):`` switches the *calling thread* into one namespace
  and back.  It works for the types a thread can leave again with a saved fd:
  net, uts, ipc, cgroup, pid (which only affects children forked inside the
  block) and time (the kernel wants a single-threaded process for that one).
* ``run_in(pid, ["mnt", "user"], func)`` is for everything else: mount and user
  namespaces cannot be left (a mount namespace is shared by all threads and a
  process that joined a user namespace has no rights left in its parent), so
  func runs in a forked child that enters them, and its (picklable) result or
  exception comes back through a pipe.  With "pid" the child forks once more so
  that func runs as a member of the pid namespace.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from hutch.errors import ConfigError, HutchError, NotFoundError, SysCallError
from hutch.ns.info import CLONE_FLAGS, namespace_type

# nsenter's order: user first (so a namespace it owns may be joined with its
# rights), then the rest; mnt late because it changes our root and cwd.
ENTER_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")
# A thread can come back from these with setns(saved fd).
REVERSIBLE = ("net", "uts", "ipc", "cgroup", "pid", "time")


def _open_ns(path: str, ns_type: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"cannot open {path}: no such process or file", where=what) from None
    except OSError as err:
        raise SysCallError("open", err.errno, path) from None


def namespace_path(target: int | str, ns_type: str) -> str:
    """The nsfs file for target: a pid's /proc/PID/ns/TYPE, or a path given as is."""
    return f"/proc/{target}/ns/{ns_type}" if isinstance(target, int) else target


def open_namespaces(targets: dict[str, int | str]) -> dict[str, int]:
    """Open each namespace {type: pid or nsfs path} before any setns (as nsenter does:
    /proc/PID may not be reachable any more once we are inside).  All or nothing."""
    fds: dict[str, int] = {}
    try:
        for ns_type, target in targets.items():
            ns_type = namespace_type(ns_type)
            fds[ns_type] = _open_ns(namespace_path(target, ns_type), ns_type, ns_type)
    except BaseException:
        close_all(fds)
        raise
    return fds


def close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        if fd >= 0:
            os.close(fd)
    fds.clear()


def setns_all(fds: dict[str, int]) -> None:
    """Join the namespaces open in fds, nsenter-style, closing each fd once joined.

    Pass 1 joins everything but the user namespace and tolerates failures (we may
    lack the rights until we are in the owning user namespace); pass 2 joins the
    user namespace first, then retries the rest, and any failure is final."""
    from hutch.syscall import setns
    for attempt in (1, 2):
        for ns_type in ENTER_ORDER:
            if ns_type not in fds or fds[ns_type] < 0 or (attempt == 1 and ns_type == "user"):
                continue
            try:
                setns(fds[ns_type], CLONE_FLAGS[ns_type], detail=f"{ns_type} namespace")
            except SysCallError:
                if attempt == 2:
                    raise
                continue
            os.close(fds[ns_type])
            fds[ns_type] = -1


def same_namespace(pid: int, ns_type: str) -> bool:
    """True if process pid is in our own namespace of ns_type."""
    try:
        mine = os.stat(f"/proc/self/ns/{ns_type}")
        theirs = os.stat(f"/proc/{pid}/ns/{ns_type}")
    except OSError:
        return False
    return (mine.st_ino, mine.st_dev) == (theirs.st_ino, theirs.st_dev)


@contextmanager
def enter(target: int | str, ns_type: str):
    """Run the block with the calling thread in target's namespace of ns_type.

    target: a pid or an nsfs path (/run/netns/NAME).  On exit the thread returns
    to the namespace it was in, even if the block raised.  mnt and user cannot
    be undone this way: use run_in()."""
    ns_type = namespace_type(ns_type)
    if ns_type not in REVERSIBLE:
        raise ConfigError(f"a thread cannot come back from a {ns_type} namespace: "
                          "use hutch.ns.run_in(), which enters it in a forked child",
                          where="namespace type")
    from hutch.syscall import setns
    flag = CLONE_FLAGS[ns_type]
    target_fd = _open_ns(namespace_path(target, ns_type), ns_type, ns_type)
    try:
        home_fd = _open_ns(f"/proc/thread-self/ns/{ns_type}", ns_type, ns_type)
    except BaseException:
        os.close(target_fd)
        raise
    try:
        setns(target_fd, flag, detail=f"{ns_type} namespace of {target}")
        try:
            yield
        finally:
            setns(home_fd, flag, detail=f"back to our {ns_type} namespace")
    finally:
        os.close(target_fd)
        os.close(home_fd)


def become_root_in_userns() -> None:
    """After joining a user namespace: drop groups and take uid/gid 0, as nsenter does
    (best effort: 0 may be unmapped, setgroups may be denied)."""
    for call in (lambda: os.setgroups([]), lambda: os.setgid(0), lambda: os.setuid(0)):
        try:
            call()
        except OSError:
            pass


def run_in(target: int | str | dict[str, int | str], types: list[str] | str, func,
           *args, **kwargs):
    """func(*args, **kwargs) run inside target's namespaces of `types`; its result.

    target: a pid, an nsfs path (one type only), or {type: pid or path}.  func
    runs in a forked child (a grandchild when "pid" is among the types), so the
    caller never changes namespace; its return value must be picklable, and an
    exception it raises is raised here."""
    import pickle
    if isinstance(types, str):
        types = [types]
    if isinstance(target, dict):
        targets = dict(target)
    else:
        targets = {t: target for t in types}
    fds = open_namespaces(targets)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
    except BaseException:
        close_all(fds)
        os.close(read_fd)
        os.close(write_fd)
        raise
    if child == 0:                                   # pragma: no cover (child side)
        os.close(read_fd)
        _child_main(fds, write_fd, func, args, kwargs)
    close_all(fds)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(child, 0)
    data = b"".join(chunks)
    if not data:
        raise HutchError(f"run_in: the child process died ({_describe_status(status)})")
    ok, value = pickle.loads(data)
    if ok:
        return value
    raise value


def _child_main(fds: dict[str, int], write_fd: int, func, args, kwargs) -> None:
    """In the forked child: join, (fork again for pid), call func, send the result."""
    import pickle
    code = 0
    try:
        joined_user = "user" in fds
        joined_pid = "pid" in fds
        setns_all(fds)
        if joined_user:
            become_root_in_userns()
        if joined_pid:
            grandchild = os.fork()
            if grandchild != 0:
                _, status = os.waitpid(grandchild, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        try:
            result = (True, func(*args, **kwargs))
        except BaseException as exc:                 # sent back, raised by the caller
            result = (False, exc)
        try:
            payload = pickle.dumps(result)
        except Exception as exc:
            payload = pickle.dumps((False, HutchError(f"run_in: cannot send the result back: {exc}")))
        _write_all(write_fd, payload)
    except BaseException as exc:
        try:
            _write_all(write_fd, pickle.dumps((False, exc if isinstance(exc, HutchError)
                                               else HutchError(f"run_in: {exc}"))))
        except BaseException:
            code = 1
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
