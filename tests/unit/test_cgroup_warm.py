"""The cgroup attach warmer (hutch.cgroups.warm): which file it writes, that it writes our
own pid until stopped, and that stopping is clean and idempotent.  The kernel side (a
no-op re-attach to our own cgroup) is in tests/priv/test_cgroup_warm_kernel.py."""

from __future__ import annotations

import os
import time

import pytest

from hutch.cgroups import warm

HYBRID = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n"


def _tree(tmp_path, *dirs):
    for d in dirs:
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "cgroup.procs").write_text("")


def test_unified_line_on_a_v2_root(tmp_path):
    _tree(tmp_path, "user.slice/session-1.scope")
    found = warm.own_procs_file(str(tmp_path), text="0::/user.slice/session-1.scope\n")
    assert found == str(tmp_path / "user.slice/session-1.scope/cgroup.procs")


def test_unified_mount_of_a_hybrid_host_first(tmp_path):
    _tree(tmp_path, "unified/user.slice/session-1.scope", "pids/user.slice")
    found = warm.own_procs_file(str(tmp_path), text=HYBRID)
    assert found == str(tmp_path / "unified/user.slice/session-1.scope/cgroup.procs")


def test_a_v1_controller_when_there_is_no_unified_mount(tmp_path):
    _tree(tmp_path, "pids/user.slice")
    assert warm.own_procs_file(str(tmp_path), text=HYBRID) == str(tmp_path / "pids/user.slice/cgroup.procs")


def test_named_hierarchies_are_never_used(tmp_path):
    _tree(tmp_path, "name=systemd/user.slice/session-1.scope")
    assert warm.own_procs_file(str(tmp_path), text="1:name=systemd:/user.slice/session-1.scope\n") is None


def test_nothing_found_means_no_thread(tmp_path):
    warmer = warm.AttachWarmer(procs_file=str(tmp_path / "missing" / "cgroup.procs"))
    assert warmer.stopped and warmer.writes == 0
    warmer.stop()          # idempotent, nothing to join


def test_writes_our_pid_until_stopped(tmp_path):
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    warmer = warm.AttachWarmer(procs_file=str(procs), interval=0.001)
    deadline = time.monotonic() + 5
    while warmer.writes < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    warmer.stop()
    writes = warmer.writes
    assert writes >= 3
    assert procs.read_text().startswith(str(os.getpid()))   # our own pid, nothing else
    time.sleep(0.01)
    assert warmer.writes == writes          # the thread is gone
    assert warmer.stopped
    warmer.stop()


@pytest.fixture
def as_root_with_a_procs_file(monkeypatch, tmp_path):
    """start_warming as root, writing to a plain file in place of our cgroup.procs."""
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    monkeypatch.setattr(warm, "own_procs_file", lambda *a, **k: str(procs))
    monkeypatch.setattr(warm.os, "geteuid", lambda: 0)
    monkeypatch.setattr(warm, "_running", None)
    return procs


def test_start_warming_reuses_the_running_warmer(as_root_with_a_procs_file):
    first = warm.start_warming()
    try:
        assert warm.start_warming() is first
    finally:
        first.stop()
    second = warm.start_warming()
    assert second is not first           # a stopped warmer is not reused
    second.stop()


def test_a_verb_that_attaches_nothing_stops_the_early_warmer(as_root_with_a_procs_file):
    """The CLI starts a warmer before it knows the container has a cgroup: exec into one
    without (hutch run without limits) must stop it, or it would run for the whole exec."""
    early = warm.start_warming()
    assert not early.stopped
    assert warm.start_warming(enabled=False) is None
    assert early.stopped


def test_not_root_means_no_warmer(monkeypatch):
    monkeypatch.setattr(warm.os, "geteuid", lambda: 1000)
    assert warm.start_warming() is None
