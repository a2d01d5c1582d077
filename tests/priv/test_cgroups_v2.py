"""The cgroup v2 backend on this host's real cgroup2 mount (/sys/fs/cgroup/unified):
membership, freezing, cgroup.kill, cgroup.events, and the eBPF device program."""

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

UNIFIED = "/sys/fs/cgroup/unified"
pytestmark = pytest.mark.skipif(not os.path.exists(f"{UNIFIED}/cgroup.procs"),
                                reason="needs a cgroup2 mount at /sys/fs/cgroup/unified")


def events(d: str) -> dict:
    return dict(line.split() for line in read(f"{d}/cgroup.events").splitlines())


@pytest.fixture(autouse=True)
def restore_root_controllers():
    """create() enables the offered controllers in the root's subtree_control, as runc does:
    disable again what was not enabled before (autouse: torn down after the cgroups)."""
    ctl = f"{UNIFIED}/cgroup.subtree_control"
    before = set(read(ctl).split())
    yield
    for name in set(read(ctl).split()) - before:
        try:
            with open(ctl, "w") as f:
                f.write(f"-{name}")
        except OSError:
            pass          # in use by a cgroup someone else made meanwhile


@pytest.fixture
def v2():
    """Factory: (manager, started child) in /hutch-test-<random> of the unified mount."""
    made, procs = [], []

    def factory(code="import time; time.sleep(60)", resources=None):
        m = cg.for_container("c", f"/hutch-test-{uuid.uuid4().hex[:8]}", root=UNIFIED)
        made.append(m)
        m.create()
        if resources is not None:
            m.apply(resources)
        gate = "import sys; sys.stdin.read(1)\n"
        p = subprocess.Popen([sys.executable, "-S", "-c", gate + code, "hutch-test-child"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        procs.append(p)
        m.add_pid(p.pid)
        p.stdin.write("g")
        p.stdin.flush()
        return m, p

    yield factory
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for m in made:
        try:
            m.thaw()
        except HutchError:
            pass
        m.kill_all()
        m.wait_empty()
        m.destroy()


def test_detect_and_membership(v2):
    assert cg.detect(UNIFIED) == "v2"
    m, p = v2()
    assert m.driver == "v2"
    rel = "/" + os.path.relpath(m.path, UNIFIED)
    assert f"0::{rel}" in read(f"/proc/{p.pid}/cgroup")
    assert m.pids() == [p.pid]
    assert events(m.path)["populated"] == "1"


def test_freeze_and_thaw(v2):
    m, p = v2("while True: pass")
    time.sleep(0.1)
    m.freeze()
    assert m.is_frozen() and events(m.path)["frozen"] == "1"
    usage = dict(line.split() for line in read(f"{m.path}/cpu.stat").splitlines())["usage_usec"]
    time.sleep(0.3)
    assert dict(line.split() for line in read(f"{m.path}/cpu.stat").splitlines())["usage_usec"] == usage
    m.thaw()
    assert events(m.path)["frozen"] == "0" and not m.is_frozen()
    time.sleep(0.3)
    assert int(dict(line.split() for line in read(f"{m.path}/cpu.stat").splitlines())["usage_usec"]) \
        > int(usage)


def test_events_file_watch_wakes_on_kernel_notification(v2):
    """The watcher `events` uses for memory.events, on cgroup.events (same kernfs notify)."""
    from hutch.cgroups.common import EventsFileOOMWatch
    m, _ = v2()
    watch = EventsFileOOMWatch(m.path, "cgroup.events", "frozen")
    try:
        assert watch.wait(0.1) == 0
        m.freeze()
        assert watch.wait(5) == 1
        assert watch.wait(0.1) == 0          # re-armed: no stale wakeup counted twice
    finally:
        watch.close()
        m.thaw()


def test_kill_all_uses_cgroup_kill(v2):
    m, p = v2("import os, time\nos.fork(); os.fork()\ntime.sleep(60)")
    deadline = time.monotonic() + 10
    while len(m.pids()) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(m.pids()) == 4
    m.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert m.wait_empty(5)
    assert events(m.path)["populated"] == "0"


def test_device_program_denies_and_is_replaced_on_update(v2):
    from hutch.syscall import bpf
    assert openable("/dev/zram0") and openable("/dev/kmsg")
    code = """
import sys
sys.stdin.read(1)
for dev in ('/dev/null', '/dev/zram0', '/dev/kmsg'):
    try:
        open(dev, 'rb').close(); print(dev, 'ok')
    except OSError as e:
        print(dev, e.errno)
"""
    m, p = v2(code, resources={"devices": [{"allow": False, "access": "rwm"}]})
    assert len(bpf.attached_device_programs(m.path)) == 1
    # update: the new program replaces the old one (not stacked: stacked programs AND together)
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "b", "major": 253, "access": "r"}]})
    assert len(bpf.attached_device_programs(m.path)) == 1
    p.stdin.write("g")
    p.stdin.flush()
    out, _ = p.communicate(timeout=30)
    assert "/dev/null ok" in out          # a default rule (as runc adds)
    assert "/dev/zram0 ok" in out           # allowed by the update
    assert "/dev/kmsg 1" in out           # EPERM: c 1:11 is not allowed


def test_device_program_default_deny(v2):
    code = """
import sys
sys.stdin.read(1)
for dev in ('/dev/zero', '/dev/zram0'):
    try:
        open(dev, 'rb').close(); print(dev, 'ok')
    except OSError as e:
        print(dev, e.errno)
"""
    m, p = v2(code, resources={"devices": [{"allow": False, "access": "rwm"}]})
    p.stdin.write("g")
    p.stdin.flush()
    out, _ = p.communicate(timeout=30)
    assert "/dev/zero ok" in out and "/dev/zram0 1" in out


def test_hugetlb_limit(v2):
    if "hugetlb" not in read(f"{UNIFIED}/cgroup.controllers").split():
        pytest.skip("hugetlb is not offered here")
    m, _ = v2(resources={"hugepageLimits": [{"pageSize": "2MB", "limit": 8 << 20}]})
    assert read(f"{m.path}/hugetlb.2MB.max") == str(8 << 20)
    assert "hugetlb" in read(f"{UNIFIED}/cgroup.subtree_control").split()
    assert m.stats()["hugetlb"]["2MB"] == {"usage": 0, "max": 8 << 20, "failcnt": 0}


def test_unified_keys_refusal_names_key_and_value_and_rolls_back(v2):
    m, _ = v2()
    m.apply({"unified": {"cgroup.max.depth": "2"}})
    assert read(f"{m.path}/cgroup.max.depth") == "2"
    with pytest.raises(HutchError) as exc:
        m.apply({"unified": {"cgroup.max.depth": "5", "cgroup.max.descendants": "-3"}})
    assert exc.value.where == "linux.resources.unified.cgroup.max.descendants"
    assert "'-3'" in exc.value.message and "refused" in exc.value.message
    assert read(f"{m.path}/cgroup.max.depth") == "2"          # rolled back from 5
    assert read(f"{m.path}/cgroup.max.descendants") == "max"


def test_controller_missing_on_this_mount_is_a_clear_error(v2):
    m, _ = v2()
    avail = read(f"{UNIFIED}/cgroup.controllers").split()
    if "memory" in avail:
        pytest.skip("memory is enabled on this cgroup2 mount")
    with pytest.raises(HutchError) as exc:
        m.apply({"memory": {"limit": 1 << 30}})
    assert exc.value.where == "linux.resources.memory" and "not available" in exc.value.message


def test_destroy_after_crash_from_state():
    m = cg.for_container("c", f"/hutch-test-{uuid.uuid4().hex[:8]}/x", root=UNIFIED)
    m.create()
    top = os.path.dirname(m.path)
    try:
        cg.from_state(m.to_state()).destroy()
        assert not os.path.exists(m.path) and not os.path.exists(top)
    finally:
        m.destroy()
