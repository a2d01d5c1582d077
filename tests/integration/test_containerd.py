"""containerd (ctr -> containerd -> containerd-shim-runc-v2) drives the runtime under test:
the path Kubernetes takes.  `ctr run --runc-binary` selects the runtime per container.

Prove against runc:  HUTCH_TEST_RUNTIME=/usr/sbin/runc pytest tests/integration/test_containerd.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from helpers.engines import CTR_NAMESPACE, IMAGE, explain, run, run_in_pty

pytestmark = [pytest.mark.priv, pytest.mark.peer]

LOOP = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done'
# A fixed set of processes (shell + one sleep) for comparing `ps` with the cgroup; `wait`
# is interrupted by the trapped SIGTERM.
STEADY = 'trap "exit 7" TERM; sleep 600 & wait'


# ctr sets the console size only after the task started: wait for it to be non-zero.
# (busybox stty prints nothing and exits 0 while the size is 0x0.)
WAIT_FOR_SIZE = ('for i in $(seq 200); do s=$(stty size 2>/dev/null); '
                 '[ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.05; done; echo "size=$s"')


def _tasks(containerd) -> dict[str, tuple[int, str]]:
    """`ctr task ls` as {id: (pid, status)}."""
    rows = containerd.ctr("task", "ls", check=True).stdout.splitlines()[1:]
    return {cols[0]: (int(cols[1]), cols[2]) for cols in (r.split() for r in rows) if len(cols) == 3}


def _wait_status(containerd, cid: str, status: str, limit: float = 30) -> str:
    """Poll the task status until it is `status` (returns the last one seen)."""
    deadline = time.monotonic() + limit
    seen = ""
    while time.monotonic() < deadline:
        seen = _tasks(containerd).get(cid, (0, "absent"))[1]
        if seen == status:
            break
        time.sleep(0.05)
    return seen


def _cgroup(controller: str, cid: str) -> Path:
    """Where ctr puts a container by default: /<namespace>/<id> in every hierarchy."""
    return Path("/sys/fs/cgroup") / controller / CTR_NAMESPACE / cid


def _start_detached(containerd, cid: str, *cmd: str) -> int:
    start = len(containerd.calls())
    r = containerd.ctr("run", "-d", *containerd.run_args(), IMAGE, cid, *cmd)
    assert r.returncode == 0, explain(containerd, start, r.stderr)
    assert _wait_status(containerd, cid, "RUNNING") == "RUNNING", explain(containerd, start)
    return _tasks(containerd)[cid][0]


def test_run_rm_echo_goes_through_the_runtime(containerd):
    start = len(containerd.calls())
    r = containerd.ctr("run", "--rm", *containerd.run_args(), IMAGE, containerd.cid("echo"),
                       "echo", "hello from containerd")
    why = explain(containerd, start, r.stderr)
    assert r.returncode == 0, why
    assert r.stdout == "hello from containerd\n", why
    calls = containerd.calls()[start:]
    for verb in (" create ", " start ", " delete "):
        assert any(verb in f" {c} " for c in calls), why
    # The shim always passes its log options: the runtime must accept them.
    assert all("--log" in c for c in calls), why


def test_run_rm_exit_code(containerd):
    start = len(containerd.calls())
    r = containerd.ctr("run", "--rm", *containerd.run_args(), IMAGE, containerd.cid("exit"),
                       "sh", "-c", "echo out; exit 5")
    assert r.returncode == 5, explain(containerd, start, r.stderr)
    assert r.stdout == "out\n"


def test_detached_exec_ps_kill_delete(containerd):
    cid = containerd.cid("det")
    start = len(containerd.calls())
    pid = _start_detached(containerd, cid, "sh", "-c", STEADY)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh", b"-c"]

    # exec: output and exit code come back, and it runs in the container's pid namespace.
    r = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c",
                       "readlink /proc/self/ns/pid; exit 4")
    assert r.returncode == 4, explain(containerd, start, r.stderr)
    assert r.stdout.strip() == os.readlink(f"/proc/{pid}/ns/pid")
    assert any(" exec " in f" {c} " for c in containerd.calls()[start:]), explain(containerd, start)

    # ps: the runtime's `ps --format json` must list exactly the container's processes,
    # i.e. those in its cgroup (the init shell and its sleep).
    r = containerd.ctr("task", "ps", cid)
    assert r.returncode == 0, explain(containerd, start, r.stderr)
    listed = {int(line.split()[0]) for line in r.stdout.splitlines()[1:] if line.strip()}
    in_cgroup = {int(p) for p in (_cgroup("pids", cid) / "cgroup.procs").read_text().split()}
    assert pid in listed and len(listed) == 2 and listed == in_cgroup, (r.stdout, in_cgroup)

    # kill (SIGTERM by default): the trap's exit code is what the task reports.
    r = containerd.ctr("task", "kill", cid)
    assert r.returncode == 0, explain(containerd, start, r.stderr)
    assert _wait_status(containerd, cid, "STOPPED") == "STOPPED", explain(containerd, start)
    r = containerd.ctr("task", "delete", cid)
    assert r.returncode == 0, explain(containerd, start, r.stderr)
    assert "exit code 7" in r.stderr, r.stderr
    assert cid not in _tasks(containerd)
    assert not Path(f"/proc/{pid}").exists()
    left = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{CTR_NAMESPACE}/{cid}")]
    assert not left, f"the runtime's delete must remove the cgroups: {left}"
    state = run([containerd.runtime, "--root", containerd.runc_root / CTR_NAMESPACE, "state", cid])
    assert state.returncode != 0, state.stdout
    containerd.ctr("containers", "delete", cid, check=True)


def test_pause_resume(containerd):
    cid = containerd.cid("pause")
    if not Path("/sys/fs/cgroup/freezer").is_dir():
        pytest.skip("no cgroup v1 freezer here")
    start = len(containerd.calls())
    _start_detached(containerd, cid, "sh", "-c", LOOP)
    freezer = _cgroup("freezer", cid) / "freezer.state"

    r = containerd.ctr("task", "pause", cid)
    assert r.returncode == 0, explain(containerd, start, r.stderr)
    assert _tasks(containerd)[cid][1] == "PAUSED"
    assert freezer.read_text().strip() == "FROZEN"
    assert any(" pause " in f" {c} " for c in containerd.calls()[start:]), explain(containerd, start)

    r = containerd.ctr("task", "resume", cid)
    assert r.returncode == 0, explain(containerd, start, r.stderr)
    assert _tasks(containerd)[cid][1] == "RUNNING"
    assert freezer.read_text().strip() == "THAWED"
    # Still alive and working after the thaw.
    r = containerd.ctr("task", "exec", "--exec-id", "e2", cid, "echo", "thawed")
    assert r.stdout == "thawed\n", explain(containerd, start, r.stderr)


def test_tty(containerd):
    """ctr run -t: the shim hands the runtime a console socket; the program sees a tty.
    (The shim waits for EOF on `create`'s output: a container process that still holds the
    create command's stdout while it waits for `start` hangs the shim here.)"""
    start = len(containerd.calls())
    script = "tty; test -t 0 && echo STDIN-TTY; " + WAIT_FOR_SIZE + "; exit 3"
    code, screen = run_in_pty(
        containerd.ctr_argv("run", "--rm", "-t", *containerd.run_args(), IMAGE,
                            containerd.cid("tty"), "sh", "-c", script),
        rows=41, cols=99, on_timeout=containerd.recover_from_hang)
    assert code == 3, explain(containerd, start, extra=screen)
    assert "STDIN-TTY" in screen and "size=41 99" in screen and "/dev/pts/" in screen, screen
    assert any("--console-socket" in c for c in containerd.calls()[start:]), explain(containerd)


def test_exec_with_tty(containerd):
    """ctr task exec -t: the runtime's exec --tty with a console socket from the shim."""
    cid = containerd.cid("exectty")
    _start_detached(containerd, cid, "sh", "-c", LOOP)
    start = len(containerd.calls())
    code, screen = run_in_pty(
        containerd.ctr_argv("task", "exec", "-t", "--exec-id", "et", cid, "sh", "-c",
                            "tty; test -t 0 && echo STDIN-TTY; " + WAIT_FOR_SIZE + "; exit 2"),
        rows=29, cols=83, on_timeout=containerd.recover_from_hang)
    assert code == 2, explain(containerd, start, extra=screen)
    assert "STDIN-TTY" in screen and "size=29 83" in screen and "/dev/pts/" in screen, screen


def test_runtime_state_during_run(containerd):
    """The runtime's own view of a container the shim created (state --format is what the
    shim and `ctr` rely on): status running, the same pid, the shim's bundle."""
    cid = containerd.cid("state")
    pid = _start_detached(containerd, cid, "sh", "-c", LOOP)
    r = run([containerd.runtime, "--root", containerd.runc_root / CTR_NAMESPACE, "state", cid])
    assert r.returncode == 0, explain(containerd, extra=r.stderr)
    state = json.loads(r.stdout)
    assert (state["id"], state["status"], state["pid"]) == (cid, "running", pid), state
    assert Path(state["bundle"], "config.json").exists()
