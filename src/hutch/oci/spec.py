"""`hutch spec`: write the starter config.json that `runc spec` writes, byte for byte.

The document, its key order and its formatting (tab indentation, no final
newline) follow runc 1.1 so that tools and tutorials written for runc work
unchanged; tests/unit/test_spec.py compares it with the installed runc.
"""

from __future__ import annotations

import json
import os

from hutch.errors import EXIT_OCI_ERROR, ConfigError

SPEC_OCI_VERSION = "1.0.2-dev"     # what runc 1.1 writes; hutch validates any 1.x
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

SPEC_USAGE = """usage: hutch spec [--bundle DIR] [--rootless]

Write a starter config.json for a bundle (the same document `runc spec` writes).

options:
  --bundle DIR, -b DIR  the bundle directory (default: the current directory)
  --rootless            a configuration for a container started by an unprivileged user
"""


def default_spec(rootless: bool = False) -> dict:
    """The config `runc spec` (or `runc spec --rootless`) writes, as a dict in runc's key order."""
    spec = {
        "ociVersion": SPEC_OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {name: list(DEFAULT_CAPS)
                             for name in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": _default_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if rootless:
        _make_rootless(spec)
    return spec


def _default_mounts() -> list:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def _make_rootless(spec: dict) -> None:
    """runc's rootless changes: a user namespace mapping the caller, no network namespace,
    no cgroup limits, /sys bind-mounted (sysfs needs a network namespace), no gid=5 on devpts
    (group 5 is not mapped)."""
    linux = spec["linux"]
    namespaces = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    namespaces.append({"type": "user"})
    spec["linux"] = {
        "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
        "namespaces": namespaces,
        "maskedPaths": linux["maskedPaths"],
        "readonlyPaths": linux["readonlyPaths"],
    }
    for mount in spec["mounts"]:
        if mount["destination"] == "/dev/pts":
            mount["options"].remove("gid=5")
        elif mount["destination"] == "/sys":
            mount.update(type="none", source="/sys",
                         options=["rbind", "nosuid", "noexec", "nodev", "ro"])


def render_spec(spec: dict) -> str:
    """JSON text formatted as runc writes it: tab indentation, no final newline."""
    return json.dumps(spec, indent="\t")


def write_spec(bundle_dir: str, rootless: bool = False) -> str:
    """Write <bundle_dir>/config.json; refuse to replace an existing one, as runc does."""
    if not os.path.isdir(bundle_dir):
        reason = "not a directory" if os.path.exists(bundle_dir) else "no such directory"
        raise ConfigError(reason, where=bundle_dir, exit_code=EXIT_OCI_ERROR)
    path = os.path.join(bundle_dir, "config.json")
    try:
        # O_EXCL: never overwrite, even if a config.json appears between check and write.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        # runc's words; the bundle is named only when it is not the current directory.
        raise ConfigError("File config.json exists. Remove it first",
                          where=None if bundle_dir == "." else bundle_dir,
                          exit_code=EXIT_OCI_ERROR) from None
    except OSError as err:
        raise ConfigError(f"cannot create: {err.strerror}", where=path,
                          exit_code=EXIT_OCI_ERROR) from None
    with os.fdopen(fd, "w") as f:
        f.write(render_spec(default_spec(rootless)))
    return path


def parse_spec_args(argv: list[str]) -> tuple[str, bool] | None:
    """(bundle, rootless) from `spec` arguments, None for --help; bad usage is a ConfigError.

    Accepts the spellings runc (urfave/cli) accepts: --bundle DIR, --bundle=DIR, -b DIR,
    -bundle DIR, --rootless, --rootless=true|false."""
    bundle, rootless = ".", False
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("-h", "--help"):
            return None
        if name in ("-b", "--bundle", "-bundle"):
            if not eq:
                i += 1
                if i >= len(argv):
                    _usage_error(f"flag needs an argument: {name}", name)
                value = argv[i]
            bundle = value
        elif name in ("--rootless", "-rootless"):
            if eq and value not in ("true", "false", "1", "0"):
                _usage_error(f"invalid boolean value {value!r}", name)
            rootless = value in ("", "true", "1")
        elif arg.startswith("-") and arg != "-":
            _usage_error(f"flag provided but not defined: {arg}", arg)
        else:
            _usage_error('"spec" requires exactly 0 argument(s)', "spec")
        i += 1
    return bundle, rootless


def _usage_error(message: str, where: str):
    raise ConfigError(message, where=where, exit_code=EXIT_OCI_ERROR)


def spec_command(argv: list[str]) -> int:
    """`hutch spec [--bundle DIR] [--rootless]`: 0 on success; errors raise ConfigError (exit 1)."""
    parsed = parse_spec_args(argv)
    if parsed is None:
        print(SPEC_USAGE, end="")
        return 0
    bundle, rootless = parsed
    write_spec(bundle, rootless)
    return 0
