"""update / pause / resume / events on real containers made by the runtime under test.

Runs against hutch, or against runc with HUTCH_TEST_RUNTIME=/usr/sbin/runc to prove the
checks observe real behaviour: the same assertions hold for both."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

V1 = "/sys/fs/cgroup"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.fixture
def started(runtime, bundle, tmp_path):
    """Factory: start a detached container with resources; deleted (-f) afterwards."""
    made = []
    state_root = str(tmp_path / "state")

    def factory(args, resources):
        cid = f"hutch-test-{uuid.uuid4().hex[:8]}"
        cgpath = f"/hutch-test-e2e-{uuid.uuid4().hex[:8]}"
        b = bundle(args, root={"readonly": False},
                   linux={"cgroupsPath": cgpath, "resources": resources})
        err_path = tmp_path / f"{cid}.err"
        made.append(cid)
        with open(err_path, "w") as err:
            r = subprocess.run([runtime, "--root", state_root, "run", "-d", "--bundle", str(b), cid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                               timeout=30)
        assert r.returncode == 0, err_path.read_text()
        return cid, cgpath, b

    def rt(*args, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([runtime, "--root", state_root, *args], **kw)

    factory.rt = rt
    factory.argv = [runtime, "--root", state_root]
    yield factory
    for cid in made:
        _force_delete(rt, state_root, cid)


def _force_delete(rt, state_root: str, cid: str) -> None:
    """delete -f; if the runtime hangs, kill the container's recorded pid and retry."""
    try:
        rt("delete", "-f", cid, timeout=20)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        with open(os.path.join(state_root, cid, "state.json")) as f:
            data = json.load(f)
        pid = data.get("pid") or data.get("init_process_pid")   # hutch / runc
    except (OSError, ValueError):
        pid = None
    if pid:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    rt("delete", "-f", cid, timeout=20)


def test_update_pause_resume_and_stats(started):
    cid, cg, _ = started(["sleep", "300"], {"memory": {"limit": 256 << 20}, "pids": {"limit": 100}})
    mem = f"{V1}/memory{cg}"
    assert read(f"{mem}/memory.limit_in_bytes") == str(256 << 20)

    r = started.rt("update", "--memory", "67108864", "--pids-limit", "20", cid)
    assert r.returncode == 0, r.stderr
    assert read(f"{mem}/memory.limit_in_bytes") == str(64 << 20)
    assert read(f"{V1}/pids{cg}/pids.max") == "20"

    r = started.rt("pause", cid)
    assert r.returncode == 0, r.stderr
    assert read(f"{V1}/freezer{cg}/freezer.state") == "FROZEN"
    assert json.loads(started.rt("state", cid).stdout)["status"] == "paused"
    r = started.rt("resume", cid)
    assert r.returncode == 0, r.stderr
    assert read(f"{V1}/freezer{cg}/freezer.state") == "THAWED"
    assert json.loads(started.rt("state", cid).stdout)["status"] == "running"

    r = started.rt("events", "--stats", cid)
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stdout)
    assert event["type"] == "stats" and event["id"] == cid
    assert event["data"]["pids"]["current"] >= 1
    assert event["data"]["memory"]["usage"]["limit"] == 64 << 20


def test_events_reports_an_oom_kill_in_the_container(started):
    script = "while [ ! -e /tmp/go ]; do sleep 0.1; done; tail /dev/zero; sleep 300"
    cid, cg, b = started(["sh", "-c", script], {"memory": {"limit": 16 << 20}})
    rootfs = json.loads((b / "config.json").read_text())["root"]["path"]
    ev = subprocess.Popen([*started.argv, "events", "--interval", "1s", cid],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(ev.stdout.readline())       # the watch is set up by now
        assert first["type"] == "stats"
        with open(os.path.join(rootfs, "tmp", "go"), "w"):
            pass
        kinds, deadline = [], time.monotonic() + 30
        while "oom" not in kinds and time.monotonic() < deadline:
            line = ev.stdout.readline()
            if not line:
                break
            kinds.append(json.loads(line)["type"])
        assert "oom" in kinds
        # the notification comes as the OOM starts; the kill is counted a moment later
        deadline = time.monotonic() + 10
        while "oom_kill 0" in read(f"{V1}/memory{cg}/memory.oom_control") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert "oom_kill 0" not in read(f"{V1}/memory{cg}/memory.oom_control")
    finally:
        ev.kill()
        ev.wait()

