"""`hutch` entry point: runc-style global options, then one command.

Kept tiny on purpose: it parses the global options by hand (argparse costs
milliseconds on the container-start path) and imports only the module of the
command being run.  Each command module exposes
``main(command: str, argv: list[str], g: GlobalOptions) -> int``.
"""

from __future__ import annotations

import os
import sys

# command -> module implementing it (imported lazily)
COMMANDS = {
    "run": "hutch.cli.run",
    "create": "hutch.cli.oci", "start": "hutch.cli.oci", "state": "hutch.cli.oci",
    "list": "hutch.cli.oci", "kill": "hutch.cli.oci", "delete": "hutch.cli.oci",
    "exec": "hutch.cli.oci", "ps": "hutch.cli.oci", "spec": "hutch.cli.oci",
    "features": "hutch.cli.oci",
    "update": "hutch.cli.cgroups", "pause": "hutch.cli.cgroups", "resume": "hutch.cli.cgroups",
    "events": "hutch.cli.cgroups", "stats": "hutch.cli.cgroups",
    "ns": "hutch.cli.ns", "netns": "hutch.cli.netns", "network": "hutch.cli.network",
}

USAGE = """usage: hutch [--root DIR] [--log FILE] [--log-format text|json] [--debug]
             [--systemd-cgroup] COMMAND [ARGS...]

Containers from Linux namespaces, and an OCI runtime compatible with runc.

container commands:
  run [OPTIONS] -- CMD [ARGS]   run CMD in a new container (hutch run --help)
  run [--bundle DIR] ID         OCI: create and start container ID from a bundle
OCI runtime commands (as runc):
  create start state list kill delete exec ps spec features
  update pause resume events stats
namespace tools:
  ns ls | ns enter              lsns and nsenter equivalents
  netns add|del|list|exec|...   ip netns equivalent
networks:
  network create|ls|inspect|rm  bridge networks for hutch run --network NAME -p ...
"""

VERSION = "0.1.0"
_FLAG_GLOBALS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup",
                 "--no-new-keyring": None, "--rootless": None}
_VALUE_GLOBALS = {"--root": "root", "--log": "log", "--log-format": "log_format",
                  "--criu": None, "--rootless": None}


class GlobalOptions:
    """The global options; `root` defaults to the OCI state root only when a command asks
    (`hutch ns`/`netns` never load the state module)."""

    def __init__(self):
        self._root: str | None = None
        self.log: str | None = None
        self.log_format = "text"
        self.debug = False
        self.systemd_cgroup = False

    @property
    def root(self) -> str:
        if self._root is None:
            from hutch.oci.state import default_root
            self._root = default_root()
        return self._root

    @root.setter
    def root(self, value: str) -> None:
        self._root = value


def parse_globals(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    g = GlobalOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_GLOBALS and not (name == "--rootless" and not eq and
                                             (i + 1 >= len(argv) or argv[i + 1] not in ("true", "false", "auto"))):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"hutch: option {name} needs a value")
                value = argv[i]
            if _VALUE_GLOBALS[name]:
                setattr(g, _VALUE_GLOBALS[name], value)
        elif arg in _FLAG_GLOBALS:
            if _FLAG_GLOBALS[arg]:
                setattr(g, _FLAG_GLOBALS[arg], True)
        else:
            break
        i += 1
    return g, argv[i:]


def report_error(err: BaseException, g: GlobalOptions) -> None:
    """The error in the --log file (runc's format) first, then one line on stderr.

    The log comes first because engines read it: containerd's CRI plugin runs the runtime
    with stdout and stderr open read-only on /dev/null, where the print fails (EBADF).
    """
    text = str(err)
    if g.log:
        from hutch.cli.log import write_log
        write_log(g, "error", text)
    say(f"hutch: {text}")


def say(line: str) -> None:
    """One line on stderr; a stderr that cannot be written to is not an error of its own."""
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):   # EBADF, EPIPE, a closed sys.stderr
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        g, rest = parse_globals(argv)
    except SystemExit as exc:
        say(str(exc))
        return 1
    if g.log or g.log_format != "text":
        from hutch.cli.log import check_log_options
        problem = check_log_options(g)
        if problem:
            say(f"hutch: {problem}")
            return 1
    if not rest or rest[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if rest else 1
    if rest[0] in ("-v", "--version", "version"):
        print(f"hutch version {VERSION}\nspec: 1.2.0")
        return 0
    command = rest[0]
    module_name = COMMANDS.get(command)
    if module_name is None:
        report_error(Exception(f"unknown command {command!r} (see hutch --help)"), g)
        return 1
    from hutch.errors import HutchError
    if command in _ATTACHING:
        _warm_cgroup_attach()
    try:
        module = __import__(module_name, fromlist=["main"])
        return module.main(command, rest[1:], g)
    except HutchError as err:
        report_error(err, g)
        if command == "run" and not getattr(err, "oci_verb", False):
            return err.exit_code if err.exit_code is not None else 125   # docker's conventions
        return 1  # runc's: every error of an OCI verb exits 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as err:
        if _stdout_closed():
            # Output piped into e.g. `head`: not an error; keep Python from complaining at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        return _os_error(err, command, g)
    except OSError as err:   # e.g. --root naming a file, a full disk: still one line
        return _os_error(err, command, g)


# OCI verbs that end by putting a new process into the container's cgroup.
_ATTACHING = ("create", "exec")


def _warm_cgroup_attach() -> None:
    """Start paying the kernel's cgroup-attach grace period now, beside the imports
    (hutch.cgroups.warm; create/exec pick the running warmer up and stop it before fork)."""
    from hutch.cgroups.warm import start_warming
    start_warming()


def _stdout_closed() -> bool:
    import select
    poller = select.poll()
    poller.register(1, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def _os_error(err: OSError, command: str, g: GlobalOptions) -> int:
    where = f"{err.filename}: " if err.filename else ""
    report_error(Exception(f"{where}{err.strerror or err}"), g)
    return 125 if command == "run" else 1


def entry() -> None:
    code = main()
    # Skip the interpreter's teardown (module and GC cleanup: a few ms on every verb of a
    # container's life).  hutch registers no atexit work; flush what Python buffered.
    # Output that could not be written fails the command; a stderr that cannot be written
    # to never changes the exit code (the error, if any, is in the --log file).
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    except (OSError, ValueError):
        code = code or 1
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code if isinstance(code, int) else 1)
