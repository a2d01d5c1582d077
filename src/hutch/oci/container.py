"""Container lifecycle: create, start, run, state, kill, delete, exec.

One function per verb, each taking the runtime root and the container id, the
way runc's commands do; the CLI and the Python API are thin layers over these.
State changes happen under the container's lock and are written by rename.
"""

from __future__ import annotations

import os
import sys
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)
import time

from hutch import fastjson
from hutch.errors import ConfigError, HutchError, StateError, SysCallError
from hutch.oci import state as st
from hutch.faults import step
from hutch.record import dataclass
from hutch.syscall import proc

FIFO_NAME = "exec.fifo"
CONFIG_COPY = "config.json"


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def load_bundle_config(bundle: str) -> dict:
    from hutch.oci.validate import load_config, validate_config
    return validate_config(load_config(bundle), bundle)


def check_terminal(spec: dict, console_socket: str | None, console_fd: int | None, foreground: bool) -> None:
    """A detached terminal needs somewhere to send the pty; a console socket needs a terminal."""
    terminal = bool(spec["process"].get("terminal"))
    if terminal and console_socket is None and console_fd is None and not foreground:
        raise ConfigError("cannot allocate a tty when detaching without --console-socket",
                          where="process.terminal")
    if console_socket is not None and not terminal:
        raise ConfigError("cannot use --console-socket without process.terminal", where="--console-socket")


def check_before_create(spec: dict, bundle: str) -> None:
    """Every check that needs no side effect, so bad input fails before anything exists."""
    from hutch.fs.rootfs import ensure_host_root_placeholder, validate_fs
    from hutch.security.process import validate as validate_process
    namespaces = {ns.get("type"): ns.get("path") for ns in (spec.get("linux") or {}).get("namespaces") or ()}
    if "mount" not in namespaces:
        # The root filesystem is built with mounts and pivot_root: in the caller's mount
        # namespace it would replace the caller's root (runc does that: it mounts the rootfs
        # there and makes the caller's / private).  hutch refuses.
        raise ConfigError("a mount namespace is required: without one the rootfs would be "
                          "mounted and pivoted in the caller's namespace (runc does that, and "
                          "makes the caller's / private); add {\"type\": \"mount\"}",
                          where="linux.namespaces")
    if namespaces["mount"]:
        from hutch.fs.rootfs import check_joinable_mount_namespace
        index = [ns.get("type") for ns in spec["linux"]["namespaces"]].index("mount")
        check_joinable_mount_namespace(namespaces["mount"], f"linux.namespaces[{index}].path")
    validate_fs(spec, bundle)
    validate_process(spec.get("process"), spec.get("linux"))
    if spec["root"]["path"] == "hutch:host":
        # Made here, as the host's root: a user namespace's root could not make it.
        ensure_host_root_placeholder()


def rootfs_path(spec: dict, bundle: str) -> str:
    path = spec["root"]["path"]
    if path.startswith("hutch:"):
        return path
    return path if os.path.isabs(path) else os.path.join(bundle, path)


def _cgroup_manager(spec: dict, container_id: str, systemd: bool):
    """The container's cgroup manager, or None when the spec asks for nothing and no
    cgroupsPath (hutch run without limits skips cgroups to start faster)."""
    linux = spec.get("linux") or {}
    from hutch import cgroups
    manager = cgroups.for_container(container_id, linux.get("cgroupsPath"), systemd=systemd,
                                    annotations=spec.get("annotations"))
    resources = dict(linux.get("resources") or {})
    # No device rules still means runc's: deny-all but the default devices.
    resources.setdefault("devices", [])
    if linux.get("devices"):
        # Device nodes the config creates must also be allowed (runc adds these rules).
        resources["devices"] = list(resources.get("devices") or []) + cgroups.device_rules_for(linux["devices"])
    manager.validate(resources)
    return manager, resources


def _id_maps(spec: dict):
    from hutch.ns.idmap import from_oci
    linux = spec.get("linux") or {}
    return (from_oci(linux.get("uidMappings"), "linux.uidMappings"),
            from_oci(linux.get("gidMappings"), "linux.gidMappings"))


def prepare_launch(spec: dict, bundle: str, container_id: str, mode: str, **kw):
    from hutch import syscall as hsys
    from hutch.oci.launcher import Launch, open_namespaces, plan_namespaces
    flags, paths = plan_namespaces(spec)
    uid_maps, gid_maps = _id_maps(spec)
    if flags & hsys.CLONE_NEWUSER and not (uid_maps and gid_maps):
        raise ConfigError("a new user namespace needs uidMappings and gidMappings", where="linux.uidMappings")
    launch = Launch(spec=spec, bundle=bundle, container_id=container_id, mode=mode,
                    new_ns_flags=flags, uid_maps=uid_maps, gid_maps=gid_maps, **kw)
    launch.ns_fds = open_namespaces(paths, spec)
    return launch


@dataclass
class CreateOptions:
    """How to create a container (runc's create flags, and what `run` and the API add)."""
    console_socket: str | None = None
    pid_file: str | None = None
    preserve_fds: int = 0
    no_pivot: bool = False
    no_new_keyring: bool = False
    systemd_cgroup: bool = False
    foreground: bool = False            # wait on the channel; the caller releases it (run)
    use_init: bool = False              # a minimal init stays PID 1 (hutch run)
    console_fd: int | None = None       # a socket that receives the pty master
    cgroup: bool = True                 # False: no cgroup when the spec asks for no limits
    stdio: tuple | None = None          # fds to become the container's 0, 1, 2
    setup: tuple = ()                   # parent-side setup steps: fn(SetupContext), in order


class SetupContext:
    """What a parent-side setup step gets: the container process exists with its
    namespaces (/proc/PID/ns/*), its program has not started.  Whatever the step makes
    must be recorded with own() *before* it is made, so delete (also after a crash)
    undoes it."""

    def __init__(self, root: str, state: st.State, pid: int, spec: dict):
        self.root, self.state, self.pid, self.spec = root, state, pid, spec

    def own(self, entry: dict) -> dict:
        return st.own(self.root, self.state, entry)


class _CreateSteps:
    """The parent's part of the launch for `create`: each point where the container comes
    to own something is written to its state before the next step (see launcher.spawn)."""

    def __init__(self, root: str, state: st.State, manager, resources: dict | None, spec: dict,
                 setup: tuple):
        self.root, self.state, self.manager, self.resources = root, state, manager, resources
        self.spec, self.setup_steps = spec, setup

    def pid(self, pid: int) -> None:
        self.state.pid = pid
        self.state.pid_start = proc.start_time(pid)
        st.own(self.root, self.state, {"kind": "process", "pid": pid, "start": self.state.pid_start})
        step("create.pid-recorded")

    def make_cgroup(self) -> None:
        # Made now, while the container process builds its root filesystem: it joins the
        # cgroup (next step) before it unshares a cgroup namespace or runs anything.
        _make_cgroup(self.root, self.state, self.manager, self.resources)

    def cgroup_joined(self) -> None:
        # what placing the process made too (a systemd unit, v1 hierarchies systemd skips)
        st.own(self.root, self.state, {"kind": "cgroup", **self.manager.to_state()})
        step("create.cgroup-joined")

    def setup(self, pid: int) -> None:
        context = SetupContext(self.root, self.state, pid, self.spec)
        for setup_step in self.setup_steps:
            setup_step(context)
        _prestart_hooks(self.spec, self.state, pid)
        step("create.setup-done")


def create(root: str, container_id: str, bundle: str, options: CreateOptions | None = None,
           spec: dict | None = None) -> tuple[st.State, object]:
    """Create the container: everything set up, the process waiting before the user program.

    Returns the saved state and the launch handle (`Started`).  With
    options.foreground the process waits on the channel instead of the fifo and the
    caller releases it (used by `run` when it stays attached).  Everything the
    container owns is in its journal before it is made (owned.py): a failure undoes
    it here, a crash leaves what `delete --force` undoes."""
    o = options or CreateOptions()
    warmer = _start_warming(o.cgroup)
    try:
        return _create(root, container_id, bundle, o, spec, warmer)
    finally:
        if warmer is not None:
            warmer.stop()


def _start_warming(enabled: bool):
    """Pay the first cgroup attach's grace period now, beside the work before the fork
    (cgroups/warm.py: 6-16 ms here, otherwise spent waiting after it)."""
    from hutch.cgroups.warm import start_warming
    return start_warming(enabled)


def _create(root: str, container_id: str, bundle: str, o: CreateOptions, spec: dict | None,
            warmer) -> tuple[st.State, object]:
    bundle = os.path.abspath(bundle)
    st.validate_id(container_id)
    check_preserved_fds(o.preserve_fds)
    spec = spec if spec is not None else load_bundle_config(bundle)
    check_before_create(spec, bundle)
    check_terminal(spec, o.console_socket, o.console_fd, o.foreground)
    manager, resources = (_cgroup_manager(spec, container_id, o.systemd_cgroup) if o.cgroup else (None, None))
    networking = _network_plan(root, container_id, spec)
    setup = o.setup + ((networking.step,) if networking else ())
    with st.locked(root, container_id, create=True) as directory:
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise ConfigError(f"container with id {container_id} already exists", where="container id") from None
        step("create.dir")
        state = _new_state(container_id, bundle, spec, o)
        from hutch.oci.launcher import close_all, spawn
        launch = None
        sock_fd = fifo_fd = None
        try:
            if networking:
                spec = networking.add_files(directory, spec)    # /etc/hosts, resolv.conf
            _write_json(os.path.join(directory, CONFIG_COPY), spec)
            st.save(root, state)
            step("create.state")
            if manager is not None:
                _check_cgroup_free(state, manager)
            if not o.foreground:
                fifo_fd = _make_fifo(directory)
            console_fd = o.console_fd
            if o.console_socket:
                sock_fd = console_fd = _connect_console(o.console_socket)
            launch = prepare_launch(spec, bundle, container_id, "foreground" if o.foreground else "create",
                                    console_fd=console_fd, preserve_fds=o.preserve_fds, no_pivot=o.no_pivot,
                                    new_keyring=not o.no_new_keyring, use_init=o.use_init, fifo_fd=fifo_fd,
                                    cgroup=manager, stdio=o.stdio, warmer=warmer,
                                    parent_setup=bool(setup) or _has_pre_pivot_hooks(spec))
            started = spawn(launch, _CreateSteps(root, state, manager, resources, spec, setup))
            step("create.ready")
            state.status = "created"
            st.save(root, state)
            step("create.saved")
            if o.pid_file:
                write_pid_file(o.pid_file, started.pid)
        except BaseException:
            _remove(root, state, spec=None, warn=_warn)
            raise
        finally:
            if launch is not None:
                close_all(launch.ns_fds)
            if fifo_fd is not None:
                os.close(fifo_fd)
            if sock_fd is not None:
                os.close(sock_fd)
    return state, started


def _new_state(container_id: str, bundle: str, spec: dict, o: CreateOptions) -> st.State:
    return st.State(id=container_id, bundle=bundle, status="creating", created=_now(),
                    owner="root" if os.geteuid() == 0 else str(os.geteuid()),
                    rootfs=rootfs_path(spec, bundle),
                    annotations=spec.get("annotations") or {}, config_path=CONFIG_COPY,
                    systemd_cgroup=o.systemd_cgroup,
                    hooks=sorted(kind for kind, hooks in (spec.get("hooks") or {}).items() if hooks),
                    namespaces={ns["type"]: ns.get("path") or "new"
                                for ns in (spec.get("linux") or {}).get("namespaces") or ()})


def _network_plan(root: str, container_id: str, spec: dict):
    """The container's networks (net/attach.py), checked; None when it asks for none.
    The net package is imported only then."""
    if "org.hutch.networks" not in (spec.get("annotations") or {}) and \
            "org.hutch.publish" not in (spec.get("annotations") or {}):
        return None
    from hutch.net.attach import plan
    return plan(root, container_id, spec)


def _check_cgroup_free(state: st.State, manager) -> None:
    if manager.exists() and manager.pids():
        # Another container (maybe of another runtime root) lives there;
        # delete --force would kill its processes.
        raise StateError(f"cgroup of container {state.id} already holds processes",
                         where="linux.cgroupsPath")


def _make_cgroup(root: str, state: st.State, manager, resources: dict) -> None:
    st.own(root, state, {"kind": "cgroup", **manager.to_state()})
    step("create.cgroup-recorded")
    manager.create()
    st.own(root, state, {"kind": "cgroup", **manager.to_state()})
    manager.apply(resources)
    step("create.cgroup-made")


def _make_fifo(directory: str) -> int:
    fifo = os.path.join(directory, FIFO_NAME)
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)   # past the umask: a user namespace's root must open it
    return os.open(fifo, os.O_PATH | os.O_CLOEXEC)


def _has_pre_pivot_hooks(spec: dict) -> bool:
    hooks = spec.get("hooks") or {}
    return bool(hooks.get("prestart") or hooks.get("createRuntime"))


def _warn(message: str) -> None:
    try:
        print(f"hutch: warning: {message}", file=sys.stderr)
    except OSError:   # stderr read-only or closed (containerd's CRI plugin): not an error
        pass


def check_preserved_fds(count: int) -> None:
    """--preserve-fds N passes fds 3..N+2 on: each must be open before hutch opens any of
    its own, or one of hutch's (a lock, a bus socket) would take a free number and leak
    into the container."""
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            raise ConfigError(f"fd {fd} is not open: --preserve-fds {count} passes fds 3 "
                              f"to {2 + count}", where="--preserve-fds") from None


def _prestart_hooks(spec: dict, state: st.State, pid: int) -> None:
    from hutch.oci.hooks import run_hooks
    hook_state = state.oci("creating", pid)
    run_hooks(spec, "prestart", hook_state)
    run_hooks(spec, "createRuntime", hook_state)


def _connect_console(path: str) -> int:
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot connect to console socket {path}: {exc.strerror}",
                          where="--console-socket") from None
    return sock.detach()


def write_pid_file(path: str, pid: int) -> None:
    """Write the pid like runc: to a temp file renamed into place."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
    try:
        os.unlink(tmp)   # a leftover, or a planted symlink: never write through it
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        f.write(fastjson.dumps(data))


def load_spec(root: str, state: st.State) -> dict:
    """The config the container was created with (its copy in the state directory).
    Fails closed: a missing or damaged copy is a StateError, never an empty config --
    an exec without the container's seccomp filter and capabilities would be an escape."""
    path = os.path.join(st.container_dir(root, state.id), state.config_path or CONFIG_COPY)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise StateError(f"cannot read the saved config of container {state.id}: {exc.strerror}",
                         where=path) from None
    try:
        spec = fastjson.loads(raw, where=path)
    except HutchError as err:
        raise StateError(f"the saved config of container {state.id} is damaged: {err.message}",
                         where=path) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("process"), dict):
        raise StateError(f"the saved config of container {state.id} is damaged: not an OCI config",
                         where=path)
    return spec


def start(root: str, container_id: str) -> st.State:
    """Release a created container's process into the user program."""
    with st.locked(root, container_id) as directory:
        state = st.load(root, container_id)
        status = state.live_status()
        if status != "created":
            raise StateError(f"cannot start a container that is {status}" if status != "stopped"
                             else "cannot start a container that has stopped")
        fifo = os.path.join(directory, FIFO_NAME)
        _open_fifo_and_release(fifo, state)
        state.status = "running"
        st.save(root, state)
    if _may_have_hooks(state, "poststart"):
        _poststart(root, state)
    return state


def _may_have_hooks(state: st.State, kind: str) -> bool:
    """Whether the saved config may hold `kind` hooks (states from before `hooks`: maybe)."""
    return state.hooks is None or kind in state.hooks


def _open_fifo_and_release(fifo: str, state: st.State) -> None:
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StateError("container was already started") from None
    try:
        import select
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100):
                data = os.read(fd, 1)
                if data:
                    break
            if not proc.is_alive(state.pid, state.pid_start):
                raise StateError("container process exited before start")
    finally:
        os.close(fd)
    os.unlink(fifo)


def _poststart(root: str, state: st.State) -> None:
    """The poststart hooks, after the program was released.  As runc: the first failing
    hook fails the verb, and the container is killed and removed (poststop hooks run)."""
    from hutch.oci.hooks import run_hooks
    try:
        spec = load_spec(root, state)
    except StateError as err:
        _warn(f"poststart hooks not run: {err}")   # the container runs; say what was skipped
        return
    try:
        run_hooks(spec, "poststart", state.oci("running", state.pid))
    except HutchError:
        try:
            delete(root, state.id, force=True)
        except HutchError as cleanup:   # the hook's error is the one to report
            _warn(f"removing container {state.id} after its poststart hook failed: {cleanup}")
        raise


def get_state(root: str, container_id: str) -> dict:
    return st.load(root, container_id).listing()


def list_containers(root: str) -> list[dict]:
    return [state.listing() for state in st.list_states(root, warn=_warn)]


SIGNAL_NAMES = {name: getattr(signal, name) for name in dir(signal)
                if name.startswith("SIG") and not name.startswith("SIG_")}


def parse_signal(text: str) -> int:
    """'9', 'KILL', 'SIGKILL', 'sigkill' -> 9."""
    text = text.strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in SIGNAL_NAMES:
            return int(SIGNAL_NAMES[name])
    raise ConfigError(f"invalid signal {text!r}", where="signal")


def kill(root: str, container_id: str, sig: int, all_processes: bool = False) -> None:
    """Signal the container's process; with all_processes every process in its cgroup --
    also once its init has exited, as runc does: the shim calls `kill --all ID 9` after a
    pod container's main process is gone, to end what it left in the shared pid namespace."""
    state = st.load(root, container_id)
    status = state.live_status()
    if all_processes and state.cgroup and status in ("created", "running", "paused", "stopped"):
        from hutch import cgroups
        group = cgroups.from_state(state.cgroup)
        if status == "stopped" and not group.exists():
            return
        group.kill_all(sig)
        return
    if status not in ("created", "running", "paused"):
        raise StateError("container not running")
    signal_pid(state.pid, sig, state.pid_start)


def signal_pid(pid: int, sig: int, start_time: int | None = None) -> None:
    """Signal pid through a pidfd; with start_time, only if pid is still that process
    (checked after the pidfd pins it, so a recycled pid is never signalled)."""
    from hutch import syscall as hsys
    try:
        fd = hsys.pidfd_open(pid)
    except SysCallError:
        raise StateError("container not running") from None
    try:
        if start_time is not None and proc.start_time(pid) != start_time:
            raise StateError("container not running")
        try:
            hsys.pidfd_send_signal(fd, sig)
        except SysCallError as err:
            if err.errno != 3:                      # ESRCH: it exited after we pinned it
                raise
            raise StateError("container not running") from None
    finally:
        os.close(fd)


def delete(root: str, container_id: str, force: bool = False) -> None:
    """Remove a stopped (or created) container; with force, kill a running one first.
    With force, a damaged state is removed too: what its journal names is undone."""
    if force and not os.path.isdir(st.container_dir(root, container_id)):
        return  # runc: delete --force of a missing container succeeds
    with st.locked(root, container_id):
        state = st.load_any(root, container_id, warn=_warn)
        if state.damaged and not force:
            raise StateError(f"{state.damaged}; `delete --force` removes it", where="state")
        status = state.live_status()
        if status in ("running", "paused", "unknown") and not force:
            raise StateError(f"cannot delete container {container_id} that is not stopped: {status}")
        spec = None
        # a create that never finished runs no hooks
        if not state.damaged and state.status != "creating" and _may_have_hooks(state, "poststop"):
            try:
                spec = load_spec(root, state)
            except StateError as err:
                if not force:
                    raise
                _warn(f"poststop hooks not run: {err}")
        if status == "paused" and state.cgroup:
            from hutch import cgroups
            cgroups.from_state(state.cgroup).thaw()
        _remove(root, state, spec=spec, warn=_warn)


def delete_abandoned(root: str, container_id: str) -> None:
    """Remove a container whose create died half-way: re-checked under its lock, so a
    create that is merely slow (it holds the lock) is never touched."""
    with st.locked(root, container_id):
        state = st.load_any(root, container_id)
        if state.status != "creating" and not state.damaged:
            return
        _remove(root, state, spec=None, warn=_warn)


def _remove_dir(path: str) -> None:
    """Remove a container directory (flat: state, journal, config copy, fifo) without shutil."""
    try:
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil
        shutil.rmtree(path, ignore_errors=True)


def _remove(root: str, state: st.State, spec: dict | None, warn) -> None:
    """Undo everything the container owns, newest first (its process, then its cgroup,
    ...), then its directory and lock; then the poststop hooks.  Each undo is idempotent,
    so this also finishes what a crashed create or delete left."""
    from hutch.oci.owned import undo_all
    undo_all(state.owned, warn)
    step("delete.undone")
    _remove_dir(st.container_dir(root, state.id))
    try:
        os.unlink(os.path.join(root, f".{state.id}.lock"))
    except FileNotFoundError:
        pass
    if spec:
        from hutch.oci.hooks import run_hooks_warn
        run_hooks_warn(spec, "poststop", state.oci("stopped", 0))


def record_exit(root: str, container_id: str, status: int) -> None:
    """Save the program's exit status (a caller that waited for it knows it)."""
    try:
        with st.locked(root, container_id):
            state = st.load(root, container_id)
            state.exit_status = status
            st.save(root, state)
    except HutchError:
        pass   # deleted meanwhile: nothing left to record it in


def exec_process(root: str, container_id: str, process: dict, *, console_socket: str | None = None,
                 pid_file: str | None = None, detach: bool = False, preserve_fds: int = 0,
                 console_fd: int | None = None, loaded: tuple | None = None):
    """Start `process` inside a running container; returns the `Started` handle.
    loaded: (state, saved config) the caller already read for this container."""
    check_preserved_fds(preserve_fds)
    state, saved_spec = loaded if loaded is not None else (st.load(root, container_id), None)
    status = state.live_status()
    if status not in ("created", "running"):
        raise StateError(f"cannot exec in a {status} container")
    warmer = _start_warming(bool(state.cgroup))
    try:
        return _exec_process(root, state, saved_spec, process, console_socket, pid_file,
                             preserve_fds, console_fd, warmer)
    finally:
        if warmer is not None:
            warmer.stop()


def _exec_process(root: str, state: st.State, saved_spec: dict | None, process: dict,
                  console_socket: str | None, pid_file: str | None, preserve_fds: int,
                  console_fd: int | None, warmer):
    from hutch.oci.launcher import Launch, close_all, container_ns_fds, spawn
    container_id = state.id
    # the container's seccomp, caps, LSM: from the config saved at create
    spec = dict(saved_spec if saved_spec is not None else load_spec(root, state), process=process)
    manager = None
    if state.cgroup:
        from hutch import cgroups
        manager = cgroups.from_state(state.cgroup)
    sock_fd = _connect_console(console_socket) if console_socket else None
    launch = Launch(spec=spec, bundle=state.bundle, container_id=container_id, mode="exec",
                    console_fd=sock_fd if sock_fd is not None else console_fd,
                    preserve_fds=preserve_fds, cgroup=manager, warmer=warmer)
    try:
        launch.ns_fds = container_ns_fds(state.pid, spec)
        if not proc.is_alive(state.pid, state.pid_start):
            # The pid was recycled while we opened its namespaces: they are not the container's.
            raise StateError("container not running")
        started = spawn(launch)
        if pid_file:
            write_pid_file(pid_file, started.pid)
    finally:
        close_all(launch.ns_fds)
        if sock_fd is not None:
            os.close(sock_fd)
    return started


def release(root: str, state: st.State, started) -> None:
    """Foreground start: let a container created with foreground=True run its program."""
    started.release()
    state.status = "running"
    st.save(root, state)
    started.exec_result()
    if _may_have_hooks(state, "poststart"):
        _poststart(root, state)
