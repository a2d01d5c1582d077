"""The systemd driver's own logic (no systemd needed): names, paths, state, the
properties it sends, and the error when systemd cannot be reached."""

from __future__ import annotations

import pytest

from hutch.cgroups import paths
from hutch.cgroups.systemd import SystemdManager, connect
from hutch.errors import ConfigError, HutchError


def manager(cgroups_path: str | None, cid: str = "c1") -> SystemdManager:
    return SystemdManager.for_container(cid, cgroups_path, paths.DEFAULT_ROOT)


def test_unit_and_cgroup_path_follow_runc():
    m = manager("machine-web.slice:libpod:abc")
    assert m.unit == "libpod-abc.scope" and m.slice == "machine-web.slice"
    assert m.fs.leaf_dirs()[0].endswith("/machine.slice/machine-web.slice/libpod-abc.scope")


def test_default_path_is_system_slice_hutch_scope():
    m = manager(None, cid="web")
    assert (m.unit, m.slice) == ("hutch-web.scope", "system.slice")


def test_slice_as_container_cgroup_is_refused():
    with pytest.raises(ConfigError) as exc:
        manager("system.slice:x:extra.slice")
    assert exc.value.where == "linux.cgroupsPath"
    assert "extra.slice" in exc.value.message and "system.slice:x:NAME" in exc.value.message


def test_state_round_trip_keeps_unit_and_backend():
    m = manager("system.slice:hutch:c1")
    again = SystemdManager.from_state(m.to_state())
    assert (again.unit, again.slice, again.fs.leaf_dirs()) == (m.unit, m.slice, m.fs.leaf_dirs())
    assert not again.started          # no unit yet: delete must not stop a namesake
    m.started = True
    assert SystemdManager.from_state(m.to_state()).started


@pytest.mark.parametrize("pid1_cgroup, prefix", [
    ("/init.scope", "/"), ("/", "/"), ("/machine.slice/box.scope/init.scope", "/machine.slice/box.scope"),
    ("/lxc/c1", "/lxc/c1"),
])
def test_unit_path_starts_where_pid1s_tree_does(pid1_cgroup, prefix):
    """runc's getSubsystemPath: systemd's tree begins at PID 1's cgroup minus init.scope."""
    from hutch.cgroups.systemd import _init_prefix
    assert _init_prefix(pid1_cgroup) == prefix


def test_update_without_device_rules_does_not_reset_systemds_list():
    m = manager("system.slice:hutch:c1")
    names = [p[0] for p in m.properties({"pids": {"limit": 5}}, update=True)]
    assert names == ["TasksMax"]
    # a new unit always gets a device policy: runc's deny-all plus its default devices
    assert "DevicePolicy" in [p[0] for p in m.properties({"pids": {"limit": 5}})]
    with_devices = [p[0] for p in m.properties({"devices": [{"allow": False, "access": "rwm"}]})]
    assert "DevicePolicy" in with_devices and "DeviceAllow" in with_devices


def test_bad_annotation_is_refused_before_anything():
    with pytest.raises(ConfigError):
        manager("system.slice:hutch:c1").with_annotations(
            {"org.systemd.property.TimeoutStopUSec": "not a value ("})


def test_unreachable_systemd_is_one_clear_error(monkeypatch, tmp_path):
    from hutch.dbus import client as dbus
    monkeypatch.setattr(dbus, "system_bus_addresses", lambda: [
        (f"unix:path={tmp_path}/no-bus", True), (f"unix:path={tmp_path}/no-private", False)])
    with pytest.raises(HutchError) as exc:
        connect(timeout=1)
    text = str(exc.value)
    assert "cannot reach systemd over D-Bus" in text and "no-bus" in text and "\n" not in text
