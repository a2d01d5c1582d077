"""Which hutch container a namespace belongs to (the CONTAINER column of `hutch ns ls`).

Lives in tools, above both hutch.ns (which knows no runtime) and hutch.oci
(whose state records the containers): the result is a plain
{inode: [container ids]} for :func:`hutch.ns.list_namespaces`'s ``owners``.

    from hutch.tools.containers import container_namespaces
    rows = hutch.ns.list_namespaces(owners=container_namespaces("/run/hutch"))
"""

from __future__ import annotations

import os

from hutch.ns.info import NS_TYPES


def _container_states(runtime_root: str) -> list:
    """The readable container states under runtime_root (lock files and records
    being written by a runtime at the same moment are skipped, not fatal)."""
    from hutch.errors import HutchError
    from hutch.oci.state import load
    try:
        names = sorted(os.listdir(runtime_root))
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith(".") or not os.path.isdir(os.path.join(runtime_root, name)):
            continue
        try:
            out.append(load(runtime_root, name))
        except (HutchError, OSError, ValueError, TypeError):
            continue
    return out


def container_namespaces(runtime_root: str = "/run/hutch") -> dict[int, list[str]]:
    """inode -> ids of the running hutch containers whose init is in that namespace.

    Namespaces we are in ourselves (the host's, for a container that shares them)
    are not attributed to containers: they belong to the host."""
    from hutch.sys import proc
    out: dict[int, list[str]] = {}
    own = set()
    for ns_type in NS_TYPES:
        try:
            own.add(os.stat(f"/proc/self/ns/{ns_type}").st_ino)
        except OSError:
            pass
    for state in _container_states(runtime_root):
        if not state.pid or not proc.is_alive(state.pid, state.pid_start):
            continue
        for ns_type in NS_TYPES:
            try:
                ino = os.stat(f"/proc/{state.pid}/ns/{ns_type}").st_ino
            except OSError:
                continue
            if ino not in own:
                out.setdefault(ino, []).append(state.id)
    return out
