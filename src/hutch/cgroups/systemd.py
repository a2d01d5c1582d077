"""The systemd cgroup driver (`--systemd-cgroup`): systemd owns the container's cgroup.

The container becomes a transient scope unit (``<prefix>-<name>.scope`` in the slice
of ``slice:prefix:name``), made over D-Bus with StartTransientUnit when its first
process exists (a scope cannot be empty).  The limits go twice, as runc does it:
as unit properties, so systemd keeps them when it re-applies its own settings (a
daemon-reload, another unit's change), and into the cgroup files through the v1 or
v2 backend, which covers what systemd has no property for and joins the hierarchies
systemd does not manage (cpuset and freezer on v1).  Freezing, stats, OOM events
and kill go through that backend; stopping the unit removes what systemd made.
"""

from __future__ import annotations

import os

from hutch.cgroups import paths, systemd_props as props
from hutch.errors import ConfigError, HutchError

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
JOB_TIMEOUT = 30.0          # runc waits as long for systemd to start a unit
WHERE = "--systemd-cgroup"
_DEVICE_PROPS = ("DeviceAllow", "DevicePolicy")


def _init_prefix(path: str) -> str:
    """PID 1's cgroup without its init.scope: where systemd's tree starts in a
    hierarchy seen from here (runc's getSubsystemPath; '/' on a host or in a cgroup ns)."""
    path = os.path.normpath(path or "/")
    if os.path.basename(path) == "init.scope":
        path = os.path.dirname(path)
    return path


def _fs_manager(container_id: str, unit_path: str, root: str):
    """The v1 or v2 backend pointed at the unit's cgroup."""
    if paths.detect(root) == "v2":
        from hutch.cgroups.v2 import V2Manager
        return V2Manager(container_id, paths.join(root, unit_path), root)
    from hutch.cgroups import v1
    init = paths.own_cgroups(1)
    by_ctl = {ctl: paths.join(mount, _init_prefix(init.get(ctl.removeprefix("name="), "/"))
                              + unit_path)
              for ctl, mount in v1.hierarchies(root).items()}
    if not by_ctl:
        raise HutchError(f"no cgroup v1 hierarchies under {root}", where="cgroup")
    udir = v1.unified_dir(root)
    unified = paths.join(udir, _init_prefix(init.get("", "/")) + unit_path) if udir else None
    return v1.V1Manager(container_id, by_ctl, unified, root)


def _fs_from_state(data: dict):
    if data.get("driver") == "v2":
        from hutch.cgroups.v2 import V2Manager
        return V2Manager.from_state(data)
    from hutch.cgroups.v1 import V1Manager
    return V1Manager.from_state(data)


def connect(timeout: float = 5.0):
    """A D-Bus connection to systemd (system bus, else its private socket as root),
    subscribed to job signals; returns (connection, systemd's unique name or None)."""
    from hutch import dbus
    try:
        conn = dbus.connect_systemd(timeout)
    except dbus.DBusError as err:
        raise HutchError(f"cannot reach systemd over D-Bus: {err}", where=WHERE) from None
    try:
        owner = None
        if conn.is_bus:
            # Only systemd may end our jobs: on a bus any client could send JobRemoved.
            conn.add_match(f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',"
                           f"interface='{MANAGER}',member='JobRemoved'")
            owner = conn.call(dbus.BUS_NAME, dbus.BUS_PATH, dbus.BUS_INTERFACE,
                              "GetNameOwner", "s", (SYSTEMD,))[0]
        conn.call(SYSTEMD, SYSTEMD_PATH, MANAGER, "Subscribe")
    except dbus.DBusError as err:
        conn.close()
        raise HutchError(f"cannot subscribe to systemd's job signals: {err}", where=WHERE) from None
    return conn, owner


class SystemdManager:
    """The cgroup manager interface (see hutch.cgroups) over a systemd unit."""

    driver = "systemd"

    def __init__(self, container_id: str, unit: str, slice_: str, fs, started: bool = False,
                 annotations: dict | None = None):
        self.id = container_id
        self.unit = unit
        self.slice = slice_
        self.fs = fs                  # the v1/v2 backend on the unit's cgroup
        self.started = started        # the unit was made (the first process placed)
        self.annotations = dict(annotations or {})
        self._pending: dict = {}      # resources given before the unit exists
        self._conn = None
        self._owner: str | None = None
        self._version: int | None = None

    # -- construction and state --------------------------------------------------------
    @classmethod
    def for_container(cls, container_id: str, cgroups_path: str | None,
                      root: str = paths.DEFAULT_ROOT) -> "SystemdManager":
        slice_, prefix, name = paths.parse_systemd_path(container_id, cgroups_path)
        unit = props.unit_name(prefix, name)
        if props.is_slice(unit):
            # systemd puts no process in a slice unit: runc 1.1.5 asks for one with the
            # container's pid and systemd refuses ("Cannot set property PIDs"), exit 1.
            # (libcontainer makes slices only for callers with no process, as the
            # kubelet's pod slices.)  Refused before anything is made.
            raise ConfigError(f"cgroupsPath names a slice unit ({unit}): systemd places no "
                              "processes in a slice (runc fails the same way); a container "
                              f"gets a scope: use {slice_}:{prefix}:NAME, NAME not ending in .slice",
                              where=paths.WHERE)
        unit_path = props.unit_cgroup_path(slice_, unit)
        return cls(container_id, unit, slice_, _fs_manager(container_id, unit_path, root))

    def to_state(self) -> dict:
        return {"driver": "systemd", "id": self.id, "unit": self.unit, "slice": self.slice,
                "started": self.started, "fs": self.fs.to_state()}

    @classmethod
    def from_state(cls, data: dict) -> "SystemdManager":
        return cls(data.get("id", ""), data["unit"], data.get("slice", "system.slice"),
                   _fs_from_state(data.get("fs") or {}), started=bool(data.get("started")))

    def with_annotations(self, annotations: dict | None) -> "SystemdManager":
        """org.systemd.property.* annotations of config.json become unit properties."""
        props.annotation_properties(annotations or {})     # refuse bad ones before anything
        self.annotations = dict(annotations or {})
        return self

    # -- what the other managers do, through the file-system backend -------------------
    def __getattr__(self, name):
        # freeze/thaw/is_frozen/pids/kill_all/stats/oom_watch/... act on the cgroup files
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.fs, name)

    @property
    def v2(self) -> bool:
        return self.fs.driver == "v2"

    def validate(self, resources: dict | None) -> dict:
        resources = self.fs.validate(resources or {})
        self.properties(resources)          # conversions may refuse a value too
        return resources

    def properties(self, resources: dict, update: bool = False) -> list:
        """(name, signature, value) unit properties for resources.  An update without
        device rules leaves systemd's device list alone (a new unit always gets one:
        deny-all plus runc's default devices when the config has no rules)."""
        out = props.resource_properties(resources, self.v2, self._systemd_version())
        if update and "devices" not in resources:
            out = [p for p in out if p[0] not in _DEVICE_PROPS]
        return out

    def _systemd_version(self) -> int | None:
        """systemd's version (some properties need a newer one), asked once; None before
        a connection exists (validation: assume a current systemd)."""
        if self._conn is None:
            return None
        if self._version is None:
            from hutch import dbus
            try:
                text = dbus.get_property(self._conn, SYSTEMD, SYSTEMD_PATH, MANAGER, "Version")
            except dbus.DBusError:
                text = ""
            self._version = props.parse_systemd_version(str(text))
        return self._version

    # -- lifecycle -----------------------------------------------------------------------
    def _bus(self):
        if self._conn is None:
            self._conn, self._owner = connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def create(self) -> None:
        """Nothing is made yet (a scope needs its first process): connect, so a systemd
        that does not answer is reported before any process exists.  The connection is
        kept for add_pid; the container process closes it first thing after the fork (as
        every fd it is not given), and --preserve-fds cannot hand it on: the runtime
        refuses a range with fds that were not open before it started."""
        self._bus()

    def apply(self, resources: dict | None) -> None:
        if not self.started:
            self._pending = self.validate(resources)   # written when add_pid starts the unit
            return
        self._bus()                                    # systemd's version decides some properties
        resources = self._with_current_cpu(self.validate(resources))
        self._set_unit_properties(self.properties(resources, update=True))
        self.fs.apply(resources)

    def _with_current_cpu(self, resources: dict) -> dict:
        """An update of the CPU quota or period alone: systemd's property needs both (as
        runc, which merges the update into the container's config), so take the other
        from the cgroup."""
        cpu = dict(resources.get("cpu") or {})
        if (cpu.get("quota") is None) == (cpu.get("period") is None):
            return resources                    # both given, or neither
        quota, period = self.fs.cpu_quota_period()
        if cpu.get("quota") is None and quota is not None:
            cpu["quota"] = quota
        if cpu.get("period") is None and period is not None:
            cpu["period"] = period
        return dict(resources, cpu=cpu)

    def add_pid(self, pid: int) -> None:
        """First call: start the scope with pid in it and the pending limits; later
        calls (exec) put pid in the cgroup through the backend."""
        if self.started:
            self.fs.add_pid(pid)
            return
        self._start_unit(pid)
        self.started = True
        # On a refusal the caller kills pid, then destroy() stops the unit: stopping it
        # first would wait for a container init that ignores systemd's SIGTERM.
        self.fs.create()                    # hierarchies systemd does not manage
        self.fs.add_pid(pid)
        self.fs.apply(self._pending)
        self.close()

    def _start_unit(self, pid: int) -> None:
        from hutch import dbus
        self._bus()
        # Resources after the annotations: they win, as in runc (which sets them later).
        properties = (props.base_properties(self.unit, self.slice, f"hutch container {self.id}",
                                            pid, self.v2)
                      + props.annotation_properties(self.annotations)
                      + self.properties(self._pending))
        args = (self.unit, "replace", _variants(properties), [])
        try:
            job = self._call("StartTransientUnit", "ssa(sv)a(sa(sv))", args)
        except dbus.DBusError as err:
            if err.name != "org.freedesktop.systemd1.UnitExists":
                raise self._error("start", err) from None
            # A failed unit of an earlier container with this name: reset it and retry once.
            self._reset_failed()
            try:
                job = self._call("StartTransientUnit", "ssa(sv)a(sa(sv))", args)
            except dbus.DBusError as err2:
                raise self._error("start", err2) from None
        result = self._wait_job(job[0])
        if result != "done":
            self._reset_failed()
            raise HutchError(f"systemd could not start unit {self.unit}: job {result}", where=WHERE)

    def _set_unit_properties(self, properties: list) -> None:
        from hutch import dbus
        if not properties:
            return
        # On v1 systemd rewrites device rules as deny-all then allow each one: freeze the
        # container meanwhile so it never sees a spurious EPERM (runc does the same).
        freeze = (not self.v2 and any(p[0] in _DEVICE_PROPS for p in properties)
                  and not self.fs.is_frozen())
        if freeze:
            self.fs.freeze()
        try:
            self._call("SetUnitProperties", "sba(sv)", (self.unit, True, _variants(properties)))
        except dbus.DBusError as err:
            raise self._error("update", err) from None
        finally:
            if freeze:
                self.fs.thaw()

    def destroy(self) -> None:
        """Stop the unit (systemd removes its cgroups), then remove the rest: the
        directories of hierarchies systemd does not manage are the unit's too."""
        if self.started:
            self._stop_unit()
        self.close()
        self.fs.created = sorted(set(self.fs.created) |
                                 {d for d in self.fs.leaf_dirs() if os.path.isdir(d)})
        self.fs.destroy()

    def _stop_unit(self) -> None:
        from hutch import dbus
        # systemd would stop the scope with SIGTERM and wait out its stop timeout for a
        # PID 1 that ignores it: whatever is left is killed first, as runc's cgroupfs
        # destroy does.
        if self.fs.exists() and self.fs.pids():
            self.fs.kill_all()
            self.fs.wait_empty(timeout=5.0)
        try:
            job = self._call("StopUnit", "ss", (self.unit, "replace"))
            self._wait_job(job[0])
        except dbus.DBusError as err:
            if err.name not in ("org.freedesktop.systemd1.NoSuchUnit",
                                "org.freedesktop.DBus.Error.UnknownObject"):
                raise self._error("stop", err) from None
        except HutchError:
            # systemd unreachable (it was stopped): still remove what is ours
            if self.fs.exists() and self.fs.pids():
                raise
        self._reset_failed()

    def destroy_quietly(self) -> None:
        try:
            self.destroy()
        except HutchError:
            pass

    def exists(self) -> bool:
        return self.fs.exists()

    # -- D-Bus helpers -------------------------------------------------------------------
    def _call(self, member: str, signature: str, args: tuple):
        return self._bus().call(SYSTEMD, SYSTEMD_PATH, MANAGER, member, signature, args,
                                timeout=JOB_TIMEOUT)

    def _reset_failed(self) -> None:
        from hutch import dbus
        try:
            self._call("ResetFailedUnit", "s", (self.unit,))
        except (dbus.DBusError, HutchError):
            pass        # nothing failed, or the unit is gone: nothing to reset

    def _wait_job(self, job_path: str) -> str:
        """Block until systemd reports the job finished; its result ('done', 'failed'...)."""
        from hutch import dbus

        def is_our_job(msg) -> bool:
            return (msg.member == "JobRemoved" and msg.interface == MANAGER
                    and (self._owner is None or msg.sender == self._owner)
                    and len(msg.body) >= 4 and msg.body[1] == job_path)
        try:
            msg = self._bus().wait_signal(is_our_job, JOB_TIMEOUT)
        except dbus.DBusTimeoutError:
            self._reset_failed()
            raise HutchError(f"timed out waiting for systemd to finish the job of unit "
                             f"{self.unit}", where=WHERE) from None
        except dbus.DBusError as err:
            raise HutchError(f"lost the connection to systemd while waiting for unit "
                             f"{self.unit}: {err}", where=WHERE) from None
        return msg.body[3]

    def _error(self, verb: str, err) -> HutchError:
        return HutchError(f"systemd refused to {verb} unit {self.unit}: {err.message or err.name}",
                          where=WHERE)


def _variants(properties: list) -> list:
    from hutch.dbus import Variant
    return [(name, Variant(sig, value)) for name, sig, value in properties]
