"""hutch.ns on the real kernel: listing, entering, running in, persisting namespaces.

Every namespace is made by the test (unshare), and every check reads the kernel's
own view (stat of /proc/PID/ns/*, /proc/self/mountinfo), not our return values."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest

from helpers.host import wait_child as _wait_child

import hutch.ns
from hutch.errors import ConfigError, HutchError, NotFoundError
from hutch.oci import state as oci_state
from hutch.syscall import proc
from hutch.tools.containers import container_namespaces

pytestmark = pytest.mark.priv


def _ino(pid, ns_type) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns_type}").st_ino


def _mount_points() -> list[str]:
    return [m.mount_point for m in proc.read_mountinfo()]


def _spawn(args: list[str], comm: str = "sleep"):
    """Start `unshare --kill-child ... ARGS` and return (Popen, pid of the inner process)."""
    p = subprocess.Popen(["unshare", "--kill-child", *args])
    try:
        return p, _wait_child(p.pid, comm)
    except BaseException:
        p.kill()
        p.wait()
        raise


@pytest.fixture
def sleeper():
    """A process in new pid, mnt, uts, ipc, net and cgroup namespaces, hostname set."""
    p, pid = _spawn(["-fpmuinC", "--mount-proc", "sh", "-c",
                     "hostname hutch-ns-api; exec sleep 600"])
    yield pid
    p.kill()
    p.wait()


@pytest.fixture
def user_sleeper():
    """A process in a new user namespace (mapped root) and pid namespace it owns."""
    p, pid = _spawn(["-Urfp", "sleep", "600"])
    yield pid
    p.kill()
    p.wait()


@pytest.fixture
def nsfile(tmp_path):
    """An empty file to bind a namespace on; unmounted and removed afterwards."""
    path = str(tmp_path / f"ns-{uuid.uuid4().hex[:8]}")
    open(path, "w").close()
    yield path
    while path in _mount_points():
        subprocess.run(["umount", "-l", path], check=False)
    if os.path.exists(path):
        os.unlink(path)


# --- listing ----------------------------------------------------------------------

def test_list_finds_a_process_namespaces(sleeper):
    rows = {r.ns: r for r in hutch.ns.list_namespaces(pid=sleeper)}
    pidns = rows[_ino(sleeper, "pid")]
    assert (pidns.type, pidns.nprocs, pidns.pid, pidns.pids) == ("pid", 1, sleeper, [sleeper])
    assert pidns.command == "sleep 600" and pidns.user == "root" and pidns.uid == 0
    # unshare -f itself joined the others, then forked the sleeper
    unshare_pid = int(proc.read_status(sleeper)["PPid"])
    for ns_type in ("mnt", "uts", "ipc", "net", "cgroup"):
        row = rows[_ino(sleeper, ns_type)]
        assert row.type == ns_type
        assert row.nprocs == 2 and sorted(row.pids) == sorted([unshare_pid, sleeper])
        assert row.pid == min(unshare_pid, sleeper) and row.ppid == os.getpid()
        assert row.command.startswith("unshare --kill-child")
    # namespaces shared with us are listed too, with more processes
    assert rows[_ino("self", "user")].nprocs > 1


def test_list_finds_bind_mounted_namespace(nsfile):
    subprocess.run(["unshare", f"--uts={nsfile}", "true"], check=True)
    ino = os.stat(nsfile).st_ino
    rows = {r.ns: r for r in hutch.ns.list_namespaces(["uts"])}
    row = rows[ino]
    assert (row.nprocs, row.pid, row.held_by) == (0, None, "mount")
    assert row.nsfs == [nsfile]
    assert row.ons == _ino("self", "user")


def test_list_finds_namespace_held_only_by_an_fd(nsfile):
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True)
    fd = os.open(nsfile, os.O_RDONLY)
    try:
        ino = os.fstat(fd).st_ino
        subprocess.run(["umount", "-l", nsfile], check=True)   # now only our fd keeps it
        row = {r.ns: r for r in hutch.ns.list_namespaces(["net"])}[ino]
        assert row.held_by == "fd" and row.nprocs == 0 and row.nsfs == []
        assert row.path == f"/proc/{os.getpid()}/fd/{fd}"
    finally:
        os.close(fd)
    assert ino not in {r.ns for r in hutch.ns.list_namespaces(["net"])}


def test_list_finds_mount_in_another_mount_namespace(tmp_path):
    target = tmp_path / "uts-elsewhere"
    target.touch()
    # The bind mount exists only inside the new (private) mount namespace.
    p, pid = _spawn(["-m", "--propagation", "private", "sh", "-c",
                     f"unshare --uts={target} true && exec sleep 600"])
    try:
        assert str(target) not in _mount_points()
        mounts = [m for m in proc.read_mountinfo(pid) if m.mount_point == str(target)]
        assert mounts and mounts[0].fstype == "nsfs"
        ino = int(mounts[0].root.split("[")[1].rstrip("]"))
        row = {r.ns: r for r in hutch.ns.list_namespaces(["uts"])}[ino]
        assert row.held_by == "mount" and row.nprocs == 0
        # opened through /proc/PID/root of a process in that mount namespace
        holder = int(row.path.split("/")[2])
        assert row.path == f"/proc/{holder}/root{target}" and _ino(holder, "mnt") == _ino(pid, "mnt")
    finally:
        p.kill()
        p.wait()


def test_relations_of_a_user_namespace(user_sleeper):
    rows = {r.ns: r for r in hutch.ns.list_namespaces(["user", "pid"], pid=user_sleeper)}
    userns, pidns = rows[_ino(user_sleeper, "user")], rows[_ino(user_sleeper, "pid")]
    assert userns.pns == _ino("self", "user") and userns.ons == _ino("self", "user")
    assert pidns.pns == _ino("self", "pid") and pidns.ons == userns.ns


def test_container_column_from_runtime_state(sleeper, tmp_path):
    root = str(tmp_path / "runtime")
    os.makedirs(f"{root}/hutch-test-ctr")
    oci_state.save(root, oci_state.State(id="hutch-test-ctr", bundle="/nonexistent", pid=sleeper,
                                         pid_start=proc.start_time(sleeper), status="running"))
    os.makedirs(f"{root}/hutch-test-dead")
    oci_state.save(root, oci_state.State(id="hutch-test-dead", bundle="/x", pid=sleeper,
                                         pid_start=1, status="running"))  # wrong start: recycled
    owners = container_namespaces(root)
    assert owners[_ino(sleeper, "pid")] == ["hutch-test-ctr"]
    rows = {r.ns: r for r in hutch.ns.list_namespaces(owners=owners)}
    assert rows[_ino(sleeper, "net")].containers == ["hutch-test-ctr"]
    assert rows[_ino(sleeper, "net")].container == "hutch-test-ctr"
    assert rows[_ino("self", "net")].containers == []


def test_list_bad_input():
    with pytest.raises(ConfigError):
        hutch.ns.list_namespaces(["nope"])
    with pytest.raises(NotFoundError):
        hutch.ns.list_namespaces(pid=2**22 + 7)


def test_inspect_path_and_pid(sleeper, nsfile):
    hutch.ns.persist(sleeper, "net", nsfile)
    try:
        by_path = hutch.ns.inspect(nsfile)
        by_pid = hutch.ns.inspect(sleeper, "net")
        assert by_path.ns == by_pid.ns == _ino(sleeper, "net")
        assert by_path.nsfs == [nsfile] and sleeper in by_pid.pids
    finally:
        hutch.ns.unpersist(nsfile, remove=False)


# --- entering ---------------------------------------------------------------------

def test_enter_switches_the_thread_and_comes_back(sleeper):
    home_net, home_uts = _ino("thread-self", "net"), socket.gethostname()
    with hutch.ns.enter(sleeper, "net"):
        assert _ino("thread-self", "net") == _ino(sleeper, "net")
        with hutch.ns.enter(sleeper, "uts"):
            assert socket.gethostname() == "hutch-ns-api"
        assert socket.gethostname() == home_uts
    assert _ino("thread-self", "net") == home_net


def test_enter_comes_back_after_an_exception(sleeper):
    home = _ino("thread-self", "ipc")
    with pytest.raises(ZeroDivisionError):
        with hutch.ns.enter(sleeper, "ipc"):
            assert _ino("thread-self", "ipc") == _ino(sleeper, "ipc")
            1 / 0
    assert _ino("thread-self", "ipc") == home


def test_enter_by_path_and_refusals(sleeper, nsfile):
    hutch.ns.persist(sleeper, "net", nsfile)
    try:
        with hutch.ns.enter(nsfile, "net"):
            assert _ino("thread-self", "net") == _ino(sleeper, "net")
    finally:
        hutch.ns.unpersist(nsfile, remove=False)
    with pytest.raises(ConfigError, match="run_in"):
        with hutch.ns.enter(sleeper, "mnt"):
            pass
    with pytest.raises(NotFoundError):
        with hutch.ns.enter(2**22 + 7, "net"):
            pass


def test_run_in_mount_and_pid_namespaces(sleeper):
    # --mount-proc gave the sleeper its own /proc: pid 1 there is the sleeper.
    listing = hutch.ns.run_in(sleeper, ["mnt"], os.listdir, "/proc")
    assert "1" in listing and str(os.getpid()) not in listing
    pid_inside = hutch.ns.run_in(sleeper, ["pid", "mnt"], os.getpid)
    assert 1 < pid_inside < 100
    assert hutch.ns.run_in(sleeper, "uts", socket.gethostname) == "hutch-ns-api"
    assert _ino("self", "mnt") != _ino(sleeper, "mnt")     # we never moved


def test_run_in_user_namespace_becomes_root(user_sleeper):
    def ids():
        with open("/proc/self/uid_map") as f:
            return os.getuid(), f.read().split()
    uid, uid_map = hutch.ns.run_in(user_sleeper, ["user"], ids)
    assert uid == 0 and uid_map == ["0", "0", "1"]


def test_run_in_raises_the_child_exception(sleeper):
    with pytest.raises(ValueError):
        hutch.ns.run_in(sleeper, ["net"], int, "not a number")
    with pytest.raises(HutchError, match="cannot send"):
        hutch.ns.run_in(sleeper, ["net"], lambda: (lambda: 1))


# --- persisting -------------------------------------------------------------------

def test_persist_and_unpersist(sleeper, tmp_path):
    path = str(tmp_path / "pinned-net")
    ino = hutch.ns.persist(sleeper, "net", path)
    try:
        assert ino == _ino(sleeper, "net") == os.stat(path).st_ino
        entry = [m for m in proc.read_mountinfo() if m.mount_point == path]
        assert entry and entry[0].fstype == "nsfs" and entry[0].root == f"net:[{ino}]"
        with pytest.raises(ConfigError, match="already a mount point"):
            hutch.ns.persist(sleeper, "uts", path)
    finally:
        hutch.ns.unpersist(path)
    assert path not in _mount_points() and not os.path.exists(path)


def test_persist_failure_leaves_nothing(tmp_path):
    path = str(tmp_path / "never")
    with pytest.raises(ConfigError):
        hutch.ns.persist(2**22 + 7, "net", path)
    with pytest.raises(ConfigError):
        hutch.ns.persist(os.getpid(), "bogus", path)
    assert not os.path.exists(path) and path not in _mount_points()


# --- becoming root in a user namespace (the setgroups rule) --------------------------

def _in_new_userns(deny_setgroups: bool, drop_setgid: bool) -> str:
    """Fork a child into a new user namespace whose maps (0 -> host root) we write,
    `deny` first if asked; the child, without CAP_SETGID if asked, calls
    become_root_in_userns.  Returns what it reported: "ok uid gid" or "error: ..."."""
    from hutch import syscall as hsys
    from hutch.ns.join import become_root_in_userns
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    child = os.fork()
    if child == 0:                                      # pragma: no cover (child side)
        try:
            os.close(go_w)
            os.close(out_r)
            hsys.unshare(hsys.CLONE_NEWUSER)
            os.write(out_w, b"u")
            os.read(go_r, 1)                            # maps written
            if drop_setgid:
                eff, perm, inh = hsys.capget()
                setgid = 1 << 6                         # CAP_SETGID
                hsys.capset(eff & ~setgid, perm & ~setgid, inh & ~setgid)
            try:
                become_root_in_userns()
                report = f"ok {os.getuid()} {os.getgid()}"
            except HutchError as exc:
                report = f"error: {exc}"
            os.write(out_w, report.encode())
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(out_w)
    try:
        assert os.read(out_r, 1) == b"u"
        if deny_setgroups:
            with open(f"/proc/{child}/setgroups", "w") as f:
                f.write("deny")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child}/{name}", "w") as f:
                f.write("0 0 1\n")
        os.write(go_w, b"g")
        chunks = []
        while chunk := os.read(out_r, 4096):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(go_w)
        os.close(out_r)
        os.waitpid(child, 0)


def test_become_root_in_userns():
    assert _in_new_userns(deny_setgroups=False, drop_setgid=False) == "ok 0 0"


def test_become_root_in_userns_with_setgroups_denied():
    # as after a rootless single-id map: setgroups fails, the namespace says "deny": fine
    assert _in_new_userns(deny_setgroups=True, drop_setgid=False) == "ok 0 0"


def test_become_root_in_userns_refuses_a_setgroups_failure_it_allows():
    # setgroups is allowed there but fails (no CAP_SETGID): fail closed, saying why
    report = _in_new_userns(deny_setgroups=False, drop_setgid=True)
    assert report.startswith("error: user namespace: cannot become root in the user namespace: "
                             "setgroups([]): Operation not permitted"), report
    assert "does not deny setgroups" in report
