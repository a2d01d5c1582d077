"""Regressions for the security review of the launch path: each test fails if its fix
is removed (the attack or the failure it describes comes back)."""

from __future__ import annotations

import ctypes
import json
import os

import pytest

from helpers.oci import new_id, oci  # noqa: F401  (fixture)
from helpers.run import hutch_run


def test_proc_through_a_symlink_is_refused(rootfs):
    """An image whose /proc is a symlink would get procfs where the container can later put
    fake files the runtime trusts (cap_last_cap, setgroups, attr: CVE-2023-28642)."""
    (rootfs / "tmp" / "p").mkdir(parents=True)
    (rootfs / "proc").rmdir()
    (rootfs / "proc").symlink_to("/tmp/p")
    result = hutch_run(["--rootfs", str(rootfs), "--", "true"])
    assert result.returncode == 125
    assert "symlink" in result.stderr and "mounts[0].destination" in result.stderr
    assert not os.listdir(rootfs / "tmp" / "p")


@pytest.mark.parametrize("args", [["--share", "mount"], ["--join-ns", "mount:/proc/1/ns/mnt"]])
def test_run_never_builds_a_root_in_a_shared_mount_namespace(rootfs, args):
    result = hutch_run([*args, "--rootfs", str(rootfs), "--", "true"])
    assert result.returncode == 125
    assert os.path.isdir("/usr/bin") and os.path.isdir(os.path.dirname(__file__)), \
        "the caller's root must still be there"


@pytest.mark.parametrize("namespaces", [[{"type": "pid"}],
                                        [{"type": "pid"}, {"type": "mount", "path": "/proc/self/ns/mnt"}]])
def test_oci_config_without_a_mount_namespace_is_refused(oci, bundle, namespaces):  # noqa: F811
    b = bundle(["true"], hostname=None, linux={"namespaces": namespaces})
    cid = new_id()
    res = oci.create(cid, b)
    assert res.returncode == 1
    assert "mount namespace" in res.stderr
    assert cid not in oci.ids()


def test_init_keeps_only_cap_kill_and_no_new_privs(rootfs):
    out = hutch_run(["--rootfs", str(rootfs), "--", "sh", "-c",
                     "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs)' /proc/1/status; "
                     "readlink /proc/1/exe || echo unreadable"]).stdout
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    assert fields == {"CapEff": "0000000000000020", "CapBnd": "0000000000000020",
                      "CapPrm": "0000000000000020", "NoNewPrivs": "1"}, out
    assert "python" not in out, "the container must not reach the host's interpreter via /proc/1/exe"


def test_pid_file_never_written_through_a_planted_symlink(oci, bundle, tmp_path):  # noqa: F811
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".pid.tmp").symlink_to(victim)
    cid = new_id()
    res = oci.create(cid, bundle(["sleep", "100"]), "--pid-file", str(tmp_path / "pid"))
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "precious"
    assert int((tmp_path / "pid").read_text()) == oci.state_json(cid)["pid"]


def test_a_cgroup_in_use_is_not_taken_over(oci, bundle, tmp_path):  # noqa: F811
    """Two runtime roots, one cgroupsPath: the second create must fail, or its delete
    --force would kill the first container's processes."""
    from helpers.oci import Runtime
    path = f"/hutch-test-shared-{os.getpid()}"
    b = bundle(["sleep", "100"], linux={"cgroupsPath": path})
    first = new_id()
    assert oci.create(first, b).returncode == 0
    other = Runtime(oci.path, tmp_path / "other-root")
    try:
        res = other.create(new_id(), b)
        assert res.returncode == 1 and "cgroup" in res.stderr
        assert oci.status(first) == "created"
    finally:
        other.force_cleanup()


def test_created_userns_container_can_be_started(oci, bundle, rootfs, tmp_path):  # noqa: F811
    """The exec fifo must be openable by a user namespace's root (mode past the umask)."""
    out = tmp_path / "out"
    out.touch()
    os.chmod(out, 0o666)
    os.chmod(tmp_path, 0o755)
    (rootfs / "out").touch()   # the mount point: the namespace's root cannot create it
    b = bundle(["sh", "-c", "echo started > /out"], root={"path": "rootfs", "readonly": False},
               mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
                       {"destination": "/out", "type": "bind", "source": str(out), "options": ["bind"]}],
               linux={"namespaces": [{"type": t} for t in ("pid", "mount", "user", "ipc", "uts")],
                      "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                      "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                      "maskedPaths": [], "readonlyPaths": []})
    # the bundle helper writes an absolute root.path; the rootfs must be reachable by uid 100000
    config = json.loads((b / "config.json").read_text())
    for p in [config["root"]["path"], *map(str, list(tmp_path.parents)[:3])]:
        os.chmod(p, os.stat(p).st_mode | 0o005)
    cid = new_id()
    res = oci.create(cid, b)
    assert res.returncode == 0, res.stderr
    assert oci.start(cid).returncode == 0
    assert oci.wait_status(cid, "stopped") == "stopped"
    assert out.read_text() == "started\n"


def test_api_does_not_leave_the_caller_a_subreaper(rootfs):
    """A library caller that became a subreaper for good would collect (and never reap)
    every later orphan, which stalls pid-namespace teardown of unrelated containers."""
    import hutch
    assert hutch.run(["true"], rootfs=str(rootfs)).returncode == 0
    value = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(37, ctypes.byref(value), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
    assert value.value == 0


def test_last_cap_comes_from_the_kernel(tmp_path):
    """A fake /proc/sys/kernel/cap_last_cap (as a container could plant) must not lower
    the number of capabilities the runtime drops."""
    fake = tmp_path / "cap_last_cap"
    fake.write_text("10\n")
    code = ("import os, sys; from hutch.syscall import libc; libc.unshare(libc.CLONE_NEWNS); "
            "libc.mount(None, '/', None, libc.MS_REC | libc.MS_PRIVATE); "
            f"libc.mount('{fake}', '/proc/sys/kernel/cap_last_cap', None, libc.MS_BIND); "
            "assert open('/proc/sys/kernel/cap_last_cap').read() == '10\\n'; "
            "from hutch.security.caps import last_cap; print(last_cap())")
    import sys
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert int(out.stdout) == int(f.read()) > 10


@pytest.mark.parametrize("flag,own", [((), True), (("--no-new-keyring",), False)])
def test_container_gets_its_own_session_keyring(oci, bundle, flag, own):  # noqa: F811
    """Keyrings are not namespaced: like runc, each container joins a session keyring of
    its own (unless --no-new-keyring), so it cannot use the caller's keys."""
    b = bundle(["cat", "/proc/keys"], linux={"maskedPaths": []})
    cid = new_id()
    res = oci.run(cid, b, *flag)
    assert res.returncode == 0, res.stderr
    assert (f"_ses.{cid}" in res.stdout) == own, res.stdout


def test_state_of_a_create_killed_half_way_is_collected(tmp_path, rootfs):
    """A `hutch run` SIGKILLed inside create leaves a "creating" state that no process
    will ever finish: the next run removes it (but never one whose create holds its lock)."""
    import fcntl
    from hutch.oci import state as st
    from helpers.run import hutch_executable
    root = str(tmp_path / "state")
    os.makedirs(root, mode=0o711)
    for cid in ("run-abandoned", "run-busy"):
        os.mkdir(os.path.join(root, cid))
        st.save(root, st.State(id=cid, bundle="/", status="creating", annotations={"org.hutch.run": "true"}))
    busy = os.open(os.path.join(root, ".run-busy.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(busy, fcntl.LOCK_EX)   # as a create in progress holds it
    try:
        import subprocess
        res = subprocess.run([hutch_executable(), "--root", root, "run", "--rootfs", str(rootfs), "--", "true"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert sorted(e for e in os.listdir(root) if not e.startswith(".")) == ["run-busy"]
    finally:
        os.close(busy)
