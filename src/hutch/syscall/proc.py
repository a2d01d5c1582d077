"""Pure parsers for /proc files (no ctypes, no side effects beyond reading)."""

from __future__ import annotations

import os
from hutch.record import dataclass


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None if pid is gone.

    Stored with a container's pid so a recycled pid is never mistaken for it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])


def process_state(pid: int) -> str | None:
    """The one-letter state (R, S, Z, ...) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


def is_alive(pid: int, expected_start: int | None = None) -> bool:
    """True if pid exists, is not a zombie, and (if given) started at expected_start."""
    if pid <= 0:
        return False
    state = process_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return expected_start is None or start_time(pid) == expected_start


@dataclass(frozen=True)
class MountInfo:
    mount_id: int
    parent_id: int
    major_minor: str
    root: str
    mount_point: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 0 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    mounts = []
    for line in text.splitlines():
        if not line:
            continue
        left, _, right = line.partition(" - ")
        parts = left.split()
        rparts = right.split()
        mounts.append(MountInfo(
            mount_id=int(parts[0]), parent_id=int(parts[1]), major_minor=parts[2],
            root=_unescape(parts[3]), mount_point=_unescape(parts[4]), options=parts[5],
            optional=tuple(parts[6:]), fstype=rparts[0], source=_unescape(rparts[1]) if len(rparts) > 1 else "",
            super_options=rparts[2] if len(rparts) > 2 else ""))
    return mounts


def read_mountinfo(pid: int | str = "self") -> list[MountInfo]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse_mountinfo(f.read())


def read_status(pid: int | str = "self") -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def children_pids(pid: int) -> list[int]:
    """Direct children of pid, from /proc/PID/task/*/children."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except FileNotFoundError:
        pass
    return out


def read_text(path: str) -> str:
    """A small text file's content, or "" if it cannot be read (a missing /sys or /etc
    file is an answer, not an error, for the callers: LSM and resolver probes)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
