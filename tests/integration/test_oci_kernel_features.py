"""Kernel features of config.json that runc 1.1.5 lacks or handles differently (issue 10):
what the container sees, next to runc 1.1.5 (and crun 1.8 where runc 1.1.5 lacks the
feature), with the differences written down where hutch follows newer runc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.oci import Runtime, oci, ref_oci, new_id, runtimes  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

FIRST_POLICY = ["sh", "-c", "head -n 1 /proc/self/numa_maps | cut -d ' ' -f 2"]


def online_nodes() -> str:
    return Path("/sys/devices/system/node/online").read_text().strip()


# -- linux.memoryPolicy ------------------------------------------------------------------------
@pytest.mark.parametrize("policy, shown", [
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]},
     "prefer=relative:0"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_DEFAULT"}, "default"),
])
def test_memory_policy_is_applied(oci, ref_oci, bundle, policy, shown):
    """The policy the kernel reports for the container's first mapping (what runc 1.3's
    own tests read). runc 1.1.5 has no memoryPolicy: it ignores the field."""
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy (runc 1.3 applies it)")
    b = bundle(FIRST_POLICY, linux={"memoryPolicy": policy})
    res = oci.run(new_id(), b)
    assert (res.returncode, res.stdout.strip()) == (0, shown), res.stderr
    if ref_oci is not None:
        res = ref_oci.run(new_id(), b)
        assert (res.returncode, res.stdout.strip()) == (0, "default"), res.stderr


def test_memory_policy_reaches_exec(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy")
    cid = new_id()
    b = bundle(["sleep", "30"], linux={"memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0"}})
    assert oci.create(cid, b).returncode == 0
    res = oci.exec(cid, *FIRST_POLICY)
    assert (res.returncode, res.stdout.strip()) == (0, "interleave:0"), res.stderr


@pytest.mark.parametrize("policy, where", [
    ({"mode": "MPOL_BOGUS"}, "linux.memoryPolicy.mode"),
    ({"nodes": "0"}, "linux.memoryPolicy.mode"),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0-x"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "3-1"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_BOGUS"]},
     "linux.memoryPolicy.flags[0]"),
    ({"mode": "MPOL_BIND", "nodes": "0",
      "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}, "linux.memoryPolicy.flags"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
     "linux.memoryPolicy.flags"),
])
def test_invalid_memory_policy_is_refused_at_validation(oci, bundle, tmp_path, policy, where):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy")
    cid = new_id()
    res = oci.create(cid, bundle(["true"], linux={"memoryPolicy": policy}))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and where + ":" in res.stderr, res.stderr
    assert oci.status(cid) is None     # nothing half-created


def test_memory_policy_on_a_missing_node_names_the_online_ones(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy")
    missing = max(int(part.split("-")[-1]) for part in online_nodes().split(",")) + 1
    cid = new_id()
    res = oci.run(cid, bundle(["true"], linux={"memoryPolicy": {"mode": "MPOL_BIND",
                                                                "nodes": str(missing)}}))
    assert res.returncode == 1
    assert "linux.memoryPolicy" in res.stderr and f"online here: {online_nodes()}" in res.stderr


# -- realtime budgets on cgroup v1 and process.scheduler -----------------------------------------
CPU_V1 = Path("/sys/fs/cgroup/cpu")
RT_SHOW = ["sh", "-c", "cut -d ' ' -f 40,41 /proc/self/stat; "
           "cat /sys/fs/cgroup/cpu/cpu.rt_runtime_us /sys/fs/cgroup/cpu/cpu.rt_period_us"]
needs_rt_groups = pytest.mark.skipif(not (CPU_V1 / "cpu.rt_runtime_us").exists(),
                                     reason="needs cgroup v1 cpu with CONFIG_RT_GROUP_SCHED")


def rt_bundle(bundle, args=RT_SHOW, runtime=20000, period=500000, **linux):
    devices = [{"allow": False, "access": "rwm"}]
    return bundle(args, process={"scheduler": {"policy": "SCHED_FIFO", "priority": 1}},
                  linux={"resources": {"devices": devices,
                                       "cpu": {"realtimeRuntime": runtime, "realtimePeriod": period}},
                         **linux})


@needs_rt_groups
def test_realtime_budget_and_fifo_scheduler(oci, ref_oci, bundle):
    """The container's cpu group gets its budget under the default /hutch parent, and its
    process runs SCHED_FIFO priority 1 (/proc/self/stat fields 40 and 41). runc 1.1.5 puts
    the container at /<id> and sets the same budget, but ignores process.scheduler."""
    b = rt_bundle(bundle)
    res = oci.run(new_id(), b)
    assert res.returncode == 0, res.stderr
    policy, *budget = res.stdout.splitlines()
    assert budget == ["20000", "500000"]
    if ref_oci is not None:
        ref = ref_oci.run(new_id(), b)
        assert ref.returncode == 0, ref.stderr
        assert ref.stdout.splitlines() == ["0 0", *budget]    # runc 1.1.5: no scheduler
    if not oci.is_runc:
        assert policy == "1 1"


@needs_rt_groups
def test_fifo_without_a_budget_says_what_is_missing(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores process.scheduler")
    b = bundle(["true"], process={"scheduler": {"policy": "SCHED_FIFO", "priority": 1}})
    res = oci.run(new_id(), b)
    assert res.returncode == 1
    assert "process.scheduler" in res.stderr and "realtimeRuntime" in res.stderr


@pytest.fixture
def rt_parent():
    """A cgroup parent of the test's own (made in the cpu hierarchy; the runtimes make it
    in the others, and neither removes a parent it shares: removed at teardown)."""
    name = new_id("hutch-test-rt")
    yield name
    for top in Path("/sys/fs/cgroup").glob(f"*/{name}"):
        for d in sorted([top, *top.glob("**/")], key=lambda p: len(p.parts), reverse=True):
            if d.is_dir():
                d.rmdir()


@needs_rt_groups
def test_parent_budget_goes_back_when_the_last_container_goes(oci, bundle, rt_parent):
    """Two containers under a parent of the caller's (cgroupsPath /P/<id>): the parent
    gets room for both (20000/500000 each = 40000 us per its 1 s period), and each
    delete gives its share back; the parent is left as it was found."""
    if oci.is_runc:
        pytest.skip("runc 1.1.5 sets no parent budget: its create fails under a fresh parent")
    (CPU_V1 / rt_parent).mkdir()
    budget = CPU_V1 / rt_parent / "cpu.rt_runtime_us"
    assert budget.read_text().strip() == "0"
    ids = [new_id(), new_id()]
    for cid in ids:
        b = rt_bundle(bundle, ["sleep", "30"], cgroupsPath=f"/{rt_parent}/{cid}")
        res = oci.create(cid, b)
        assert res.returncode == 0, res.stderr
    assert budget.read_text().strip() == "80000"
    assert oci.delete(ids[0], force=True).returncode == 0
    assert budget.read_text().strip() == "40000"
    assert oci.delete(ids[1], force=True).returncode == 0
    assert budget.read_text().strip() == "0"
    assert [p.name for p in (CPU_V1 / rt_parent).iterdir() if p.is_dir()] == []


@needs_rt_groups
def test_runc_fails_under_a_parent_without_budget(ref_oci, bundle, rt_parent):
    """Why hutch raises parents: runc 1.1.5 under the same fresh parent is refused."""
    if ref_oci is None:
        pytest.skip("needs runc as the reference")
    (CPU_V1 / rt_parent).mkdir()
    cid = new_id()
    res = ref_oci.run(cid, rt_bundle(bundle, ["true"], cgroupsPath=f"/{rt_parent}/{cid}"))
    assert res.returncode != 0 and "rt_runtime_us" in res.stderr


# -- joining a mount namespace by path ------------------------------------------------------------
@pytest.fixture
def mount_ns_holder():
    """Factory: a process holding a private mount namespace of its own (killed at teardown:
    the namespace and every mount made in it go with it)."""
    holders = []

    def make() -> subprocess.Popen:
        proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "60"])
        holders.append(proc)
        own = os.readlink("/proc/self/ns/mnt")
        for _ in range(200):
            if os.readlink(f"/proc/{proc.pid}/ns/mnt") != own:
                return proc
            subprocess.run(["sleep", "0.01"])
        raise AssertionError("unshare did not make a mount namespace")
    yield make
    for proc in holders:
        proc.kill()
        proc.wait()


def test_joined_mount_namespace_gets_the_rootfs(oci, ref_oci, bundle, mount_ns_holder):
    """runc joins the namespace and sets the rootfs up inside it, pivoting its root (the
    holder's root becomes the container's rootfs too): hutch does the same."""
    outs = []
    for rt in runtimes(oci, ref_oci):
        holder = mount_ns_holder()
        ns_path = f"/proc/{holder.pid}/ns/mnt"
        namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "cgroup")]
        b = bundle(["sh", "-c", "readlink /proc/self/ns/mnt; ls /"],
                   linux={"namespaces": [*namespaces, {"type": "mount", "path": ns_path}]})
        res = rt.run(new_id(), b)
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        ns, *listing = res.stdout.split()
        assert ns == os.readlink(ns_path)
        assert "bin" in listing
        # The holder's root was pivoted too: it is the container's rootfs now.
        assert sorted(os.listdir(f"/proc/{holder.pid}/root/")) == sorted(listing)
        assert not os.path.exists(f"/proc/{holder.pid}/root/{Path(__file__).parent}")
        outs.append(listing)
    assert all(out == outs[0] for out in outs)


def test_the_runtimes_own_mount_namespace_is_refused(oci, bundle):
    """runc would pivot its own (the host's) root there; hutch refuses, naming the entry."""
    if oci.is_runc:
        pytest.skip("runc sets the rootfs up in whatever namespace the path names")
    namespaces = [{"type": "pid"}, {"type": "mount", "path": "/proc/self/ns/mnt"}]
    cid = new_id()
    res = oci.create(cid, bundle(["true"], hostname=None, linux={"namespaces": namespaces}))
    assert res.returncode == 1
    assert "linux.namespaces[1].path" in res.stderr and "own or init's mount namespace" in res.stderr
    assert oci.status(cid) is None


def test_no_mount_namespace_is_refused_and_says_why(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc mounts the rootfs in its caller's namespace")
    cid = new_id()
    res = oci.create(cid, bundle(["true"], hostname=None, linux={"namespaces": [{"type": "pid"}]}))
    assert res.returncode == 1
    assert "linux.namespaces" in res.stderr and "caller's namespace" in res.stderr


# -- a cgroup mount over an rbind of the host's /sys (no network namespace) ----------------------
SYS_RBIND_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/sys", "type": "bind", "source": "/sys",
     "options": ["rprivate", "nosuid", "noexec", "nodev", "ro", "rbind"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"]},
]


@pytest.mark.parametrize("cgroupns", [True, False])
def test_cgroup_mount_over_a_sys_rbind(oci, ref_oci, bundle, cgroupns):
    """Without a network namespace /sys is the host's, bound (crun's test suite does
    this): the rbind brings the host's cgroup mounts into the rootfs. The cgroup mount
    then lays the same set of mounts on /sys/fs/cgroup as runc does (it used to meet each
    hierarchy twice: EBUSY with a cgroup namespace, ENOENT without)."""
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if cgroupns:
        namespaces.append({"type": "cgroup"})
    b = bundle(["sh", "-c", "grep ' /sys/fs/cgroup' /proc/self/mountinfo"],
               mounts=SYS_RBIND_MOUNTS,
               linux={"namespaces": namespaces, "resources": None, "maskedPaths": None,
                      "readonlyPaths": None})
    seen = []
    for rt in runtimes(oci, ref_oci):
        res = rt.run(new_id(), b)
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        # mount point and type (the roots differ: runc puts the container at /<id>)
        mounts = sorted((line.split()[4], line.split(" - ")[1].split()[0])
                        for line in res.stdout.splitlines())
        assert ("/sys/fs/cgroup", "tmpfs") in mounts and ("/sys/fs/cgroup/cpu", "cgroup") in mounts
        seen.append(mounts)
    assert all(mounts == seen[0] for mounts in seen)


# -- idmapped mounts (crun 1.8 is the reference: runc 1.1.5 has none) -----------------------------
CRUN_WRAPPER = """#!/bin/sh
# crun refuses this hybrid-cgroup host: give it a private cgroup2 mount, no cgroup manager.
exec unshare -m --propagation private sh -c \\
  'mount -t cgroup2 none /sys/fs/cgroup && exec crun --cgroup-manager=disabled "$@"' crun "$@"
"""


@pytest.fixture
def crun(tmp_path_factory):
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    wrapper = tmp_path_factory.mktemp("crun") / "crun"
    wrapper.write_text(CRUN_WRAPPER)
    wrapper.chmod(0o755)
    rt = Runtime(str(wrapper), tmp_path_factory.mktemp("crunstate"))
    yield rt
    rt.force_cleanup()


@pytest.fixture
def owned_tree(tmp_path):
    """A directory to bind: a file of 0:0 and a subdirectory of 5:6."""
    src = tmp_path / "idsrc"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_text("")
    os.chown(src / "file", 0, 0)
    os.chown(src / "sub", 5, 6)
    return src


@pytest.mark.parametrize("options", [["bind", "ro", "idmap"], ["rbind", "ridmap"], ["bind"]])
def test_idmapped_mount_shows_mapped_owners(oci, crun, bundle, owned_tree, options):
    """On-disk 0 and 5:6 show as 1000 and 1005:1006 through maps 0->1000 (10 ids), the same
    in crun 1.8; the mount is flagged idmapped."""
    if oci.is_runc:
        pytest.skip("runc 1.1.5 has no idmapped mounts (runc 1.2 adds them)")
    from helpers.bundle import DEFAULT_CONFIG
    maps = [{"containerID": 0, "hostID": 1000, "size": 10}]
    mounts = DEFAULT_CONFIG["mounts"] + [{"destination": "/foo", "type": "bind",
                                          "source": str(owned_tree), "options": options,
                                          "uidMappings": maps, "gidMappings": maps}]
    b = bundle(["sh", "-c", "stat -c '%n %u:%g' /foo/file /foo/sub; "
                            "grep ' /foo ' /proc/self/mountinfo | grep -c idmapped"], mounts=mounts)
    outs = []
    for rt in (oci, crun):
        res = rt.run(new_id(), b)
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        outs.append(res.stdout.split("\n"))
    assert outs[0][:3] == ["/foo/file 1000:1000", "/foo/sub 1005:1006", "1"]
    assert outs[0] == outs[1]
    assert os.stat(owned_tree / "file").st_uid == 0     # the disk is unchanged


def test_idmap_option_without_maps_is_refused(oci, bundle, owned_tree):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 has no idmapped mounts")
    from helpers.bundle import DEFAULT_CONFIG
    mounts = DEFAULT_CONFIG["mounts"] + [{"destination": "/foo", "type": "bind",
                                          "source": str(owned_tree), "options": ["bind", "idmap"]}]
    cid = new_id()
    res = oci.run(cid, bundle(["true"], mounts=mounts))
    assert res.returncode == 1 and "mounts[7].uidMappings" in res.stderr, res.stderr


# -- exec joins the container's session keyring ----------------------------------------------------
def session_keyrings(text: str, cid: str) -> list[tuple[str, int, str]]:
    """(serial, usage, perm) of each keyring named _ses.<cid> in /proc/keys text."""
    rows = [line.split() for line in text.splitlines() if line.endswith(f"_ses.{cid}: empty")]
    return [(r[0], int(r[2]), r[4]) for r in rows]


def test_exec_joins_the_containers_session_keyring(oci, ref_oci, bundle):
    """runc makes the init's keyring _ses.<id> searchable and exec joins it by name: the
    exec'd processes add to its usage and no second keyring of that name appears."""
    b = bundle(["sleep", "30"], linux={"maskedPaths": None})
    for rt in runtimes(oci, ref_oci):
        cid = new_id()
        res = rt.run(cid, b, "--detach")
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        [(serial, usage, perm)] = session_keyrings(Path("/proc/keys").read_text(), cid)
        assert perm == "3f1b0000", rt.name
        res = rt.exec(cid, "cat", "/proc/keys")
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        [(serial_in_exec, usage_in_exec, _)] = session_keyrings(res.stdout, cid)
        assert serial_in_exec == serial and usage_in_exec > usage, rt.name
