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


def _fs_manager(container_id: str, cgroup_path: str, root: str):
    """The v1 or v2 backend pointed at the unit's cgroup (an absolute cgroupsPath)."""
    if paths.detect(root) == "v2":
        from hutch.cgroups.v2 import V2Manager
        return V2Manager.for_container(container_id, cgroup_path, root)
    from hutch.cgroups.v1 import V1Manager
    return V1Manager.for_container(container_id, cgroup_path, root)


def _fs_from_state(data: dict):
    if data.get("driver") == "v2":
        from hutch.cgroups.v2 import V2Manager
        return V2Manager.from_state(data)
    from hutch.cgroups.v1 import V1Manager
    return V1Manager.from_state(data)


def connect(timeout: float = 5.0):
    """A D-Bus connection to systemd (system bus, else its private socket as root),
    subscribed to job signals."""
    from hutch.sys import dbus
    try:
        conn = dbus.connect_systemd(timeout)
    except dbus.DBusError as err:
        raise HutchError(f"cannot reach systemd over D-Bus: {err}", where=WHERE) from None
    try:
        # no sender= in the rule: on the bus systemd sends under its unique name
        conn.add_match(f"type='signal',path='{SYSTEMD_PATH}',interface='{MANAGER}',"
                       "member='JobRemoved'")
        conn.call(SYSTEMD, SYSTEMD_PATH, MANAGER, "Subscribe")
    except dbus.DBusError as err:
        conn.close()
        raise HutchError(f"cannot subscribe to systemd's job signals: {err}", where=WHERE) from None
    return conn


class SystemdManager:
    """The cgroup manager interface (see hutch.cgroups) over a systemd unit."""

    driver = "systemd"

    def __init__(self, container_id: str, unit: str, slice_: str, fs, started: bool = False,
                 annotations: dict | None = None):
        self.id = container_id
        self.unit = unit
        self.slice = slice_
        self.fs = fs                  # the v1/v2 backend on the unit's cgroup
        self.started = started
        self.annotations = dict(annotations or {})
        self._pending: dict = {}      # resources given before the unit exists
        self._conn = None
        self._version: int | None = None

    # -- construction and state --------------------------------------------------------
    @classmethod
    def for_container(cls, container_id: str, cgroups_path: str | None,
                      root: str = paths.DEFAULT_ROOT) -> "SystemdManager":
        slice_, prefix, name = paths.parse_systemd_path(container_id, cgroups_path)
        unit = props.unit_name(prefix, name)
        if unit.endswith(".slice"):
            # runc can make a slice the container's cgroup; a slice holds no processes
            # of its own, so hutch asks for a scope (say so rather than half-work).
            raise ConfigError(f"cgroupsPath names a slice unit ({unit}): hutch places a "
                              "container in a scope; use slice:prefix:name with a plain name",
                              where=paths.WHERE)
        cgroup_path = props.unit_cgroup_path(slice_, unit)
        return cls(container_id, unit, slice_, _fs_manager(container_id, cgroup_path, root))

    def to_state(self) -> dict:
        return {"driver": "systemd", "id": self.id, "unit": self.unit, "slice": self.slice,
                "fs": self.fs.to_state()}

    @classmethod
    def from_state(cls, data: dict) -> "SystemdManager":
        # A saved container had its first process placed (or never will: then stopping
        # the unit finds none, which is fine), so the unit is treated as started.
        return cls(data.get("id", ""), data["unit"], data.get("slice", "system.slice"),
                   _fs_from_state(data.get("fs") or {}), started=True)

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

    def properties(self, resources: dict) -> list:
        """(name, signature, value) unit properties for resources.  Device properties only
        when the rules are given: an update without them must not reset systemd's list."""
        out = props.resource_properties(resources, self.v2, self._systemd_version())
        if "devices" not in resources:
            out = [p for p in out if p[0] not in _DEVICE_PROPS]
        return out

    def _systemd_version(self) -> int | None:
        """systemd's version (some properties need a newer one), asked once; None before
        a connection exists (validation: assume a current systemd)."""
        if self._conn is None:
            return None
        if self._version is None:
            from hutch.sys import dbus
            try:
                text = dbus.get_property(self._conn, SYSTEMD, SYSTEMD_PATH, MANAGER, "Version")
            except dbus.DBusError:
                text = ""
            self._version = props.parse_systemd_version(str(text))
        return self._version

    # -- lifecycle -----------------------------------------------------------------------
    def _bus(self):
        if self._conn is None:
            self._conn = connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def create(self) -> None:
        """Nothing is made yet (a scope needs its first process); check systemd answers,
        so a missing systemd is reported before any process exists."""
        self._bus()

    def apply(self, resources: dict | None) -> None:
        resources = self.validate(resources)
        if not self.started:
            self._pending = resources       # written when add_pid starts the unit
            return
        self._set_unit_properties(self.properties(resources))
        self.fs.apply(resources)

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

    def _start_unit(self, pid: int) -> None:
        from hutch.sys import dbus
        properties = (props.base_properties(self.unit, self.slice, f"hutch container {self.id}",
                                            pid, self.v2)
                      + self.properties(self._pending)
                      + props.annotation_properties(self.annotations))
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
        from hutch.sys import dbus
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
        """Stop the unit (systemd removes its cgroups), then remove what the backend made."""
        from hutch.sys import dbus
        if self.started:
            # systemd would stop the scope with SIGTERM and wait out its stop timeout for
            # a PID 1 that ignores it: whatever is left is killed first, as runc's cgroupfs
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
                if self.exists() and self.fs.pids():
                    raise
            self._reset_failed()
        self.close()
        self.fs.destroy()

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
        from hutch.sys import dbus
        try:
            self._call("ResetFailedUnit", "s", (self.unit,))
        except (dbus.DBusError, HutchError):
            pass        # nothing failed, or the unit is gone: nothing to reset

    def _wait_job(self, job_path: str) -> str:
        """Block until systemd reports the job finished; its result ('done', 'failed'...)."""
        def is_our_job(msg) -> bool:
            return (msg.member == "JobRemoved" and msg.interface == MANAGER
                    and len(msg.body) >= 4 and msg.body[1] == job_path)
        try:
            msg = self._bus().wait_signal(is_our_job, JOB_TIMEOUT)
        except HutchError:
            raise HutchError(f"timed out waiting for systemd to finish the job of unit "
                             f"{self.unit}", where=WHERE) from None
        return msg.body[3]

    def _error(self, verb: str, err) -> HutchError:
        return HutchError(f"systemd refused to {verb} unit {self.unit}: {err.message or err.name}",
                          where=WHERE)


def _variants(properties: list) -> list:
    from hutch.sys.dbus import Variant
    return [(name, Variant(sig, value)) for name, sig, value in properties]


def unit_of_pid(pid: int) -> str | None:
    """The unit a process is in, from /proc/PID/cgroup (tests and `hutch ps` use it)."""
    cg = paths.own_cgroups(pid)
    path = cg.get("") or cg.get("systemd") or ""
    base = os.path.basename(path)
    return base if base.endswith((".scope", ".service", ".slice")) else None
