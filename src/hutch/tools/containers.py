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


def container_namespaces(runtime_root: str = "/run/hutch") -> dict[int, list[str]]:
    """inode -> ids of the running hutch containers whose init is in that namespace.

    Namespaces we are in ourselves (the host's, for a container that shares them)
    are not attributed to containers: they belong to the host."""
    from hutch.oci.state import list_states
    from hutch.syscall import proc
    out: dict[int, list[str]] = {}
    own = set()
    for ns_type in NS_TYPES:
        try:
            own.add(os.stat(f"/proc/self/ns/{ns_type}").st_ino)
        except OSError:
            pass
    for state in list_states(runtime_root):
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
