"""The attach warmer on the real kernel: re-attaching the runtime to its own cgroup moves
nothing (the process's cgroups are the same before and after), and it really writes."""

from __future__ import annotations

import os

import pytest

from hutch.cgroups import warm

pytestmark = [pytest.mark.priv, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _own_cgroups() -> str:
    with open("/proc/self/cgroup") as f:
        return f.read()


def test_warming_leaves_the_process_where_it_was():
    before = _own_cgroups()
    procs = warm.own_procs_file()
    if procs is None:
        pytest.skip("no writable cgroup.procs of our own on this host")
    warmer = warm.AttachWarmer(procs_file=procs, interval=0.001)
    try:
        import time
        deadline = time.monotonic() + 5
        while warmer.writes < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        warmer.stop()
    assert warmer.writes >= 2
    assert _own_cgroups() == before
