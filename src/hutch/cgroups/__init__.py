"""cgroups: resource limits, usage, freezing and OOM events for containers.

One manager interface, two backends chosen by what the host mounts:

* :class:`hutch.cgroups.v1.V1Manager` - a directory per controller hierarchy (and
  the unified hierarchy too on hybrid hosts, as runc does);
* :class:`hutch.cgroups.v2.V2Manager` - one directory in the unified hierarchy,
  device rules as an eBPF program.

Usage (what the container launcher does)::

    m = cgroups.for_container(cid, spec_linux.get("cgroupsPath"), systemd=g.systemd_cgroup)
    m.validate(resources)          # before anything is created
    m.create(); m.apply(resources); m.add_pid(pid)
    state.cgroup = m.to_state()    # ... later: cgroups.from_state(state.cgroup).destroy()

Submodules are imported lazily: importing this package costs nothing.
"""

from __future__ import annotations

from hutch.cgroups.paths import DEFAULT_ROOT, detect  # noqa: F401  (light: os/posixpath only)


def for_container(container_id: str, cgroups_path: str | None, systemd: bool = False,
                  root: str = DEFAULT_ROOT, annotations: dict | None = None):
    """The manager for a container's cgroup (nothing is created until create()).

    systemd=True: the container's cgroup is a systemd scope (cgroupsPath is
    slice:prefix:name); annotations org.systemd.property.* become unit properties."""
    from hutch.cgroups import paths
    if systemd:
        from hutch.cgroups.systemd import SystemdManager
        manager = SystemdManager.for_container(container_id, cgroups_path, root)
        paths.require_systemd()             # after the path's own checks, as runc
        return manager.with_annotations(annotations)
    if detect(root) == "v2":
        from hutch.cgroups.v2 import V2Manager
        return V2Manager.for_container(container_id, cgroups_path, root)
    from hutch.cgroups.v1 import V1Manager
    return V1Manager.for_container(container_id, cgroups_path, root)


def from_state(data: dict):
    """The manager again from what to_state() returned (stored in State.cgroup)."""
    from hutch.errors import StateError
    driver = (data or {}).get("driver")
    if driver == "v1":
        from hutch.cgroups.v1 import V1Manager
        return V1Manager.from_state(data)
    if driver == "v2":
        from hutch.cgroups.v2 import V2Manager
        return V2Manager.from_state(data)
    if driver == "systemd":
        from hutch.cgroups.systemd import SystemdManager
        return SystemdManager.from_state(data)
    raise StateError("the container has no cgroup recorded in its state", where="cgroup")


def validate(resources: dict | None) -> dict:
    """Host-independent checks of OCI linux.resources (ConfigError with a JSON path)."""
    from hutch.cgroups.check import validate as _validate
    return _validate(resources)


def resources_from_options(**options) -> dict:
    """`hutch run`/`update` style options -> OCI linux.resources (see options.py)."""
    from hutch.cgroups.options import resources_from_options as _rfo
    return _rfo(**options)


def default_device_rules() -> list[dict]:
    """The device rules runc always adds after config.json's (null, zero, tty, pts, ...)."""
    from hutch.cgroups.devices import DEFAULT_ALLOWED
    return [dict(r) for r in DEFAULT_ALLOWED]


def device_rules_for(linux_devices: list[dict] | None) -> list[dict]:
    """Allow rules for the device nodes config.json creates (linux.devices), which runc
    appends to the cgroup rules so the container can use the nodes it was given."""
    rules = []
    for dev in linux_devices or []:
        if dev.get("type") in ("c", "b", "u") and dev.get("major") is not None:
            rules.append({"allow": True, "type": "b" if dev["type"] == "b" else "c",
                          "major": dev["major"], "minor": dev.get("minor"), "access": "rwm"})
    return rules
