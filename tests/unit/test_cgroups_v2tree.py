"""The cgroup v2 backend against a temporary tree of interface files: the controllers
this host keeps on v1 (memory, cpu, io, pids, cpuset) are written as runc writes them
on a v2 host, and nothing stays half-applied when one write fails."""

from __future__ import annotations

import os

import pytest

import hutch.cgroups as cg
from hutch.errors import ConfigError, HutchError

FILES = ["cgroup.procs", "cgroup.freeze", "cgroup.events", "cgroup.kill", "cgroup.subtree_control",
         "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpu.stat", "cpuset.cpus", "cpuset.mems",
         "memory.max", "memory.swap.max", "memory.low", "memory.high", "memory.current",
         "memory.events", "memory.stat", "memory.peak", "pids.max", "pids.current", "io.weight",
         "io.max", "io.stat", "hugetlb.2MB.max", "hugetlb.2MB.current", "hugetlb.2MB.events",
         "rdma.max"]
CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma"


def make_tree(root, rel="hutch/c1", values=None):
    """root with cgroup.controllers, and the container directory with its files."""
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    (root / "cgroup.subtree_control").write_text("")
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    for parent in [p for p in d.parents if str(p).startswith(str(root)) and p != root]:
        (parent / "cgroup.subtree_control").write_text("")
        (parent / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    for name in FILES:
        (d / name).write_text("")
    for name, value in (values or {}).items():
        (d / name).write_text(value)
    return d


def read(d, name):
    return (d / name).read_text().strip()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "cg2"
    d = make_tree(root, values={"cpu.weight": "100", "memory.max": "max", "pids.max": "max",
                                "cpu.max": "max 100000"})
    m = cg.for_container("c1", None, root=str(root))
    return root, d, m


def test_detect_by_files(tmp_path):
    make_tree(tmp_path / "cg2")
    assert cg.detect(str(tmp_path / "cg2")) == "v2"
    (tmp_path / "v1").mkdir()
    assert cg.detect(str(tmp_path / "v1")) == "v1"


def test_v2_writes_converted_values(tree):
    root, d, m = tree
    assert m.driver == "v2" and m.path == str(d)
    m.apply({"memory": {"limit": 256 << 20, "swap": 512 << 20, "reservation": 128 << 20},
             "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0",
                     "burst": 1000, "idle": 0},
             "pids": {"limit": 100},
             "blockIO": {"weight": 500,
                         "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
             "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
             "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 100}},
             "unified": {"memory.high": "300000000"}})
    assert read(d, "memory.max") == str(256 << 20)
    assert read(d, "memory.swap.max") == str(256 << 20)          # swap alone = 512m - 256m
    assert read(d, "memory.low") == str(128 << 20)
    assert read(d, "cpu.weight") == "39"                          # from shares 1024
    assert read(d, "cpu.max") == "50000 100000"
    assert read(d, "cpu.max.burst") == "1000"
    assert read(d, "cpuset.cpus") == "0"
    assert read(d, "pids.max") == "100"
    assert read(d, "io.weight") == "4950"                         # from blkio weight 500
    assert read(d, "io.max") == "254:0 rbps=1048576"
    assert read(d, "hugetlb.2MB.max") == "4194304"
    assert read(d, "rdma.max") == "mlx5_1 hca_handle=3 hca_object=100"
    assert read(d, "memory.high") == "300000000"


def test_v2_unlimited_values(tree):
    root, d, m = tree
    m.apply({"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}})
    assert read(d, "memory.max") == "max"
    assert read(d, "memory.swap.max") == "max"
    assert read(d, "pids.max") == "max"
    assert read(d, "cpu.max") == "max"


def test_v2_enables_controllers_in_ancestors(tree):
    root, d, m = tree
    m.apply({"pids": {"limit": 5}})
    assert (root / "cgroup.subtree_control").read_text() == "+pids"
    assert (root / "hutch" / "cgroup.subtree_control").read_text() == "+pids"


def test_v2_failure_rolls_back_earlier_writes(tree):
    root, d, m = tree
    (d / "pids.max").unlink()
    (d / "pids.max").mkdir()           # writing it now fails (EISDIR)
    with pytest.raises(HutchError) as exc:
        m.apply({"cpu": {"shares": 1024}, "memory": {"limit": 1 << 20}, "pids": {"limit": 5}})
    assert exc.value.where == "linux.resources.pids.limit"
    assert "5" in exc.value.message
    assert read(d, "cpu.weight") == "100"       # restored
    assert read(d, "memory.max") == "max"       # restored
    (d / "pids.max").rmdir()


def test_v2_rejects_what_it_cannot_do(tree):
    root, d, m = tree
    cases = [({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime"),
             ({"network": {"classID": 1}}, "linux.resources.network"),
             ({"blockIO": {"leafWeight": 100}}, "linux.resources.blockIO.leafWeight"),
             ({"unified": {"memory.nosuch": "1"}}, "linux.resources.unified.memory.nosuch"),
             ({"unified": {"misc.max": "1"}}, "linux.resources.unified.misc.max"),
             ({"memory": {"swap": 100}}, "linux.resources.memory.swap")]
    for resources, where in cases:
        with pytest.raises(HutchError) as exc:
            m.apply(resources)
        assert exc.value.where == where, resources
    assert read(d, "memory.max") == "max"


def test_v2_missing_controller_is_reported_before_writing(tmp_path):
    root = tmp_path / "cg2"
    d = make_tree(root, values={"cpu.weight": "100"})
    (root / "cgroup.controllers").write_text("cpu\n")
    m = cg.for_container("c1", None, root=str(root))
    with pytest.raises(HutchError) as exc:
        m.apply({"cpu": {"shares": 2048}, "pids": {"limit": 5}})
    assert exc.value.where == "linux.resources.pids.limit"
    assert read(d, "cpu.weight") == "100"


def test_v2_validate_has_no_side_effects(tree):
    root, d, m = tree
    m.validate({"pids": {"limit": 5}})
    assert read(d, "pids.max") == "max"
    assert (root / "cgroup.subtree_control").read_text() == ""
    with pytest.raises(ConfigError):
        m.validate({"pids": {"limit": "5"}})


def test_v2_stats_and_oom_count(tree):
    root, d, m = tree
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 10\nnr_throttled 4\nthrottled_usec 200\n")
    (d / "memory.current").write_text("4096\n")
    (d / "memory.max").write_text("8192\n")
    (d / "memory.stat").write_text("file 1024\nanon 3072\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 3\n")
    (d / "pids.current").write_text("7\n")
    (d / "pids.max").write_text("max\n")
    (d / "io.stat").write_text("254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n")
    (d / "hugetlb.2MB.current").write_text("0\n")
    s = m.stats()
    assert s["cpu"]["usage"] == {"total": 1_500_000, "user": 1_000_000, "kernel": 500_000}
    assert s["cpu"]["throttling"] == {"periods": 10, "throttled_periods": 4, "throttled_time": 200_000}
    assert s["memory"]["usage"]["usage"] == 4096 and s["memory"]["usage"]["limit"] == 8192
    assert s["memory"]["cache"] == 1024 and s["memory"]["usage"]["failcnt"] == 2
    assert s["pids"] == {"current": 7, "limit": 0}
    assert {"major": 254, "minor": 0, "op": "Write", "value": 200} in s["blkio"]["ioServiceBytesRecursive"]
    assert "2MB" in s["hugetlb"]
    assert m.oom_kill_count() == 3


def test_v2_state_round_trip(tree):
    root, d, m = tree
    again = cg.from_state(m.to_state())
    assert again.path == m.path and again.driver == "v2"


def test_relative_path_is_under_own_cgroup(tmp_path, monkeypatch):
    from hutch.cgroups import paths
    root = tmp_path / "cg2"
    make_tree(root, rel="parent/x")
    monkeypatch.setattr(paths, "own_cgroups", lambda pid="self": {"": "/parent"})
    m = cg.for_container("c1", "x", root=str(root))
    assert m.path == str(root / "parent" / "x")
    m = cg.for_container("c1", "/abs/y", root=str(root))
    assert m.path == str(root / "abs" / "y")


def test_create_and_destroy_remove_only_created_dirs(tmp_path):
    root = tmp_path / "cg2"
    make_tree(root, rel="existing")
    m = cg.for_container("c1", "/existing/a/b", root=str(root))
    m.create()
    m.create()                                      # idempotent
    assert os.path.isdir(root / "existing" / "a" / "b")
    m2 = cg.from_state(m.to_state())                # as after a crash
    m2.destroy()
    assert not (root / "existing" / "a").exists()
    assert (root / "existing").is_dir()
