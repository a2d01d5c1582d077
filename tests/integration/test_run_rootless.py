"""`hutch run` started by a non-root user: with --userns it maps the user's own uid to the
container's root (the one mapping the kernel allows without privilege).  Never a traceback.
(Without --userns it refuses: tests/integration/test_run_errors.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from helpers.run import hutch_executable, one_hutch_line

pytestmark = pytest.mark.priv

NOBODY = 65534
AS_NOBODY = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]


@pytest.fixture
def rootless_dirs(busybox_rootfs):
    """(rootfs, state root) reachable and, for the state root, writable by uid 65534."""
    parent = tempfile.mkdtemp(prefix="hutch-test-rootless-", dir="/tmp")
    os.chmod(parent, 0o755)
    rootfs = os.path.join(parent, "rootfs")
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    state = os.path.join(parent, "state")
    os.mkdir(state, 0o700)
    os.chown(state, NOBODY, NOBODY)
    probe = subprocess.run([*AS_NOBODY, hutch_executable(), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        pytest.skip(f"hutch's interpreter is not usable by uid {NOBODY}: {probe.stderr.strip()[:120]}")
    kernel = subprocess.run([*AS_NOBODY, "unshare", "-r", "true"], capture_output=True, text=True)
    if kernel.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        pytest.skip(f"this kernel refuses unprivileged user namespaces: {kernel.stderr.strip()}")
    tmp_before = set(os.listdir("/tmp"))
    yield rootfs, state
    shutil.rmtree(parent, ignore_errors=True)
    # hutch's per-user default state root for uid 65534 (e.g. /tmp/hutch-65534), made by
    # the test that runs without --root
    for name in set(os.listdir("/tmp")) - tmp_before:
        path = os.path.join("/tmp", name)
        if name.startswith("hutch") and os.stat(path).st_uid == NOBODY:
            shutil.rmtree(path, ignore_errors=True)


def as_nobody(args, timeout=60):
    return subprocess.run([*AS_NOBODY, hutch_executable(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd="/", stdin=subprocess.DEVNULL)


def test_rootless_userns_maps_own_uid_to_root(rootless_dirs):
    rootfs, state = rootless_dirs
    result = as_nobody(["--root", state, "run", "--userns", "--uidmap", f"0:{NOBODY}:1",
                        "--gidmap", f"0:{NOBODY}:1", "--rootfs", rootfs, "--", "sh", "-c",
                        "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(NOBODY), "1"]
    assert lines[2] != os.readlink("/proc/self/ns/user")
    assert os.listdir(state) == [] or all(e.startswith(".") for e in os.listdir(state)), \
        f"state left in {state}: {os.listdir(state)}"


def test_rootless_without_writable_default_state_root_is_one_line(rootless_dirs):
    """/run/hutch is root's: a non-root user either gets a per-user default or one clear line."""
    rootfs, _ = rootless_dirs
    result = as_nobody(["run", "--userns", "--uidmap", f"0:{NOBODY}:1", "--gidmap", f"0:{NOBODY}:1",
                        "--rootfs", rootfs, "--", "true"])
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode != 0:
        assert result.returncode == 125
        one_hutch_line(result.stderr)

