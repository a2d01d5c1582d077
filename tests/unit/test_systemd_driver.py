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


def test_state_round_trip_keeps_unit_and_backend():
    m = manager("system.slice:hutch:c1")
    again = SystemdManager.from_state(m.to_state())
    assert (again.unit, again.slice, again.fs.leaf_dirs()) == (m.unit, m.slice, m.fs.leaf_dirs())
    assert again.started      # a saved container's unit is stopped on delete


def test_update_without_device_rules_does_not_reset_systemds_list():
    m = manager("system.slice:hutch:c1")
    names = [p[0] for p in m.properties({"pids": {"limit": 5}})]
    assert names == ["TasksMax"]
    with_devices = [p[0] for p in m.properties({"devices": [{"allow": False, "access": "rwm"}]})]
    assert "DevicePolicy" in with_devices and "DeviceAllow" in with_devices


def test_bad_annotation_is_refused_before_anything():
    with pytest.raises(ConfigError):
        manager("system.slice:hutch:c1").with_annotations(
            {"org.systemd.property.TimeoutStopUSec": "not a value ("})


def test_unreachable_systemd_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with pytest.raises(HutchError) as exc:
        connect(timeout=1)
    text = str(exc.value)
    assert "cannot reach systemd over D-Bus" in text and "no-bus" in text and "\n" not in text
