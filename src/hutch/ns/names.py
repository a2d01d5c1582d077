"""hutch.ns's names for namespace types, derived from the one table
(hutch.syscall.constants.NAMESPACES).

The canonical type is the /proc/PID/ns file name (also lsns's -t name): mnt, net,
pid, ...; OCI's names (mount, network) are accepted as aliases.  Light on purpose:
hutch.ns.join imports it on the container start path.
"""

from __future__ import annotations

import os

from hutch.errors import ConfigError
from hutch.syscall import constants as C

NS_TYPES = tuple(C.NAMESPACE_PROC_NAMES.values())                 # join order
ALIASES = {oci: name for oci, name in C.NAMESPACE_PROC_NAMES.items() if oci != name}
CLONE_FLAGS = {C.NAMESPACE_PROC_NAMES[oci]: flag for oci, flag in C.NAMESPACE_FLAGS.items()}
FLAG_TYPES = {flag: name for name, flag in CLONE_FLAGS.items()}


def proc_name(name: str) -> str:
    """The /proc/PID/ns file name for a type given in either vocabulary (unchecked)."""
    return ALIASES.get(name, name)


def namespace_type(name: str, where: str = "namespace type") -> str:
    """The canonical type for name (OCI aliases accepted), checked against this kernel."""
    canonical = proc_name(name)
    if canonical not in CLONE_FLAGS:
        raise ConfigError(f"unknown namespace type {name!r} (use one of {', '.join(NS_TYPES)})",
                          where=where)
    if not os.path.exists(f"/proc/self/ns/{canonical}"):
        raise ConfigError(f"namespace type {canonical} is not supported by this kernel "
                          f"(no /proc/self/ns/{canonical})", where=where)
    return canonical


def supported_types() -> list[str]:
    """The namespace types this kernel has, in join order."""
    return [t for t in NS_TYPES if os.path.exists(f"/proc/self/ns/{t}")]
