"""The cgroup v1 backend on this host's real hierarchies: limits measured from
outside (OOM kill, fork limit, CPU quota, freezing), device rules, rollback,
and cleanup.  Every cgroup is named hutch-test-* and removed, also on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from helpers.host import openable, read

import hutch.cgroups as cg
from hutch.errors import HutchError

V1 = "/sys/fs/cgroup"
pytestmark = pytest.mark.skipif(cg.detect(V1) != "v1", reason="needs a cgroup v1 (hybrid) host")


class Child:
    """A python child held at a gate (its stdin) until it is inside the cgroup."""

    def __init__(self, code: str):
        gate = "import sys; sys.stdin.read(1)\n"
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", gate + code, "hutch-test-child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def start(self) -> None:
        self.proc.stdin.write("g")
        self.proc.stdin.flush()

    def finish(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def manager():
    """Factory: a created V1 manager at /hutch-test-<random>; all removed afterwards."""
    made, children = [], []

    def factory(resources=None):
        m = cg.for_container("c", f"/hutch-test-{uuid.uuid4().hex[:8]}")
        made.append(m)
        m.create()
        if resources:
            m.apply(resources)
        return m

    def child(m, code):
        c = Child(code)
        children.append(c)
        m.add_pid(c.pid)
        return c

    factory.child = child
    yield factory
    for c in children:
        c.kill()
    for m in made:
        try:
            if m.exists() and m.is_frozen():
                m.thaw()
        except (HutchError, OSError):
            pass
        m.kill_all(signal.SIGKILL)
        m.wait_empty()
        m.destroy()


def test_create_makes_a_dir_in_every_hierarchy_and_add_pid_joins_all(manager):
    m = manager()
    st = m.to_state()
    for ctl in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        assert os.path.isdir(st["paths"][ctl]), ctl
    c = manager.child(m, "import time; time.sleep(30)")
    membership = read(f"/proc/{c.pid}/cgroup")
    rel = "/" + os.path.relpath(st["paths"]["memory"], f"{V1}/memory")
    for ctl in ("cpu", "memory", "pids", "freezer", "devices", "blkio", "cpuset", "cpuacct"):
        assert f":{ctl}:{rel}" in membership, (ctl, membership)
    assert f"0::{rel}" in membership          # the unified hierarchy of the hybrid host too
    assert m.pids() == [c.pid]
    # cpuset copied from the parent, or the kernel would have refused the task
    assert read(os.path.join(st["paths"]["cpuset"], "cpuset.cpus")) != ""


def test_memory_limit_oom_kills_and_is_reported(manager):
    m = manager({"memory": {"limit": 32 << 20}})
    assert read(os.path.join(m.paths["memory"], "memory.limit_in_bytes")) == str(32 << 20)
    watch = m.oom_watch()
    try:
        c = manager.child(m, "x = b'a' * (256 << 20)\nprint('survived')")
        c.start()
        rc, out, _ = c.finish()
        assert rc == -signal.SIGKILL and "survived" not in out
        assert watch.wait(5) >= 1
    finally:
        watch.close()
    assert m.oom_kill_count() >= 1
    assert m.stats()["memory"]["usage"]["failcnt"] > 0


def test_pids_limit_stops_forks(manager):
    m = manager({"pids": {"limit": 5}})
    code = """
import os, time
kids, refused = [], 0
for _ in range(20):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(3); os._exit(0)
    kids.append(pid)
print(len(kids), refused, flush=True)
for k in kids: os.kill(k, 9); os.waitpid(k, 0)
"""
    c = manager.child(m, code)
    c.start()
    rc, out, err = c.finish()
    forked, refused = map(int, out.split())
    assert rc == 0, err
    assert forked == 4 and refused == 16        # 5 tasks: the parent and 4 children
    assert read(os.path.join(m.paths["pids"], "pids.max")) == "5"


def test_cpu_quota_halves_cpu_time(manager):
    m = manager(cg.resources_from_options(cpus="0.5"))
    assert read(os.path.join(m.paths["cpu"], "cpu.cfs_quota_us")) == "50000"
    c = manager.child(m, "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass")
    usage = os.path.join(m.paths["cpuacct"], "cpuacct.usage")
    t0, u0 = time.monotonic(), int(read(usage))
    c.start()
    c.finish()
    wall, used = time.monotonic() - t0, (int(read(usage)) - u0) / 1e9
    assert 0.2 < used / wall < 0.7, (used, wall)
    assert m.stats()["cpu"]["throttling"]["throttled_periods"] > 0


def test_freeze_stops_progress_and_thaw_resumes(manager):
    m = manager()
    c = manager.child(m, "while True: pass")
    c.start()
    usage = os.path.join(m.paths["cpuacct"], "cpuacct.usage")
    time.sleep(0.1)
    m.freeze()
    assert m.is_frozen() and read(os.path.join(m.paths["freezer"], "freezer.state")) == "FROZEN"
    frozen_at = int(read(usage))
    time.sleep(0.3)
    assert int(read(usage)) == frozen_at
    m.thaw()
    assert not m.is_frozen()
    time.sleep(0.3)
    assert int(read(usage)) > frozen_at


def test_kill_all_empties_the_cgroup(manager):
    m = manager()
    c = manager.child(m, "import os, time\nfor _ in range(3):\n    os.fork()\ntime.sleep(60)")
    c.start()
    deadline = time.monotonic() + 10
    while len(m.pids()) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(m.pids()) == 8
    m.kill_all(signal.SIGKILL)
    c.proc.wait(timeout=10)
    assert m.wait_empty(5)


def test_device_rules(manager):
    assert openable("/dev/zram0")
    m = manager({"devices": [{"allow": False, "access": "rwm"}]})
    listed = read(os.path.join(m.paths["devices"], "devices.list")).splitlines()
    assert "a *:* rwm" not in listed and "c 1:3 rwm" in listed
    code = """
for dev in ('/dev/null', '/dev/zram0'):
    try:
        open(dev, 'rb').close(); print(dev, 'ok')
    except OSError as e:
        print(dev, e.errno)
"""
    c = manager.child(m, code)
    c.start()
    _, out, _ = c.finish()
    assert "/dev/null ok" in out and "/dev/zram0 1" in out      # EPERM


def test_refused_value_rolls_back_and_names_resource(manager):
    m = manager({"cpu": {"shares": 1024}})
    shares = os.path.join(m.paths["cpu"], "cpu.shares")
    with pytest.raises(HutchError) as exc:
        m.apply({"cpu": {"shares": 512, "cpus": "63"}})
    assert exc.value.where == "linux.resources.cpu.cpus" and "'63'" in exc.value.message
    assert read(shares) == "1024"
    with pytest.raises(HutchError) as exc:
        m.apply({"cpu": {"shares": 10**7}})
    assert "maximum allowed cpu-shares is 262144" in exc.value.message
    assert read(shares) == "1024"


@pytest.mark.parametrize("resources,where", [
    ({"unified": {"memory.high": "1"}}, "linux.resources.unified"),
    ({"network": {"classID": 1}}, "linux.resources.network.classID"),
    ({"rdma": {"mlx4_0": {"hcaHandles": 1}}}, "linux.resources.rdma"),
    ({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]}, "linux.resources.hugepageLimits[0].pageSize"),
])
def test_unsupported_here_is_a_clear_error_with_nothing_written(manager, resources, where):
    m = manager()
    before = read(os.path.join(m.paths["memory"], "memory.limit_in_bytes"))
    with pytest.raises(HutchError) as exc:
        m.apply({"memory": {"limit": 1 << 30}, **resources})
    assert exc.value.where == where
    assert read(os.path.join(m.paths["memory"], "memory.limit_in_bytes")) == before


@pytest.fixture
def unified_hugetlb():
    """Leave the unified root's subtree_control as found; set up before the cgroups (so
    torn down after them: the controller cannot be disabled while a child uses it)."""
    ctl = f"{V1}/unified/cgroup.subtree_control"
    had = "hugetlb" in read(ctl).split()
    yield
    if not had:
        try:
            with open(ctl, "w") as f:
                f.write("-hugetlb")
        except OSError:
            pass          # another cgroup uses it now; enabling it is harmless


def test_hugepage_limits_on_the_hybrid_unified_hierarchy(unified_hugetlb, manager):
    if "hugetlb" not in read(f"{V1}/unified/cgroup.controllers").split():
        pytest.skip("hugetlb is not offered by the unified hierarchy")
    m = manager({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert read(os.path.join(m.unified, "hugetlb.2MB.max")) == str(4 << 20)
    assert m.stats()["hugetlb"]["2MB"]["usage"] == 0


def test_block_io(manager):
    m = manager({"blockIO": {"weight": 300,
                             "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1 << 20}],
                             "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}]}})
    d = m.paths["blkio"]
    weight = "blkio.weight" if os.path.exists(f"{d}/blkio.weight") else "blkio.bfq.weight"
    assert read(f"{d}/{weight}").split()[-1] == "300"
    assert read(f"{d}/blkio.throttle.read_bps_device") == f"254:0 {1 << 20}"
    assert read(f"{d}/blkio.throttle.write_iops_device") == "254:0 100"


def test_memory_swap_and_update_order(manager):
    m = manager({"memory": {"limit": 64 << 20, "swap": 128 << 20, "swappiness": 0,
                            "reservation": 32 << 20, "disableOOMKiller": True}})
    d = m.paths["memory"]
    assert read(f"{d}/memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(f"{d}/memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(f"{d}/memory.swappiness") == "0"
    assert "oom_kill_disable 1" in read(f"{d}/memory.oom_control")
    # raising both above the current memsw needs swap written first
    m.apply({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    assert read(f"{d}/memory.limit_in_bytes") == str(256 << 20)
    assert read(f"{d}/memory.memsw.limit_in_bytes") == str(512 << 20)
    m.apply({"memory": {"limit": -1}})
    assert int(read(f"{d}/memory.memsw.limit_in_bytes")) > 1 << 60


def test_check_before_update(manager):
    m = manager()
    c = manager.child(m, "x = b'a' * (64 << 20)\nimport sys; print('ok', flush=True); sys.stdin.read()")
    c.start()
    assert c.proc.stdout.readline().strip() == "ok"
    with pytest.raises(HutchError) as exc:
        m.apply({"memory": {"limit": 16 << 20, "checkBeforeUpdate": True}})
    assert exc.value.where == "linux.resources.memory.limit"
    assert int(read(os.path.join(m.paths["memory"], "memory.limit_in_bytes"))) > 1 << 60


def test_destroy_from_state_after_crash():
    m = cg.for_container("c", f"/hutch-test-{uuid.uuid4().hex[:8]}/nested")
    m.create()
    saved = m.to_state()
    top = os.path.dirname(saved["paths"]["memory"])
    try:
        assert os.path.isdir(top)
        again = cg.from_state(saved)           # a new process, as after a crash
        again.destroy()
        for d in list(saved["paths"].values()) + [saved["unified"]]:
            assert not os.path.exists(d) and not os.path.exists(os.path.dirname(d))
    finally:
        m.destroy()


def test_destroy_refuses_while_processes_remain(manager):
    m = manager()
    c = manager.child(m, "import time; time.sleep(30)")
    with pytest.raises(HutchError) as exc:
        m.destroy()
    assert "still has processes" in exc.value.message
    c.kill()
    m.wait_empty()


def test_default_parent_is_removed_by_the_last_container_to_leave():
    a = cg.for_container(f"hutch-test-a{uuid.uuid4().hex[:6]}", None)
    b = cg.for_container(f"hutch-test-b{uuid.uuid4().hex[:6]}", None)
    parent = os.path.dirname(a.paths["pids"])
    assert parent == f"{V1}/pids/hutch"
    try:
        a.create()
        b.create()
        a.destroy()                       # b is still inside: the parent stays
        assert os.path.isdir(parent) and not os.path.exists(a.paths["pids"])
    finally:
        a.destroy()
        b.destroy()
    # gone, unless other containers (made by someone else meanwhile) still live there
    assert not os.path.exists(parent) or any(
        os.path.isdir(os.path.join(parent, n)) for n in os.listdir(parent))
