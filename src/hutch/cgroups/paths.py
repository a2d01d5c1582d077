"""Where a container's cgroup lives: cgroupsPath semantics (as runc), the host's
hierarchies, and the caller's own cgroup."""

from __future__ import annotations

import os
import posixpath

from hutch.errors import ConfigError, HutchError

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/hutch"
WHERE = "linux.cgroupsPath"


def detect(root: str = DEFAULT_ROOT) -> str:
    """'v2' when root is a cgroup2 mount (unified), else 'v1' (legacy or hybrid)."""
    fstype = _mount_fstype(root)
    if fstype is not None:
        return "v2" if fstype == "cgroup2" else "v1"
    # Not a mount point we can see (a test tree): judge by the files.
    return "v2" if os.path.exists(os.path.join(root, "cgroup.controllers")) else "v1"


def _mount_fstype(path: str) -> str | None:
    from hutch.syscall import proc
    try:
        mounts = proc.read_mountinfo()
    except OSError:
        return None
    real = os.path.realpath(path)
    found = None
    for m in mounts:
        if m.mount_point == real:
            found = m.fstype          # the last mount on a point is the visible one
    return found


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """/proc/PID/cgroup -> {controller: path}; the v2 entry has the key ''."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return out
    return parse_proc_cgroup(text)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = parts[1]
        if not controllers:
            out[""] = parts[2]
            continue
        for ctl in controllers.split(","):
            out[ctl.removeprefix("name=")] = parts[2]
    return out


def clean_path(cgroups_path: str) -> str:
    """Normalize and refuse a path that climbs out of its hierarchy with '..'."""
    if "\0" in cgroups_path:
        raise ConfigError("invalid cgroupsPath: contains a NUL byte", where=WHERE)
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"invalid cgroupsPath {cgroups_path!r}: '..' is not allowed", where=WHERE)
    return "/".join(parts)


def resolve(container_id: str, cgroups_path: str | None, own: str = "/") -> str:
    """cgroupsPath -> path inside one hierarchy (always starting with '/').

    absolute: relative to the hierarchy root; relative: under the caller's own cgroup
    `own` in that hierarchy; empty: the default /hutch/<id>."""
    if not cgroups_path:
        return f"{DEFAULT_PARENT}/{container_id}"
    rel = clean_path(cgroups_path)
    if not rel:
        raise ConfigError(f"invalid cgroupsPath {cgroups_path!r}: it names the root cgroup",
                          where=WHERE)
    if cgroups_path.startswith("/"):
        return "/" + rel
    return posixpath.join(own or "/", rel)


def parse_systemd_path(container_id: str, cgroups_path: str | None) -> tuple[str, str, str]:
    """'slice:prefix:name' -> parts (runc's systemd form); defaults like runc."""
    if not cgroups_path:
        return "system.slice", "hutch", container_id
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise ConfigError(f"invalid systemd cgroupsPath {cgroups_path!r}: expected "
                          "slice:prefix:name", where=WHERE)
    slice_, prefix, name = parts
    if slice_ and not slice_.endswith(".slice"):
        raise ConfigError(f"invalid slice {slice_!r}: a slice name ends in .slice", where=WHERE)
    return slice_ or "system.slice", prefix, name or container_id


def systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system")


def require_systemd() -> None:
    if not systemd_running():
        raise HutchError("systemd is not running on this host (no /run/systemd/system): "
                         "run without --systemd-cgroup to use the cgroupfs driver",
                         where="--systemd-cgroup")


def join(mount_dir: str, cgroup_path: str) -> str:
    return os.path.join(mount_dir, cgroup_path.lstrip("/"))
