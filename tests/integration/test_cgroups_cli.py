"""`hutch update|pause|resume|events|stats` driven through the binary.

The "container" is a process this test puts in a cgroup made by hutch's manager and
records in a state directory under a temporary --root, so the commands are tested
on their own (the launcher is tested elsewhere).  Effects are read from the kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import hutch.cgroups as cg
from hutch.oci import state as st
from hutch.syscall import proc

pytestmark = pytest.mark.skipif(cg.detect() != "v1", reason="written for this v1 hybrid host")

# the container's main process: on each line "oom" it forks a child that allocates 256 MiB
INIT = """
import os, sys
for line in sys.stdin:
    if line.strip() == 'oom':
        pid = os.fork()
        if pid == 0:
            x = b'a' * (256 << 20)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print('child', os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0, flush=True)
"""


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Container:
    def __init__(self, root: str, resources: dict | None = None):
        self.id = f"hutch-test-{uuid.uuid4().hex[:8]}"
        self.root = root
        self.m = cg.for_container(self.id, f"/hutch-test-cli-{uuid.uuid4().hex[:8]}")
        self.m.create()
        if resources:
            self.m.apply(resources)
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", INIT, "hutch-test-init"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.m.add_pid(self.proc.pid)
        os.makedirs(os.path.join(root, self.id))
        state = st.State(id=self.id, bundle=root, pid=self.proc.pid,
                         pid_start=proc.start_time(self.proc.pid), status="running")
        st.save(root, state)
        st.own(root, state, {"kind": "cgroup", **self.m.to_state()})

    def state(self) -> st.State:
        return st.load(self.root, self.id)

    def cleanup(self) -> None:
        try:
            self.m.thaw()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.m.kill_all()
        self.m.wait_empty()
        self.m.destroy()


@pytest.fixture
def container(tmp_path):
    made = []

    def factory(resources=None):
        c = Container(str(tmp_path / "state"), resources)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.cleanup()


def hutch(hutch_bin, c_root, *args, **kw):
    return subprocess.run([hutch_bin, "--root", c_root, *args], capture_output=True, text=True,
                          timeout=60, **kw)


def test_pause_and_resume(hutch_bin, container):
    c = container()
    freezer = os.path.join(c.m.paths["freezer"], "freezer.state")
    r = hutch(hutch_bin, c.root, "pause", c.id)
    assert r.returncode == 0, r.stderr
    assert read(freezer) == "FROZEN"
    assert c.state().status == "paused" and c.state().live_status() == "paused"
    assert proc.process_state(c.proc.pid) in ("D", "S")
    r = hutch(hutch_bin, c.root, "pause", c.id)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "paused" in r.stderr
    r = hutch(hutch_bin, c.root, "resume", c.id)
    assert r.returncode == 0, r.stderr
    assert read(freezer) == "THAWED" and c.state().status == "running"
    r = hutch(hutch_bin, c.root, "resume", c.id)
    assert r.returncode == 1 and "not paused" in r.stderr


def test_update_changes_limits_of_a_running_container(hutch_bin, container, tmp_path):
    c = container({"memory": {"limit": 512 << 20}, "pids": {"limit": 100}})
    r = hutch(hutch_bin, c.root, "update", "--memory", "64m", "--pids-limit", "20",
              "--cpu-quota", "25000", "--cpu-period", "50000", "--cpu-share", "256", c.id)
    assert r.returncode == 0, r.stderr
    assert read(os.path.join(c.m.paths["memory"], "memory.limit_in_bytes")) == str(64 << 20)
    assert read(os.path.join(c.m.paths["pids"], "pids.max")) == "20"
    assert read(os.path.join(c.m.paths["cpu"], "cpu.cfs_quota_us")) == "25000"
    assert read(os.path.join(c.m.paths["cpu"], "cpu.cfs_period_us")) == "50000"
    assert read(os.path.join(c.m.paths["cpu"], "cpu.shares")) == "256"
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"pids": {"limit": 7}, "memory": {"limit": 100 << 20}}))
    r = hutch(hutch_bin, c.root, "update", "-r", str(res), c.id)
    assert r.returncode == 0, r.stderr
    assert read(os.path.join(c.m.paths["pids"], "pids.max")) == "7"
    r = hutch(hutch_bin, c.root, "update", "-r", "-", c.id, input='{"pids": {"limit": 9}}')
    assert r.returncode == 0, r.stderr
    assert read(os.path.join(c.m.paths["pids"], "pids.max")) == "9"


@pytest.mark.parametrize("args,where", [
    (["--memory", "lots"], "--memory"), (["--pids-limit", "x"], "--pids-limit"),
    (["--cpuset-cpus", "63"], "linux.resources.cpu.cpus"),
    (["--memory", "1m", "--memory-swap", "512k"], "--memory-swap")])
def test_update_bad_values_one_line_nothing_changed(hutch_bin, container, args, where):
    c = container({"pids": {"limit": 100}})
    r = hutch(hutch_bin, c.root, "update", "--pids-limit", "50", *args, c.id)
    assert r.returncode == 1
    assert r.stderr.startswith(f"hutch: {where}: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert read(os.path.join(c.m.paths["pids"], "pids.max")) == "100"


def test_events_stats_once(hutch_bin, container):
    c = container({"memory": {"limit": 128 << 20}, "pids": {"limit": 30}})
    r = hutch(hutch_bin, c.root, "events", "--stats", c.id)
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stdout)
    assert event["type"] == "stats" and event["id"] == c.id
    data = event["data"]
    assert data["pids"] == {"current": 1, "limit": 30}
    assert data["memory"]["usage"]["limit"] == 128 << 20
    assert data["cpu"]["usage"]["total"] > 0 or data["cpu"]["usage"]["total"] == 0
    assert set(data) >= {"cpu", "memory", "pids", "blkio", "hugetlb"}


def test_events_reports_oom_kill(hutch_bin, container):
    c = container({"memory": {"limit": 32 << 20}})
    ev = subprocess.Popen([hutch_bin, "--root", c.root, "events", "--interval", "200ms", c.id],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(ev.stdout.readline())      # watching has begun
        assert first["type"] == "stats"
        c.proc.stdin.write("oom\n")
        c.proc.stdin.flush()
        assert c.proc.stdout.readline().split() == ["child", str(int(signal.SIGKILL))]
        kinds = []
        deadline = time.monotonic() + 20
        while "oom" not in kinds and time.monotonic() < deadline:
            kinds.append(json.loads(ev.stdout.readline())["type"])
        assert "oom" in kinds
    finally:
        ev.kill()
        ev.wait()


def test_events_ends_when_the_container_stops(hutch_bin, container):
    c = container()
    ev = subprocess.Popen([hutch_bin, "--root", c.root, "events", "--interval", "100ms", c.id],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(ev.stdout.readline())["type"] == "stats"
        c.proc.kill()
        c.proc.wait()
        assert ev.wait(timeout=20) == 0
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()


def test_stats_json_and_table(hutch_bin, container):
    c = container({"memory": {"limit": 256 << 20}})
    r = hutch(hutch_bin, c.root, "stats", "--json", c.id)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["id"] for row in rows] == [c.id]
    assert rows[0]["pids"] == 1 and rows[0]["memory_limit"] == 256 << 20
    r = hutch(hutch_bin, c.root, "stats", "--no-stream")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("CONTAINER ID") and "CPU %" in lines[0]
    assert any(line.startswith(c.id) and "256.00MiB" in line for line in lines[1:])


def test_errors_for_missing_and_stopped_containers(hutch_bin, container):
    c = container()
    for cmd in (["pause"], ["resume"], ["update", "--memory", "1g"], ["events", "--stats"],
                ["stats", "--json"]):
        r = hutch(hutch_bin, c.root, *cmd, "nosuch")
        assert r.returncode == 1 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    c.proc.kill()
    c.proc.wait()
    for cmd in (["pause"], ["update", "--memory", "1g"], ["events", "--stats"]):
        r = hutch(hutch_bin, c.root, *cmd, c.id)
        assert r.returncode == 1 and "stopped" in r.stderr, (cmd, r.stderr)
