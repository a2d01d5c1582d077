"""`hutch ns enter`: util-linux nsenter's semantics, plus entering a hutch container.

    hutch ns enter (-t PID | CONTAINER) [-a] [-m -u -i -n -p -U -C -T[FILE]]
                   [-r[DIR]] [-w[DIR]] [-S UID] [-G GID] [--preserve-credentials]
                   [-F] [-- CMD [ARGS...]]

Options are parsed as getopt does for nsenter's "+ahVt:m::u::i::n::p::C::U::T::S:G:r::w::F":
an optional argument is glued to its option (``-n/run/netns/x``,
``--net=/run/netns/x``), and parsing stops at the first non-option.  Without -t
and with no namespace given by file, the first word is a CONTAINER id (looked up
under the runtime root); a container with no namespace option enters them all.

The steps follow nsenter: open every namespace (and the root/wd dirs) first;
join them user-last-then-user-first (see hutch.ns.join.setns_all); chroot/chdir;
fork if a pid namespace was joined, the parent waiting and passing on the exit
status or the signal; set credentials; exec CMD or $SHELL (default /bin/sh).
"""

from __future__ import annotations

import os
import warnings  # noqa: F401  os.execvp imports it lazily, which fails once we are in another mount namespace
import signal
import sys
from hutch.record import dataclass, field

from hutch.errors import ConfigError, HutchError, NotFoundError, StateError

from hutch.syscall.constants import NAMESPACES

# nsenter's option letter -> namespace type (hutch.ns's name), long option -> letter
NS_OPTIONS = {letter: proc for _oci, _flag, proc, letter, _long in NAMESPACES}
LONG_NS = {long: letter for _oci, _flag, _proc, letter, long in NAMESPACES}
OPTIONAL_ARG = set(NS_OPTIONS) | {"r", "w"}
REQUIRED_ARG = {"t", "S", "G"}
FLAGS = {"a", "F", "h"}
LONG = {"all": "a", "target": "t", "root": "r", "wd": "w", "setuid": "S", "setgid": "G",
        "no-fork": "F", "help": "h", "preserve-credentials": "P", **LONG_NS}

USAGE = """usage: hutch ns enter (-t PID | CONTAINER) [options] [-- CMD [ARGS...]]

Run CMD (default $SHELL or /bin/sh) in the namespaces of a process or container.
  -t, --target PID        the process whose namespaces to enter
  CONTAINER               a hutch container id (under hutch --root DIR)
  -a, --all               enter all of the target's namespaces (the default for CONTAINER)
  -m, --mount[=FILE]      mount namespace (of the target, or the nsfs FILE)
  -u, --uts[=FILE]        UTS namespace       -i, --ipc[=FILE]     IPC namespace
  -n, --net[=FILE]        network namespace   -p, --pid[=FILE]     pid namespace
  -U, --user[=FILE]       user namespace      -C, --cgroup[=FILE]  cgroup namespace
  -T, --time[=FILE]       time namespace
  -r, --root[=DIR]        chroot to DIR (default: the target's root)
  -w, --wd[=DIR]          working directory DIR (default: the target's)
  -S, --setuid UID        -G, --setgid GID      (default 0 when entering a user namespace)
  --preserve-credentials  keep our uid, gid and groups
  -F, --no-fork           do not fork before exec (then a pid namespace applies only to children)
"""


@dataclass
class EnterOptions:
    target_pid: int | None = None
    container: str | None = None
    all: bool = False
    namespaces: dict[str, str | None] = field(default_factory=dict)  # type -> FILE or None
    root: str | None = None          # "" = target's root
    wd: str | None = None            # "" = target's cwd
    uid: int | None = None
    gid: int | None = None
    preserve_credentials: bool = False
    fork: bool = True
    command: list[str] = field(default_factory=list)
    help: bool = False


def _number(text: str, option: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise ConfigError(f"invalid number {text!r}", where=option) from None
    if value < 0:
        raise ConfigError(f"invalid number {text!r}", where=option)
    return value


def _apply(opts: EnterOptions, letter: str, value: str | None, option: str) -> None:
    if letter in NS_OPTIONS:
        opts.namespaces[NS_OPTIONS[letter]] = value or None
    elif letter == "t":
        opts.target_pid = _number(value, option)
        if opts.target_pid == 0:
            raise ConfigError("invalid pid 0", where=option)
    elif letter == "r":
        opts.root = value or ""
    elif letter == "w":
        opts.wd = value or ""
    elif letter == "S":
        opts.uid = _number(value, option)
    elif letter == "G":
        opts.gid = _number(value, option)
    elif letter == "a":
        opts.all = True
    elif letter == "F":
        opts.fork = False
    elif letter == "P":
        opts.preserve_credentials = True
    elif letter == "h":
        opts.help = True


def parse_args(argv: list[str]) -> EnterOptions:
    """nsenter's getopt rules (see the module docstring), then CONTAINER and CMD."""
    opts = EnterOptions()
    i = 0
    dashdash = False
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            dashdash = True
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            letter = LONG.get(name)
            if letter is None:
                raise ConfigError(f"unknown option {arg}", where="ns enter")
            if letter in REQUIRED_ARG and not eq:
                i += 1
                if i >= len(argv):
                    raise ConfigError("needs a value", where=f"--{name}")
                value = argv[i]
            elif eq and letter not in REQUIRED_ARG and letter not in OPTIONAL_ARG:
                raise ConfigError("takes no value", where=f"--{name}")
            _apply(opts, letter, value if (eq or letter in REQUIRED_ARG) else None, f"--{name}")
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter, rest = arg[j], arg[j + 1:]
                if letter in REQUIRED_ARG:
                    if not rest:
                        i += 1
                        if i >= len(argv):
                            raise ConfigError("needs a value", where=f"-{letter}")
                        rest = argv[i]
                    _apply(opts, letter, rest, f"-{letter}")
                    break
                if letter in OPTIONAL_ARG:
                    _apply(opts, letter, rest or None, f"-{letter}")
                    break
                if letter in FLAGS:
                    _apply(opts, letter, None, f"-{letter}")
                    j += 1
                    continue
                raise ConfigError(f"unknown option -{letter}", where="ns enter")
        else:
            break
        i += 1
    rest = argv[i:]
    if not dashdash and _wants_container(opts) and rest and rest[0] != "--":
        opts.container = rest[0]
        rest = rest[1:]
        if rest and rest[0] == "--":
            rest = rest[1:]
    opts.command = rest
    return opts


def _wants_container(opts: EnterOptions) -> bool:
    """Without -t, the first word names a container unless every namespace comes from a file."""
    if opts.target_pid is not None:
        return False
    return opts.all or not opts.namespaces or any(f is None for f in opts.namespaces.values())


# --- planning ------------------------------------------------------------------

@dataclass
class Plan:
    """What to open before joining: namespace type -> path, plus root and wd dirs."""
    namespaces: dict[str, str]
    root: str | None
    wd: str | None


def resolve_container(runtime_root: str, container_id: str) -> int:
    """The pid of a running hutch container (NotFoundError / StateError otherwise)."""
    from hutch.oci.state import load
    from hutch.syscall import proc
    state = load(runtime_root, container_id)
    if not state.pid or not proc.is_alive(state.pid, state.pid_start):
        raise StateError(f"container {container_id} is not running (its process is gone)",
                         where=container_id)
    return state.pid


def make_plan(opts: EnterOptions, runtime_root: str) -> tuple[Plan, int | None]:
    """Check the options against the system and decide every path (nothing opened yet)."""
    from hutch.ns.info import check_pid, namespace_type, supported_types
    from hutch.ns.join import same_namespace
    pid = opts.target_pid
    if opts.container is not None:
        pid = resolve_container(runtime_root, opts.container)
    elif pid is not None:
        check_pid(pid, where="--target")
    namespaces: dict[str, str] = {}
    for ns_type, path in opts.namespaces.items():
        namespace_type(ns_type, where=f"--{ns_type}")
        if path is None and pid is None:
            raise ConfigError(f"neither filename nor target pid supplied for {ns_type}",
                              where=f"--{ns_type}")
        namespaces[ns_type] = path or f"/proc/{pid}/ns/{ns_type}"
    if opts.all or (opts.container is not None and not opts.namespaces):
        if pid is None:
            raise ConfigError("no target PID specified for --all", where="--all")
        for ns_type in supported_types():
            # as nsenter: all of them, except our own user namespace (setns refuses to
            # re-enter it); the others are joined even when shared, which for mnt
            # resets root and cwd to the namespace's root.
            if ns_type in namespaces or (ns_type == "user" and same_namespace(pid, "user")):
                continue
            namespaces[ns_type] = f"/proc/{pid}/ns/{ns_type}"
    if not namespaces and opts.root is None and opts.wd is None:
        raise ConfigError("no namespace to enter: give -t PID with -a or namespace options, "
                          "or a CONTAINER", where="ns enter")
    root = _dir_option(opts.root, pid, "root", "--root")
    wd = _dir_option(opts.wd, pid, "cwd", "--wd")
    return Plan(namespaces, root, wd), pid


def _dir_option(value: str | None, pid: int | None, proc_link: str, option: str) -> str | None:
    if value is None:
        return None
    if value:
        return value
    if pid is None:
        raise ConfigError("needs a directory or a target pid", where=option)
    return f"/proc/{pid}/{proc_link}"


# --- doing it -------------------------------------------------------------------

def _open_dir(path: str, option: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError(f"cannot open {path}: {err.strerror}", where=option) from None


def enter_and_exec(opts: EnterOptions, runtime_root: str) -> int:
    """Everything nsenter does, ending in exec (or returning the exit code to use)."""
    from hutch.ns.join import close_all, open_namespaces, setns_all
    plan, _pid = make_plan(opts, runtime_root)
    fds = open_namespaces(plan.namespaces)
    root_fd = wd_fd = -1
    try:
        if plan.root is not None:
            root_fd = _open_dir(plan.root, "--root")
        if plan.wd is not None:
            wd_fd = _open_dir(plan.wd, "--wd")
        joined_user = "user" in fds
        joined_pid = "pid" in fds
        force_uid = opts.uid is not None
        force_gid = opts.gid is not None
        if joined_user and not opts.preserve_credentials:
            force_uid = force_gid = True
        setns_all(fds)
        _change_root(root_fd, wd_fd)
    finally:
        close_all(fds)
        for fd in (root_fd, wd_fd):
            if fd >= 0:
                os.close(fd)
    if joined_pid and opts.fork:
        _continue_as_child()
    if force_uid or force_gid:
        _set_credentials((opts.uid or 0) if force_uid else None, (opts.gid or 0) if force_gid else None)
    return exec_command(opts.command)


def _change_root(root_fd: int, wd_fd: int) -> None:
    """nsenter's order: remember cwd if only the root changes, chroot, then chdir."""
    if root_fd >= 0 and wd_fd < 0:
        wd_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        own_wd = True
    else:
        own_wd = False
    try:
        if root_fd >= 0:
            os.fchdir(root_fd)
            os.chroot(".")
        if wd_fd >= 0:
            os.fchdir(wd_fd)
    except OSError as err:
        raise HutchError(f"cannot change root or working directory: {err.strerror}") from None
    finally:
        if own_wd:
            os.close(wd_fd)


def _set_credentials(uid: int | None, gid: int | None) -> None:
    try:
        if gid is not None:
            try:
                os.setgroups([])
            except PermissionError:
                pass          # setgroups is denied in a userns with "deny"; gid still applies
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except OSError as err:
        raise HutchError(f"cannot set uid {uid} / gid {gid}: {err.strerror}",
                         where="credentials") from None


def _continue_as_child() -> None:
    """Fork; the parent waits for the child and leaves with its status (or signal).

    A stopped child stops us too (so job control in a shell still works), and
    we ignore terminal signals while waiting: they reach the child as well."""
    child = os.fork()
    if child == 0:
        return
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):      # pass these on to the child
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    while True:
        try:
            _, status = os.waitpid(child, os.WUNTRACED)
        except InterruptedError:
            continue
        if os.WIFSTOPPED(status):
            os.kill(os.getpid(), signal.SIGSTOP)
            os.kill(child, signal.SIGCONT)
            continue
        break
    sys.stdout.flush()
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):      # those cannot be caught anyway
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(1)


def reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an exec'd program must get the defaults."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT,
                signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def exec_command(command: list[str]) -> int:
    """exec CMD, or a login-style $SHELL (argv[0] '-sh'); 127/126 if it cannot run."""
    if command:
        path, argv = command[0], command
    else:
        path = os.environ.get("SHELL") or "/bin/sh"
        argv = ["-" + os.path.basename(path)]
    sys.stdout.flush()
    sys.stderr.flush()
    reset_signals()
    try:
        if command:
            os.execvp(path, argv)
        os.execv(path, argv)
    except OSError as err:
        print(f"hutch: exec {path}: {err.strerror}", file=sys.stderr)
        return 127 if isinstance(err, FileNotFoundError) else 126
    return 1   # not reached


def main(argv: list[str], runtime_root: str) -> int:
    opts = parse_args(argv)
    if opts.help:
        print(USAGE, end="")
        return 0
    if opts.container is None and opts.target_pid is None and not opts.namespaces:
        raise NotFoundError("give -t PID or a CONTAINER id", where="ns enter")
    return enter_and_exec(opts, runtime_root)
