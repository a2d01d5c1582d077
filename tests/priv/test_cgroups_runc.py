"""Differential: the files runc writes for linux.resources against what hutch's
manager writes for the same resources (cgroup v1 hybrid host)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

import hutch.cgroups as cg

V1 = "/sys/fs/cgroup"
pytestmark = pytest.mark.skipif(cg.detect(V1) != "v1", reason="compares cgroup v1 files")

RESOURCES = {
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "b", "major": 253, "minor": 0, "access": "r"},
                {"allow": False, "type": "c", "major": 1, "minor": 9, "access": "w"}],
    "memory": {"limit": 256 << 20, "reservation": 128 << 20, "swap": 512 << 20, "swappiness": 30,
               "disableOOMKiller": True},
    "cpu": {"shares": 512, "quota": 30000, "period": 50000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 50},
    "blockIO": {"weight": 300,
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 254, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 200}]},
}

FILES = {
    "memory": ["memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes",
               "memory.swappiness", "memory.oom_control"],
    "cpu": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "pids": ["pids.max"],
    "blkio": ["blkio.bfq.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
              "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"],
    "devices": ["devices.list"],
}


def snapshot(rel: str) -> dict[str, str]:
    out = {}
    for ctl, names in FILES.items():
        for name in names:
            path = os.path.join(V1, ctl, rel.lstrip("/"), name)
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                if name == "memory.oom_control":       # the oom_kill counters are not settings
                    text = "\n".join(l for l in text.splitlines() if l.startswith("oom_kill_disable"))
                if name == "devices.list":              # same rules, in any order
                    text = "\n".join(sorted(text.splitlines()))
                out[f"{ctl}/{name}"] = text.strip()
    return out


def runc_detached(runc_bin: str, state_root: str, bundle_dir, cid: str, tmp_path):
    """`runc run -d`: (result, its stderr).  The detached container inherits runc's
    stdio: a file, not a pipe we would wait on."""
    err_path = tmp_path / "runc.err"
    with open(err_path, "w") as err:
        run = subprocess.run([runc_bin, "--root", state_root, "run", "-d", "--bundle",
                              str(bundle_dir), cid], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, timeout=60)
    return run, err_path.read_text()


def test_same_files_as_runc(bundle, runc_bin, tmp_path):
    tag = uuid.uuid4().hex[:8]
    runc_path, hutch_path = f"/hutch-test-runc-{tag}", f"/hutch-test-diff-{tag}"
    cid = f"hutch-test-{tag}"
    b = bundle(["sleep", "30"], linux={"cgroupsPath": runc_path, "resources": RESOURCES})
    state_root = str(tmp_path / "runc-state")
    run, err = runc_detached(runc_bin, state_root, b, cid, tmp_path)
    m = cg.for_container(cid, hutch_path)
    try:
        assert run.returncode == 0, err
        theirs = snapshot(runc_path)
        m.create()
        m.apply(RESOURCES)
        ours = snapshot(hutch_path)
        assert len(theirs) >= 15
        assert ours == theirs
        # `runc update` flags against resources_from_options of the same flags
        flags = {"memory": "300m", "memory_swap": "600m", "cpu_shares": "256", "pids_limit": "20",
                 "cpu_quota": "40000", "cpuset_cpus": "0-1"}
        runc_flag = {"cpu_shares": "--cpu-share"}         # runc 1.1 spells it in the singular
        argv = [x for k, v in flags.items()
                for x in (runc_flag.get(k, f"--{k.replace('_', '-')}"), v)]
        upd = subprocess.run([runc_bin, "--root", state_root, "update", *argv, cid],
                             capture_output=True, text=True, timeout=60)
        assert upd.returncode == 0, upd.stderr
        m.apply(cg.resources_from_options(**flags))
        theirs, ours = snapshot(runc_path), snapshot(hutch_path)
        assert theirs["memory/memory.limit_in_bytes"] == str(300 << 20)
        assert ours == theirs
        # the same hierarchies (the unified one and name=systemd of the hybrid host too)
        def hierarchies(rel):
            return sorted(h for h in os.listdir(V1) if os.path.isdir(os.path.join(V1, h, rel.lstrip("/"))))
        assert hierarchies(hutch_path) == hierarchies(runc_path)
        assert "unified" in hierarchies(runc_path)
    finally:
        subprocess.run([runc_bin, "--root", state_root, "delete", "-f", cid],
                       capture_output=True, timeout=60)
        m.destroy()


@pytest.mark.parametrize("rules", [
    [],                                                                  # none: runc's defaults
    [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],   # no leading deny
    [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 9,
                                        "access": "rwm"}],              # allow-all with a hole
])
def test_device_rules_start_from_deny_all_like_runc(bundle, runc_bin, tmp_path, rules):
    """runc's device cgroup starts deny-all whatever the list opens with; a v1 cgroup
    starts allow-all, so the rules alone are not enough."""
    tag = uuid.uuid4().hex[:8]
    runc_path, hutch_path = f"/hutch-test-runc-{tag}", f"/hutch-test-diff-{tag}"
    cid = f"hutch-test-{tag}"
    b = bundle(["sleep", "30"], linux={"cgroupsPath": runc_path, "resources": {"devices": rules}})
    state_root = str(tmp_path / "runc-state")
    run, err = runc_detached(runc_bin, state_root, b, cid, tmp_path)
    m = cg.for_container(cid, hutch_path)
    try:
        assert run.returncode == 0, err
        m.create()
        m.apply({"devices": rules})
        theirs, ours = snapshot(runc_path), snapshot(hutch_path)
        assert ours["devices/devices.list"] == theirs["devices/devices.list"]
    finally:
        subprocess.run([runc_bin, "--root", state_root, "delete", "-f", cid],
                       capture_output=True, timeout=60)
        m.destroy()
