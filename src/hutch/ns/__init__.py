"""Linux namespaces: listing, entering and persisting them (and user-namespace id maps).

This package is imported on the container start path (``hutch.ns.idmap``), so
this file stays light: the public API below is re-exported lazily, the first
time an attribute is used.

    import hutch.ns
    for row in hutch.ns.list_namespaces(types=["net"]):   # lsns
        print(row.ns, row.nprocs, row.command)
    with hutch.ns.enter(pid, "net"):                      # this thread only
        ...                                                # runs inside pid's netns
    result = hutch.ns.run_in(pid, ["mnt", "user"], func)  # forked child, result back
    hutch.ns.persist(pid, "net", "/run/netns/x")          # bind mount, like ip netns
    hutch.ns.unpersist("/run/netns/x")
"""

from __future__ import annotations

# attribute -> module that defines it (imported on first use).  The modules are not
# named after the functions (enter, persist): importing a submodule sets it as an
# attribute of the package, which would hide the function of the same name.
_LAZY = {
    "Namespace": "hutch.ns.info",
    "NS_TYPES": "hutch.ns.names",
    "list_namespaces": "hutch.ns.info",
    "inspect": "hutch.ns.info",
    "namespace_type": "hutch.ns.names",
    "ns_inode": "hutch.ns.info",
    "enter": "hutch.ns.join",
    "run_in": "hutch.ns.join",
    "open_namespaces": "hutch.ns.join",
    "persist": "hutch.ns.pin",
    "unpersist": "hutch.ns.pin",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'hutch.ns' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
