"""Processes of a container: from its cgroup, else from its pid namespace."""

from __future__ import annotations

import os
import subprocess

from hutch.errors import HutchError


def container_pids(state) -> list[int]:
    if state.cgroup:
        from hutch import cgroups
        try:
            return sorted(cgroups.from_state(state.cgroup).pids())
        except HutchError:
            pass
    return pids_in_pid_namespace(state.pid)


def pids_in_pid_namespace(init_pid: int) -> list[int]:
    try:
        target = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    except OSError:
        return []
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}/ns/pid").st_ino == target:
                    out.append(int(name))
            except OSError:
                continue
    return sorted(out)


def ps_table(pids: list[int], ps_args: list[str]) -> str:
    """Run ps with ps_args and keep the header and the rows of these pids (as runc ps)."""
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HutchError(f"ps failed: {exc}") from None
    lines = out.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise HutchError("couldn't find PID field in ps output")
    column = header.index("PID")
    wanted = set(pids)
    kept = [lines[0]] + [line for line in lines[1:]
                         if len(line.split()) > column and line.split()[column].isdigit()
                         and int(line.split()[column]) in wanted]
    return "\n".join(kept) + "\n"
