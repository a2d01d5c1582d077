"""The Python API `hutch.Container`: start, pid, signal/kill, wait, inspect/state.

The container's pid is checked from the host (/proc/PID: alive, in other namespaces,
running the command), signals are checked by their effect, and after wait() nothing of
the container is left."""

from __future__ import annotations

import os
import signal
import time

import pytest

from helpers.run import host_ns, processes_with_cmdline, restore_host_names  # noqa: F401 (fixture)

pytestmark = [pytest.mark.priv, pytest.mark.usefixtures("restore_host_names")]


@pytest.fixture
def hutch_api():
    import hutch
    if not hasattr(hutch, "Container"):
        pytest.fail("hutch.Container is missing from the package's API")
    return hutch


@pytest.fixture
def containers():
    """Containers made by a test; killed and waited for afterwards, whatever happened."""
    made = []
    yield made
    for c in made:
        try:
            if c.pid and c.returncode is None and os.path.exists(f"/proc/{c.pid}"):
                c.kill()
            if c.pid:
                c.wait()
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass


def status_of(container) -> str:
    """The container's status whichever form the API gives it (state attr or inspect())."""
    info = container.inspect() if hasattr(container, "inspect") else container.state
    if callable(info):
        info = info()
    if isinstance(info, dict):
        return info["status"]
    status = getattr(info, "status", info)
    return getattr(status, "value", status)


def wait_until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_start_gives_a_live_pid_in_new_namespaces(hutch_api, rootfs, containers):
    c = hutch_api.Container(["sleep", "31430"], rootfs=str(rootfs), hostname="api-c")
    containers.append(c)
    c.start()
    assert c.pid > 0 and os.path.exists(f"/proc/{c.pid}")
    for kind in ("pid", "uts", "net", "mnt", "ipc"):
        assert os.readlink(f"/proc/{c.pid}/ns/{kind}") != host_ns(kind), kind
    assert wait_until(lambda: processes_with_cmdline(["sleep", "31430"]))
    assert status_of(c) == "running"


def test_signal_is_delivered_and_wait_returns_status(hutch_api, rootfs, containers):
    c = hutch_api.Container(["sh", "-c", 'trap "exit 42" TERM; while :; do sleep 0.1; done'],
                            rootfs=str(rootfs))
    containers.append(c)
    c.start()
    time.sleep(0.3)  # let the shell install its trap
    c.signal(signal.SIGTERM)
    assert c.wait() == 42
    assert status_of(c) == "stopped"


def test_kill_ends_the_container_and_its_processes(hutch_api, rootfs, containers):
    marker = ["sleep", "31431"]
    c = hutch_api.Container(["sh", "-c", "sleep 31431 & sleep 31431"], rootfs=str(rootfs))
    containers.append(c)
    c.start()
    assert wait_until(lambda: len(processes_with_cmdline(marker)) == 2)
    pid = c.pid
    c.kill()
    status = c.wait()
    assert status == 137  # 128+SIGKILL, as the CLI
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10), \
        "container init still exists (or is an unreaped zombie) after wait()"
    assert wait_until(lambda: not processes_with_cmdline(marker), timeout=10), "processes outlived kill()"


def test_wait_returns_exit_code(hutch_api, rootfs, containers):
    c = hutch_api.Container(["sh", "-c", "exit 7"], rootfs=str(rootfs))
    containers.append(c)
    c.start()
    assert c.wait() == 7


def test_inspect_before_start(hutch_api, rootfs, containers):
    """A Container not yet started can be inspected (it is not an error to ask)."""
    c = hutch_api.Container(["true"], rootfs=str(rootfs))
    containers.append(c)
    assert status_of(c) in ("created", "new", "init", "not started", "initial")
    c.start()
    c.wait()
    assert status_of(c) == "stopped"


def test_context_manager_cleans_up(hutch_api, rootfs):
    marker = ["sleep", "31432"]
    if not hasattr(hutch_api.Container, "__enter__"):
        pytest.skip("Container is not a context manager")
    with hutch_api.Container(marker, rootfs=str(rootfs)) as c:
        c.start() if not c.pid else None
        assert wait_until(lambda: processes_with_cmdline(marker))
    assert wait_until(lambda: not processes_with_cmdline(marker), timeout=10)
