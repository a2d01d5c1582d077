"""The container side of the launch: code that runs in forked children.

Process chain (the parent is hutch itself, see launcher.py)::

    parent ──fork──> stage 1: joins/unshares namespaces (user first; the parent
                     │          writes the id maps), then forks and exits
                     └─fork──> stage 2: the container's first process (PID 1 in a
                                new pid namespace): rootfs, hostname, console,
                                waits for `start`, then execs the user program
                                (or, with `init`, forks it and stays as a reaper)

Stage 1 must fork because a new pid or time namespace applies only to children.
Nothing here may return into the caller's code: every path ends in exec or
os._exit, and errors travel to the parent over the channel.
"""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)

from hutch import syscall as hsys
from hutch.errors import HutchError
from hutch.ns.join import become_root_in_userns
from hutch.oci.channel import Channel, ChildError

# Signals the minimal init passes on to the user process.
FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)


def _report_and_exit(chan: Channel, exc: BaseException) -> None:
    """Send the error to the parent (if it listens) and end this process.

    Never raises: a child that unwound into the caller's code would go on running
    the runtime's own logic (cleanup, state writes) from inside the container."""
    code = 1
    try:
        if isinstance(exc, HutchError):
            err = ChildError(exc.message, exc.exit_code, exc.where)
        elif isinstance(exc, ChildError):
            err = exc
        else:
            err = ChildError(f"{type(exc).__name__}: {exc}")
        code = err.exit_code or 1
        try:
            chan.send("error", err.encode())
        except OSError:
            # Nobody listens any more (a created container whose `create` has returned):
            # the container's stderr is the only place left to say it.
            os.write(2, f"hutch: {(err.where + ': ') if err.where else ''}{err.message}\n".encode())
    except BaseException:  # noqa: BLE001
        pass
    finally:
        os._exit(code)


def stage1(launch, chan: Channel) -> None:
    """Enter the namespaces, fork the container process, report its pid, exit."""
    try:
        chan.as_child()
        close_unneeded_fds(launch, chan)
        fds = launch.ns_fds
        if "user" in fds:
            hsys.setns(fds["user"], hsys.CLONE_NEWUSER, "user")
        if launch.new_ns_flags & hsys.CLONE_NEWUSER:
            hsys.unshare(hsys.CLONE_NEWUSER)
            chan.send("userns")
        chan.expect("go")
        # The id maps are written: from here on nothing may ptrace us or open our /proc
        # files (a rootless parent could not set this earlier: it had to write our maps).
        hsys.prctl(hsys.PR_SET_DUMPABLE, 0)
        if "user" in fds or launch.new_ns_flags & hsys.CLONE_NEWUSER:
            become_root_in_userns()
        for ns_type in hsys.NAMESPACE_JOIN_ORDER[1:]:     # the user namespace was first
            if ns_type in fds:
                hsys.setns(fds[ns_type], hsys.NAMESPACE_FLAGS[ns_type], ns_type)
        flags = launch.new_ns_flags & ~hsys.CLONE_NEWUSER
        if launch.cgroup is not None:
            # Stage 2 unshares the cgroup namespace once the parent has put it in its
            # cgroup (see join_cgroup), so that the namespace's root is that cgroup.
            flags &= ~hsys.CLONE_NEWCGROUP
        if flags:
            hsys.unshare(flags)
        if flags & hsys.CLONE_NEWTIME:
            write_time_offsets(launch.spec)
        if flags & hsys.CLONE_NEWNET:
            from hutch.ns.loopback import bring_up_loopback
            bring_up_loopback()
        for fd in fds.values():
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            if launch.mode == "exec":
                exec_stage2(launch, chan)
            else:
                stage2(launch, chan)
        chan.send("pid", str(pid))
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - a child must never unwind into the caller
        _report_and_exit(chan, exc)


def close_unneeded_fds(launch, chan: Channel) -> None:
    """Close every fd the container does not need: above all the caller's lock on the
    container directory (a flock shared with us would outlive the caller), and any
    host directory that could be used to escape (CVE-2024-21626)."""
    keep = {0, 1, 2, *range(3, 3 + launch.preserve_fds), *chan.fds(), *launch.ns_fds.values(),
            *launch.tree_fds.values()}
    keep.update(fd for fd in (launch.fifo_fd, launch.console_fd, launch.source_sock) if fd is not None)
    keep.update(launch.stdio or ())
    start = 0
    for fd in sorted(keep) + [0x7FFFFFFF]:
        if fd > start:
            hsys.close_range(start, fd - 1)
        start = fd + 1


def write_time_offsets(spec: dict) -> None:
    offsets = (spec.get("linux") or {}).get("timeOffsets") or {}
    lines = []
    for clock in ("monotonic", "boottime"):
        if clock in offsets:
            entry = offsets[clock]
            lines.append(f"{clock} {int(entry.get('secs', 0))} {int(entry.get('nanosecs', 0))}")
    if lines:
        try:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as exc:
            raise HutchError(f"cannot set time offsets: {exc.strerror}", where="linux.timeOffsets") from None


def stage2(launch, chan: Channel) -> None:
    """The container's first process: build its world, wait for start, exec."""
    try:
        os.setsid()
        if launch.stdio:
            for target, fd in enumerate(launch.stdio):
                if fd != target:
                    os.dup2(fd, target)
        spec = launch.spec
        if launch.new_ns_flags & hsys.CLONE_NEWUSER:
            # Nothing else runs in this new user namespace yet; the process must be able to
            # read its own /proc files, which a non-dumpable process there cannot.
            hsys.prctl(hsys.PR_SET_DUMPABLE, 1)
        set_names(spec)
        if launch.new_keyring:
            join_own_keyring(launch.container_id)
        from hutch.fs.rootfs import enter_rootfs, finish_rootfs, prepare_rootfs
        in_userns = bool(launch.new_ns_flags & hsys.CLONE_NEWUSER) or "user" in launch.ns_fds

        joined: list = []
        source_fds = {}
        if launch.source_sock is not None:
            # Bind sources the runtime opened in our mount namespace (hutch.fs.sources).
            from hutch.fs.sources import recv_sources
            source_fds = recv_sources(launch.source_sock)
            launch.source_sock = None
        rootfs = prepare_rootfs(spec, launch.bundle, in_userns=in_userns, console_path=None,
                                before_cgroup=lambda: join_cgroup(launch, chan, joined),
                                source_fds=source_fds, tree_fds=launch.tree_fds)
        join_cgroup(launch, chan, joined)
        # The parent's setup stage (network setup, then the prestart/createRuntime hooks
        # in the runtime's namespaces) and createContainer (here) come after the mounts,
        # before pivot_root, as the spec places the hooks.
        if launch.parent_setup:
            chan.send("setup")
            chan.expect("go")
        run_container_hooks(spec, "createContainer", launch, os.getpid())
        enter_rootfs(spec, rootfs, no_pivot=launch.no_pivot)
        console = None
        if launch.console_fd is not None:
            from hutch.oci.console import setup_container_console
            size = (spec["process"].get("consoleSize") or {})
            console = setup_container_console(
                launch.console_fd, (size["height"], size["width"]) if size else None)
            os.close(launch.console_fd)
        finish_rootfs(spec)
        # The console becomes stdio now, not after start: the caller's stdio (an engine's
        # pipe) must not stay open in a process that may wait a long time for `start`.
        exe, env, plan = prepare_program(spec, console)
        hsys.prctl(hsys.PR_SET_DUMPABLE, 0)   # setup done; start may be long after
        wait_for_start(launch, chan)
        run_container_hooks(spec, "startContainer", launch, os.getpid())
        if launch.use_init:
            become_init(launch, chan, exe, env, plan)
        finalize_and_exec(launch, exe, env, plan)
    except BaseException as exc:  # noqa: BLE001
        _report_and_exit(chan, exc)


def exec_stage2(launch, chan: Channel) -> None:
    """A process joining a running container (`exec`): no rootfs work, just the process."""
    try:
        os.setsid()
        spec = launch.spec
        if launch.new_keyring:
            # runc's exec joins the container's keyring by its name (init made it).
            join_own_keyring(launch.container_id)
        console = None
        if launch.console_fd is not None:
            size = (spec["process"].get("consoleSize") or {})
            # The container's devpts is mounted at /dev/pts; its /dev/console stays as it is.
            from hutch.oci.console import open_pty, send_fd, set_size
            master, console, name = open_pty()
            if size:
                set_size(console, size["height"], size["width"])
            send_fd(launch.console_fd, master, name)
            os.close(master)
            os.close(launch.console_fd)
        exe, env, plan = prepare_program(spec, console)
        join_cgroup(launch, chan, [])
        chan.send("ready")
        finalize_and_exec(launch, exe, env, plan)
    except BaseException as exc:  # noqa: BLE001
        _report_and_exit(chan, exc)


def join_cgroup(launch, chan: Channel, joined: list) -> None:
    """Wait until the parent has put this process in the container's cgroup, then unshare
    the cgroup namespace when the spec asks for a new one.  Runs once (`joined` records it),
    before this process forks, mounts cgroupfs, runs hooks or execs."""
    if launch.cgroup is None or joined:
        return
    joined.append(True)
    chan.expect("cgroup")
    if launch.new_ns_flags & hsys.CLONE_NEWCGROUP:
        hsys.unshare(hsys.CLONE_NEWCGROUP)


def preload_modules(launch) -> None:
    """Import, before forking, what the children need: once they are in the
    container (pivoted root, or uid 0 of a user namespace that cannot read the
    host's Python install) the host's Python files are out of reach."""
    spec = launch.spec
    process = spec.get("process") or {}
    names = ["resource", "hutch.oci.process", "hutch.security.process",
             "hutch.syscall.mountapi"]   # security.process checks /proc files with it
    # Only what this launch uses: an exec builds no rootfs and unshares no network.
    if launch.mode != "exec":
        names.append("hutch.fs.rootfs")
    if launch.source_sock is not None:
        names += ["hutch.fs.sources", "_socket"]
    if launch.new_ns_flags & hsys.CLONE_NEWNET:
        names.append("hutch.ns.loopback")
    if (spec.get("linux") or {}).get("seccomp"):
        names += ["hutch.security.seccomp", "hutch.syscall.seccomp"]
    if process.get("scheduler"):
        names.append("hutch.syscall.sched")
    if (spec.get("linux") or {}).get("memoryPolicy"):
        names.append("hutch.syscall.mm")
    if launch.console_fd is not None:
        names += ["hutch.oci.console", "socket", "array"]
    if (spec.get("hooks") or {}).get("startContainer"):
        names += ["hutch.oci.hooks", "hutch.oci.state", "json"]
    for name in names:
        try:
            __import__(name)
        except ImportError:
            pass  # optional module absent: the step that needs it reports the problem


def prepare_program(spec: dict, console: int | None):
    """Inside the container: cwd, environment, the executable's path and the early
    process attributes; the console (if any) becomes the controlling tty and stdio.
    Returns (executable, environment, security plan) for finalize_and_exec."""
    from hutch.oci.process import exec_environment, find_executable
    from hutch.security.process import prepare_process
    process = spec["process"]
    enter_cwd(process.get("cwd") or "/")
    env = exec_environment(process)
    exe = find_executable(process["args"][0], env)
    plan = prepare_process(process, spec.get("linux") or {})
    if console is not None:
        from hutch.oci.console import make_controlling
        make_controlling(console)
    return exe, env, plan


def join_own_keyring(container_id: str) -> None:
    """A session keyring of the container's own: keyrings are not namespaced, and the
    caller's session keyring may hold its secrets (runc does the same)."""
    from hutch.errors import SysCallError
    try:
        serial = hsys.join_session_keyring(f"_ses.{container_id}")   # the name runc gives it
        # A new session keyring's default permissions (possessor all; user view, read,
        # link) plus user search, as runc sets them: `exec` finds and joins it by name.
        hsys.syscall("keyctl", 5, serial, 0x3F130000 | 0x00080000, detail="setperm")  # KEYCTL_SETPERM
    except SysCallError as err:
        if err.errno not in (38, 1):   # ENOSYS, EPERM (keyctl filtered by a seccomp sandbox)
            raise


def set_names(spec: dict) -> None:
    if spec.get("hostname"):
        hsys.sethostname(spec["hostname"])
    if spec.get("domainname"):
        hsys.setdomainname(spec["domainname"])


def enter_cwd(cwd: str) -> None:
    """chdir inside the (pivoted) container root; refuse a cwd outside of it.

    After pivot_root "/" is the container's root, so the path cannot resolve to the
    host; the check catches an inherited directory fd used as cwd (CVE-2024-21626)."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise HutchError(f"cannot enter working directory {cwd}: {exc.strerror}", where="process.cwd") from None
    if not os.getcwd().startswith("/"):
        raise HutchError(f"working directory {cwd} is outside the container", where="process.cwd")


def run_container_hooks(spec: dict, name: str, launch, pid: int) -> None:
    if (spec.get("hooks") or {}).get(name):
        from hutch.oci.hooks import run_hooks
        from hutch.oci.state import oci_state
        run_hooks(spec, name, oci_state(launch.container_id,
                                        "creating" if name == "createContainer" else "created",
                                        launch.host_pid or pid, launch.bundle, spec.get("annotations")))


def wait_for_start(launch, chan: Channel) -> None:
    """Tell the parent we are ready, then block until `start` (fifo) or the parent says go."""
    if launch.mode == "create":
        fifo_fd = launch.fifo_fd
        chan.send("ready")
        chan.close()
        # Opening for write blocks until `hutch start` opens the fifo for reading.
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(fifo_fd)
    else:
        chan.send("ready")
        chan.expect("start")
        # Attached runs: stage 1 is gone and we are the caller's child now, so tie our
        # life to it. A SIGKILLed `hutch run` must not leave its container running.
        hsys.prctl(hsys.PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            # Only the caller reads this pipe: if it died before PDEATHSIG was set, this fails.
            chan.send("started")
        except OSError:
            os._exit(137)


def finalize_and_exec(launch, exe: str, env: dict, plan) -> None:
    from hutch.security.process import finalize_process
    process = launch.spec["process"]
    keep = 3 + launch.preserve_fds
    for fd in range(3, keep):
        os.set_inheritable(fd, True)
    # Everything else closes on exec: the sync pipes, the fifo, any host directory.
    hsys.close_range(keep, 0xFFFFFFFF, hsys.CLOSE_RANGE_CLOEXEC)
    finalize_process(process, launch.spec.get("linux") or {}, plan)
    try:
        os.execve(exe, process["args"], env)
    except OSError as exc:
        from hutch.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND
        code = EXIT_NOT_FOUND if exc.errno == 2 else EXIT_NOT_EXECUTABLE
        raise HutchError(f"exec {exe}: {exc.strerror}", exit_code=code) from None


def forward_signals(pid: int, signals) -> None:
    """Pass each of `signals` we receive on to pid."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in signals:
        signal.signal(sig, forward)


def drop_init_privileges() -> None:
    """PID 1 lives as long as the container and only waits and forwards signals: keep
    CAP_KILL (the program may run as another uid), nothing else; no new privileges;
    not dumpable, so nothing in the container can ptrace it or open /proc/1/exe."""
    from hutch.security.caps import CAPABILITIES, last_cap
    kill = 1 << CAPABILITIES["CAP_KILL"]
    for cap in range(last_cap() + 1):
        if cap != CAPABILITIES["CAP_KILL"]:
            hsys.prctl(hsys.PR_CAPBSET_DROP, cap)
    hsys.capset(kill, kill, 0)
    hsys.prctl(hsys.PR_SET_NO_NEW_PRIVS, 1)
    hsys.prctl(hsys.PR_SET_DUMPABLE, 0)


def become_init(launch, chan: Channel, exe: str, env: dict, plan) -> None:
    """Fork the user program and stay as PID 1: forward signals, reap zombies.

    Exits with the program's status (128+N if a signal N killed it), since PID 1
    cannot be killed by the signals it forwards."""
    child = os.fork()
    if child == 0:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        finalize_and_exec(launch, exe, env, plan)
    chan.close()
    hsys.set_name("hutch-init")
    drop_init_privileges()

    forward_signals(child, FORWARDED_SIGNALS)
    hsys.close_range(3, 0xFFFFFFFF)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.waitstatus_to_exitcode(status))
