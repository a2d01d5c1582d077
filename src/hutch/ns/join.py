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

from hutch.errors import ConfigError, HutchError, NotFoundError, SysCallError
from hutch.ns.names import CLONE_FLAGS, NS_TYPES, namespace_type, proc_name

# This module is on the container start path (hutch.oci opens and joins namespaces
# through it): it imports nothing heavy, and hutch.ns.info (re) only where needed.

# The table's join order (see hutch.syscall.constants.NAMESPACES): user first, so that
# a namespace it owns may be joined with its rights; mnt last, as it changes our root
# and cwd.  (util-linux nsenter joins time after mnt; either way is the same, every fd
# being open before the first setns.)
ENTER_ORDER = NS_TYPES
# A thread can come back from these with setns(saved fd); not from mnt (shared by all
# threads) nor user (a process that joined one has no rights left in its parent).
REVERSIBLE = tuple(t for t in NS_TYPES if t not in ("mnt", "user"))


def _open_ns(path: str, ns_type: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"cannot open {path}: no such process or file", where=what) from None
    except OSError as err:
        raise SysCallError("open", err.errno, path) from None


def namespace_path(target: int | str, ns_type: str) -> str:
    """The nsfs file for target: a pid's /proc/PID/ns/TYPE, or a path given as is.
    ns_type in either vocabulary (net or network)."""
    return f"/proc/{target}/ns/{proc_name(ns_type)}" if isinstance(target, int) else target


def open_namespaces(targets: dict[str, int | str], on_error=None, *,
                    canonical: bool = True) -> dict[str, int]:
    """Open each namespace {type: pid or nsfs path} before any setns (as nsenter does:
    /proc/PID may not be reachable any more once we are inside).  All or nothing: on a
    failure the ones already open are closed.

    canonical: key the result by hutch.ns's type names, each checked against this
    kernel (OCI aliases accepted); with False the keys stay as given (the launcher's
    OCI types, checked by plan_namespaces).  on_error(ns_type, path, oserror) -> the
    HutchError to raise, for a caller that names the failure its own way (the
    launcher: the spec's linux.namespaces[i].path); by default NotFoundError for a
    missing file or process, else SysCallError."""
    fds: dict[str, int] = {}
    try:
        for ns_type, target in targets.items():
            if canonical:
                ns_type = namespace_type(ns_type)
            path = namespace_path(target, ns_type)
            if on_error is None:
                fds[ns_type] = _open_ns(path, ns_type, ns_type)
                continue
            try:
                fds[ns_type] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise on_error(ns_type, path, err) from None
    except BaseException:
        close_all(fds)
        raise
    return fds


def close_all(fds: dict[str, int]) -> None:
    """Close every fd still open in fds (joined ones are -1) and empty it."""
    for fd in fds.values():
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
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


def setgroups_denied(proc_dir_fd: int | None = None) -> bool:
    """True if our user namespace forbids setgroups(2): /proc/self/setgroups reads "deny".

    proc_dir_fd: our /proc/PID directory opened beforehand, for a caller that may have
    joined another mount namespace (whose /proc need not show us).  The file says what
    our user namespace allows at the time it is opened.  Unreadable counts as allowed."""
    try:
        fd = (os.open("setgroups", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_dir_fd)
              if proc_dir_fd is not None else os.open("/proc/self/setgroups", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        return False
    try:
        return os.read(fd, 64).strip() == b"deny"
    finally:
        os.close(fd)


def become_root_in_userns(proc_dir_fd: int | None = None) -> None:
    """In a user namespace whose id maps are written: become uid/gid 0 there and drop
    the supplementary groups (the OCI runtime's stage 1, run_in's child).

    Rule (fail closed): setresgid(0), setgroups([]) and setresuid(0) must all succeed,
    with one exception: setgroups may fail when the namespace forbids it
    (/proc/self/setgroups is "deny", as it must be before an unprivileged writer, such
    as a rootless `hutch run`, can write a single-id gid_map).  Then the kernel keeps
    the groups we had and no process in the namespace can ever change them: there is
    nothing to drop and nothing to gain, so going on is safe.  Any other failure (0
    unmapped, setgroups refused although allowed, e.g. for want of CAP_SETGID) would
    leave us with host ids or groups the caller meant to give up: an error.
    proc_dir_fd: see setgroups_denied."""
    step = "setresgid(0)"
    try:
        os.setresgid(0, 0, 0)
        step = "setgroups([])"
        try:
            os.setgroups([])
        except PermissionError:
            if not setgroups_denied(proc_dir_fd):
                raise
        step = "setresuid(0)"
        os.setresuid(0, 0, 0)
    except OSError as err:
        why = (" (the user namespace does not deny setgroups, so our groups may not stay)"
               if isinstance(err, PermissionError) and step == "setgroups([])" else "")
        raise HutchError(f"cannot become root in the user namespace: {step}: {err.strerror}{why}",
                         where="user namespace") from None


def same_namespace(pid: int, ns_type: str) -> bool:
    """True if process pid is in our own namespace of ns_type."""
    try:
        mine = os.stat(f"/proc/self/ns/{ns_type}")
        theirs = os.stat(f"/proc/{pid}/ns/{ns_type}")
    except OSError:
        return False
    return (mine.st_ino, mine.st_dev) == (theirs.st_ino, theirs.st_dev)


def enter(target: int | str, ns_type: str):
    """Run the block with the calling thread in target's namespace of ns_type.

    target: a pid or an nsfs path (/run/netns/NAME).  On exit the thread returns
    to the namespace it was in, even if the block raised.  mnt and user cannot
    be undone this way: use run_in()."""
    from contextlib import contextmanager      # not at import: this module is on the start path
    return contextmanager(_enter)(target, ns_type)


def _enter(target: int | str, ns_type: str):
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
        # Our /proc/PID dir, opened while /proc is ours: once in the target's mount
        # namespace, its /proc (of another pid namespace) may not show us.
        proc_dir = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if joined_user else None
        setns_all(fds)
        if joined_user:
            become_root_in_userns(proc_dir)
            os.close(proc_dir)
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
