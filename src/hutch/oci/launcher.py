"""The one process-launch path for `run`, `create` and `exec` (parent side).

The parent forks stage 1 (see init.py), writes the user-namespace id maps when
asked, puts the child in its cgroup before it can unshare a cgroup namespace,
runs the runtime-namespace hooks at the point the spec says, and returns the
container process's pid once it is ready (waiting for `start`, or exec'd).
"""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)
from hutch.record import dataclass, field

from hutch import syscall as hsys
from hutch.errors import ConfigError, HutchError, StateError
from hutch.ns import join as ns_join
from hutch.ns.join import close_all  # noqa: F401  (the one close_all; hutch.oci.container imports it from here)
from hutch.oci.channel import Channel, ChannelClosed, ChildError


@dataclass
class Launch:
    """Everything the children need; built by the caller, read after fork."""
    spec: dict
    bundle: str
    container_id: str
    mode: str                          # "create" (waits on exec.fifo), "foreground", "exec"
    console_fd: int | None = None      # connected socket that receives the pty master
    preserve_fds: int = 0
    no_pivot: bool = False
    new_keyring: bool = True           # a session keyring of its own (runc's default)
    use_init: bool = False             # keep a minimal init as PID 1 (hutch run)
    ns_fds: dict = field(default_factory=dict)   # OCI type -> open fd of a namespace to join
    new_ns_flags: int = 0
    uid_maps: list = field(default_factory=list)
    gid_maps: list = field(default_factory=list)
    fifo_fd: int | None = None
    cgroup: object = None              # a hutch.cgroups manager, or None
    host_pid: int = 0                  # set by the parent for hooks that report it
    stdio: tuple | None = None         # fds to become the process's 0, 1, 2
    parent_setup: bool = False         # stop before pivot_root for the parent's setup stage
    warmer: object = None              # a cgroups.warm.AttachWarmer, stopped just before the fork
    # In a user namespace the runtime opens the bind sources (hutch.fs.sources):
    tree_fds: dict = field(default_factory=dict)   # mount index -> idmapped detached tree
    source_sock: int | None = None     # the children's end of the socket the sources come on


class NoSteps:
    """The parent's points in a launch (see spawn); `create` records ownership at each."""

    def pid(self, pid: int) -> None:
        """The container process exists (its namespaces too); nothing else is known yet."""

    def make_cgroup(self) -> None:
        """The cgroup it is about to join: `create` makes it now, while the container
        process builds its root filesystem (exec joins one that exists)."""

    def cgroup_joined(self) -> None:
        """It is in its cgroup."""

    def setup(self, pid: int) -> None:
        """The setup stage: its mounts are made, it has not pivoted, its program waits."""


def plan_namespaces(spec: dict) -> tuple[int, dict[str, str]]:
    """(flags to unshare, {type: path to join}) from linux.namespaces."""
    flags, paths = 0, {}
    for i, ns in enumerate((spec.get("linux") or {}).get("namespaces") or ()):
        ns_type = ns.get("type")
        if ns_type not in hsys.NAMESPACE_FLAGS:
            raise ConfigError(f"unknown namespace type {ns_type!r}", where=f"linux.namespaces[{i}].type")
        if ns.get("path"):
            paths[ns_type] = ns["path"]
        else:
            flags |= hsys.NAMESPACE_FLAGS[ns_type]
    return flags, paths


def open_namespaces(paths: dict[str, str], spec: dict) -> dict[str, int]:
    """Open every namespace to join now, before any setns changes what paths mean
    (hutch.ns.join.open_namespaces, keyed by OCI type; a failure names the spec entry)."""
    def error(ns_type: str, path: str, exc: OSError) -> HutchError:
        return ConfigError(f"cannot open namespace {path}: {exc.strerror}",
                           where=f"linux.namespaces[{_ns_index(spec, ns_type)}].path")
    return ns_join.open_namespaces(paths, error, canonical=False)


def _ns_index(spec: dict, ns_type: str) -> int:
    for i, ns in enumerate((spec.get("linux") or {}).get("namespaces") or ()):
        if ns.get("type") == ns_type:
            return i
    return -1


def container_ns_fds(pid: int, spec: dict) -> dict[str, int]:
    """For exec: fds of every namespace the container's init has that differs from ours."""
    differ = {}
    for ns_type, name in hsys.NAMESPACE_PROC_NAMES.items():
        path = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                differ[ns_type] = pid
        except FileNotFoundError:
            continue  # kernel without this namespace type
        except OSError as exc:
            raise HutchError(f"cannot open {path}: {exc.strerror}") from None

    def error(_ns_type: str, path: str, exc: OSError) -> HutchError:
        if isinstance(exc, FileNotFoundError):       # it died since the stat
            return StateError("container not running")
        return HutchError(f"cannot open {path}: {exc.strerror}")
    return ns_join.open_namespaces(differ, error, canonical=False)


class Started:
    """The container process as the parent sees it after a successful launch."""

    def __init__(self, pid: int, chan: Channel):
        self.pid = pid
        self.chan = chan

    def release(self) -> None:
        """Foreground mode: let the process exec (its errors still come on the channel)."""
        send(self.chan, "start")

    def exec_result(self) -> None:
        """Wait until the program was exec'd (EOF) or the child reports why not."""
        try:
            verb, payload = self.chan.recv()
            while verb == "started":      # the process tied itself to us; exec comes next
                verb, payload = self.chan.recv()
        except ChannelClosed:
            return
        finally:
            self.chan.close()
        if verb == "error":
            raise _as_hutch_error(ChildError.decode(payload))


def _as_hutch_error(err: ChildError) -> HutchError:
    return HutchError(err.message, where=err.where, exit_code=err.exit_code)


def spawn(launch: Launch, steps=None) -> Started:
    """Fork the container process and drive it to "ready".

    steps (see NoSteps) is told when the process exists, when it is in its cgroup,
    and -- with launch.parent_setup -- runs the parent-side setup stage while the
    process waits with its namespaces and mounts made, before pivot_root: network
    setup, then the prestart/createRuntime hooks in the runtime's namespaces."""
    steps = steps or NoSteps()
    sources_sock = _open_bind_sources(launch)
    try:
        from hutch.oci.init import preload_modules
        preload_modules(launch)
        return _spawn(launch, steps, sources_sock)
    finally:
        _close_bind_sources(launch, sources_sock)


def _open_bind_sources(launch: Launch) -> int | None:
    """In a user namespace, as real root: the idmapped binds' trees now (host namespaces),
    and a socket on which the plain binds' sources go once the mount namespace exists.
    Returns the parent's end of that socket (None when there is nothing to send)."""
    if launch.mode == "exec" or os.geteuid() != 0 or not launch.spec.get("mounts"):
        return None
    if not (launch.new_ns_flags & hsys.CLONE_NEWUSER or "user" in launch.ns_fds):
        return None
    from hutch.fs import sources
    entries = sources.bind_entries(launch.spec)
    launch.tree_fds = sources.open_idmapped_trees(launch.spec) if any(e[3] for e in entries) else {}
    if not any(not e[3] for e in entries):
        return None
    try:
        parent_end, launch.source_sock = sources.socketpair()
    except BaseException:
        _close_bind_sources(launch, None)
        raise
    return parent_end


def _close_bind_sources(launch: Launch, parent_end: int | None) -> None:
    """The parent's copies: the children have theirs once forked (or nobody needs them)."""
    for fd in launch.tree_fds.values():
        os.close(fd)
    launch.tree_fds = {}
    for fd in (parent_end, launch.source_sock):
        if fd is not None:
            os.close(fd)
    launch.source_sock = None


def _send_bind_sources(launch: Launch, sock: int, pid: int, chan: Channel) -> None:
    from hutch.fs.sources import send_sources
    try:
        send_sources(sock, pid, launch.spec)
    except (BrokenPipeError, ConnectionError):
        _raise_child_report(chan)
        raise HutchError("container process exited during setup") from None
    except HutchError:
        _raise_child_report(chan)   # it died first (its /proc/PID/root is gone): say why
        raise


def _spawn(launch: Launch, steps, sources_sock: int | None) -> Started:
    # Become the children's reaper so the container process (orphaned when stage 1
    # exits) stays ours to wait for; engines (conmon, shims) do the same above us.
    # Only until it is adopted: a library caller must not collect every later orphan.
    was_subreaper = hsys.get_child_subreaper()
    hsys.prctl(hsys.PR_SET_CHILD_SUBREAPER, 1)
    pid = stage1_pid = 0
    chan = Channel()
    try:
        if launch.warmer is not None:
            launch.warmer.stop()    # no thread of ours runs across the fork
        stage1_pid = _fork_stage1(launch, chan)
        chan.as_parent()
        if launch.new_ns_flags & hsys.CLONE_NEWUSER:
            chan.expect("userns")
            from hutch.ns.idmap import write_maps
            write_maps(stage1_pid, launch.uid_maps, launch.gid_maps)
        send(chan, "go")
        pid = int(chan.expect("pid"))
        launch.host_pid = pid
        steps.pid(pid)
        if sources_sock is not None:
            _send_bind_sources(launch, sources_sock, pid, chan)
        if launch.cgroup is not None:
            steps.make_cgroup()
            # The container process joins its cgroup while it builds its rootfs (the first
            # cgroup.procs write's RCU grace period was paid by the attach warmer, see
            # cgroups/warm.py).  Stage 2 waits for "cgroup" before it forks, unshares its
            # cgroup namespace, mounts cgroupfs, runs a hook or execs.
            _add_to_cgroup(launch.cgroup, pid, chan)
            steps.cgroup_joined()
            send(chan, "cgroup")
        _reap(stage1_pid)   # the container process is our child from here on
        if launch.mode != "exec" and launch.parent_setup:
            chan.expect("setup")
            steps.setup(pid)
            send(chan, "go")
        chan.expect("ready")
    except ChildError as err:
        _abort(stage1_pid, pid, chan)
        raise _as_hutch_error(err) from None
    except ChannelClosed:
        _abort(stage1_pid, pid, chan)
        raise HutchError("container process exited during setup") from None
    except BaseException:
        _abort(stage1_pid, pid, chan)
        raise
    finally:
        if not was_subreaper:
            hsys.prctl(hsys.PR_SET_CHILD_SUBREAPER, 0)
    if launch.mode == "create":
        chan.close()
    return Started(pid, chan)


def _fork_stage1(launch: Launch, chan: Channel) -> int:
    """Fork stage 1 non-dumpable with every signal blocked, restoring both in the parent."""
    from hutch.oci.init import stage1
    # Children enter the container non-dumpable: nothing inside can ptrace them or
    # open their /proc files while they still hold host resources.
    # (Not when rootless: an unprivileged parent could then not write the child's id maps;
    # stage 1 makes itself non-dumpable once they are written.)
    was_dumpable = hsys.prctl(hsys.PR_GET_DUMPABLE)
    if os.geteuid() == 0:
        hsys.prctl(hsys.PR_SET_DUMPABLE, 0)
    # No signal may interrupt the child before it is inside stage 1's guard: a
    # KeyboardInterrupt there would unwind into the caller's code in the child.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                stage1(launch, chan)
            finally:
                os._exit(1)  # not reached: stage 1 ends in exec or _exit; never return into the caller
        return pid
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if was_dumpable:
            hsys.prctl(hsys.PR_SET_DUMPABLE, was_dumpable)


def send(chan: Channel, verb: str) -> None:
    """Send to the child; if it is gone, raise its own report (or say it died)."""
    try:
        chan.send(verb)
    except BrokenPipeError:
        _raise_child_report(chan)
        raise HutchError("container process exited during setup") from None


def _add_to_cgroup(manager, pid: int, chan: Channel) -> None:
    try:
        manager.add_pid(pid)
    except HutchError:
        _raise_child_report(chan)   # a container process that died first says why
        raise


def _raise_child_report(chan: Channel) -> None:
    """If the child already reported an error on the channel, raise it (never blocks long)."""
    import select
    if not select.select([chan.fds()[0]], [], [], 0.1)[0]:
        return
    try:
        verb, payload = chan.recv()
    except ChannelClosed:
        return
    if verb == "error":
        raise ChildError.decode(payload)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _abort(stage1_pid: int, pid: int, chan: Channel) -> None:
    """Kill whatever was started; wait so that nothing is left running.  The channel is
    closed only after the kill: a child seeing its end of file first would print a
    stray "ChannelClosed" on the container's stderr before it died."""
    for p in (pid, stage1_pid):
        if p:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    chan.close()
    for p in (stage1_pid, pid):
        if p:
            _reap(p)


def wait_status(pid: int) -> int:
    """Wait for pid (our child: the adopted container process); a shell-style exit code."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            raise HutchError(f"lost track of process {pid}: its exit status is unknown") from None
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)

