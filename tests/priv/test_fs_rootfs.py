"""hutch.fs on the real kernel: every test builds a container filesystem in a forked
child that has its own mount (and pid, net, ...) namespaces, probes it from inside and
sends the result back over a pipe.  The host's mount table is never touched: the
namespaces die with the child."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from hutch.errors import SysCallError
from hutch import syscall as hs
from hutch.fs.rootfs import finish_rootfs, setup_rootfs
from hutch.syscall.proc import parse_mountinfo, read_mountinfo

pytestmark = pytest.mark.priv

CONTAINER_NS = (hs.CLONE_NEWNS | hs.CLONE_NEWPID | hs.CLONE_NEWNET | hs.CLONE_NEWIPC
                | hs.CLONE_NEWUTS | hs.CLONE_NEWCGROUP)


# --- harness -------------------------------------------------------------------------

def _send(fd: int, obj) -> None:
    data = json.dumps(obj).encode()
    os.write(fd, struct.pack("!Q", len(data)) + data)


def _recv(fd: int):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    head = exactly(8)
    if head is None:
        return None
    return json.loads(exactly(struct.unpack("!Q", head)[0]))


def _error(exc: BaseException) -> dict:
    return {"error": type(exc).__name__, "message": str(exc), "where": getattr(exc, "where", None),
            "errno": getattr(exc, "errno", None)}


def _set_maps(pid: int) -> None:
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    for kind in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{kind}", "w") as f:
            f.write("0 0 65536\n")


class Container:
    """Run setup_rootfs/finish_rootfs in fresh namespaces and a probe inside."""

    def __init__(self, spec: dict, bundle: str, *, flags: int = CONTAINER_NS, userns: bool = False,
                 console_path: str | None = None, no_pivot: bool = False, finish: bool = True,
                 pre=None):
        self.spec, self.bundle, self.flags, self.pre = spec, bundle, flags, pre
        self.userns, self.console_path, self.no_pivot, self.finish = userns, console_path, no_pivot, finish
        self.pid = None
        self._release_w = None

    def start(self, probe):
        res_r, res_w = os.pipe()
        rel_r, rel_w = os.pipe()
        sync_r, sync_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(res_r)
            os.close(rel_w)
            os.close(sync_r)
            self._child(probe, res_w, rel_r, sync_w)
        os.close(res_w)
        os.close(rel_r)
        os.close(sync_w)
        self.pid, self._release_w = pid, rel_w
        if self.userns:
            # The child has unshared its user namespace: map root before it mounts.
            os.read(sync_r, 1)
            _set_maps(pid)
            os.write(rel_w, b"m")
        os.close(sync_r)
        result = _recv(res_r)
        os.close(res_r)
        return result

    def stop(self) -> int:
        if self._release_w is not None:
            os.close(self._release_w)
            self._release_w = None
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def run(self, probe=lambda: None):
        try:
            return self.start(probe)
        finally:
            self.stop()

    def _child(self, probe, res_w, rel_r, sync_w):  # pragma: no cover - runs in the child
        code = 1
        try:
            flags = self.flags | (hs.CLONE_NEWUSER if self.userns else 0)
            hs.unshare(flags)
            if self.userns:
                os.write(sync_w, b"u")
                os.read(rel_r, 1)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            inner = os.fork() if flags & hs.CLONE_NEWPID else 0
            if inner == 0:
                self._inner(probe, res_w, rel_r)
            _, status = os.waitpid(inner, 0)
            code = os.waitstatus_to_exitcode(status)
        except BaseException as exc:
            _send(res_w, _error(exc))
        finally:
            os._exit(code)

    def _inner(self, probe, res_w, rel_r):  # pragma: no cover - runs in the child
        code = 1
        try:
            try:
                if self.pre:
                    self.pre()  # in the new namespaces, before hutch touches anything
                setup_rootfs(self.spec, self.bundle, in_userns=self.userns,
                             console_path=self.console_path, no_pivot=self.no_pivot)
                if self.finish:
                    finish_rootfs(self.spec)
                result = {"ok": probe()}
            except BaseException as exc:
                result = _error(exc)
            _send(res_w, result)
            os.read(rel_r, 1)  # hold the namespaces until the parent has looked
            code = 0
        finally:
            os._exit(code)


def load_spec(bundle_dir: Path) -> dict:
    return json.loads((bundle_dir / "config.json").read_text())


def run_in(bundle_dir: Path, probe=lambda: None, **kw):
    return Container(load_spec(bundle_dir), str(bundle_dir), **kw).run(probe)


def ok(result):
    assert result is not None, "the container process died without a result"
    assert "ok" in result, f"setup failed: {result}"
    return result["ok"]


def mountinfo_text() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def try_write(path: str) -> str:
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]


def mounts_by_point(text: str) -> dict:
    return {m.mount_point: m for m in parse_mountinfo(text)}


def per_mount_ro(m) -> bool:
    return "ro" in m.options.split(",")


# --- the default runc-spec bundle ------------------------------------------------------

def test_default_bundle_mount_table(bundle):
    b = bundle(["true"])
    mounts = mounts_by_point(ok(run_in(b, mountinfo_text)))
    expect = {"/": ("ext4", True), "/proc": ("proc", False), "/dev": ("tmpfs", False),
              "/dev/pts": ("devpts", False), "/dev/shm": ("tmpfs", False),
              "/dev/mqueue": ("mqueue", False), "/sys": ("sysfs", True),
              "/proc/sys": ("proc", True), "/proc/keys": ("tmpfs", False)}
    for point, (fstype, ro) in expect.items():
        assert point in mounts, f"{point} missing from {sorted(mounts)}"
        assert mounts[point].fstype == fstype, point
        assert per_mount_ro(mounts[point]) == ro, point
    # Nothing of the host stays visible: every mount is at or under the new root.
    assert "/old_root" not in mounts and "/work" not in mounts
    assert "nosuid" in mounts["/dev/shm"].options and "noexec" in mounts["/dev/shm"].options
    assert "ptmxmode=666" in mounts["/dev/pts"].super_options


def test_host_mount_table_unchanged_while_container_runs(bundle, rootfs):
    # Other suites may mount things on this machine meanwhile: look only at ours.
    c = Container(load_spec(bundle(["true"])), str(rootfs.parent / "bundle"))
    try:
        inside = mounts_by_point(ok(c.start(mountinfo_text)))
        assert "/dev/shm" in inside
        assert not any(m.mount_point.startswith(str(rootfs)) for m in read_mountinfo())
    finally:
        assert c.stop() == 0


def in_outer_namespace(fn):
    """Run fn() in a forked child with a private mount namespace of its own (a stand-in
    "host" the test may change), returning what fn returns."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            hs.unshare(hs.CLONE_NEWNS)
            hs.mount(None, "/", None, hs.MS_PRIVATE | hs.MS_REC)
            _send(w, {"ok": fn()})
            code = 0
        except BaseException as exc:
            _send(w, _error(exc))
        finally:
            os._exit(code)
    os.close(w)
    res = _recv(r)
    os.close(r)
    os.waitpid(pid, 0)
    return ok(res)


def test_container_mounts_do_not_propagate_to_a_shared_host(bundle, rootfs):
    """A host whose / is rshared (systemd's default) is simulated in a private mount
    namespace; the container is built in a mount namespace cloned from it, so without
    hutch's rslave and private parent every container mount would appear on that "host"."""
    b = bundle(["true"])

    def outer():
        hs.mount(None, "/", None, hs.MS_SHARED | hs.MS_REC)
        c = Container(load_spec(b), str(b))
        try:
            inside = c.start(mountinfo_text)
            leaked = [m.mount_point for m in read_mountinfo() if m.mount_point.startswith(str(rootfs))]
        finally:
            c.stop()
        return {"inside": inside, "leaked": leaked}
    res = in_outer_namespace(outer)
    assert "/dev/shm" in mounts_by_point(ok(res["inside"]))
    assert res["leaked"] == []


def test_user_namespace_keeps_locked_flags_of_a_bind_source(bundle, tmp_path, rootfs):
    """A nosuid,nodev mount made by the (simulated) host is locked for a user namespace:
    remounting the bind read-only must keep those flags, or the kernel says EPERM."""
    os.chmod(rootfs.parent, 0o755)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(tmp_path, 0o755)
    b = bundle(["true"])
    spec = load_spec(b)
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(locked),
                           "options": ["rbind", "ro"]})

    def outer():
        hs.mount("tmpfs", str(locked), "tmpfs", hs.MS_NOSUID | hs.MS_NODEV | hs.MS_NOEXEC, "mode=755")
        return Container(spec, str(b), userns=True).run(
            lambda: [mounts_by_point(mountinfo_text())["/data"].options, try_write("/data/x")])
    res = ok(in_outer_namespace(outer))
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(res[0].split(",")) and res[1] == "EROFS"


def test_read_only_root_refuses_writes(bundle):
    res = ok(run_in(bundle(["true"]), lambda: [try_write("/newfile"), try_write("/dev/shm/x")]))
    assert res == ["EROFS", "ok"]


def test_writable_root_when_not_readonly(bundle, rootfs):
    b = bundle(["true"], root={"readonly": False})
    assert ok(run_in(b, lambda: try_write("/newfile"))) == "ok"
    assert (rootfs / "newfile").read_text() == "x"


def test_masked_paths_read_empty(bundle):
    def probe():
        return {"keys": open("/proc/keys").read(), "timer_list": open("/proc/timer_list").read(),
                "firmware": os.listdir("/sys/firmware"), "firmware_w": try_write("/sys/firmware/x")}
    res = ok(run_in(bundle(["true"]), probe))
    assert os.path.getsize("/proc/keys") == 0 or open("/proc/keys").read()  # host has content or not
    assert res["keys"] == "" and res["timer_list"] == ""
    assert res["firmware"] == [] and res["firmware_w"] in ("EROFS", "EACCES")
    assert os.listdir("/sys/firmware")  # the host's is untouched


def test_masked_file_is_bound_from_the_real_dev_null(bundle):
    def probe():
        st = os.stat("/proc/keys")
        return [stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev)]
    assert ok(run_in(bundle(["true"]), probe)) == [True, 1, 3]


def test_masking_refuses_a_fake_dev_null(bundle, rootfs):
    # /dev is not a tmpfs here: the rootfs's own /dev is used, and its "null" is a
    # regular file planted by the image (the CVE-2025-31133 pattern).
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    spec["mounts"].append({"destination": "/dev", "type": "bind", "source": str(rootfs / "fakedev"),
                           "options": ["rbind"]})
    (rootfs / "fakedev").mkdir()
    (rootfs / "fakedev/null").write_text("secret")
    res = Container(spec, str(b)).run()
    assert res["error"] == "SysCallError" and "1:3" in res["message"]
    assert res["where"].startswith("linux.maskedPaths")


def test_readonly_paths_refuse_writes(bundle):
    def probe():
        return [try_write("/proc/sys/kernel/hostname"), try_write("/proc/sys/vm/drop_caches")]
    assert ok(run_in(bundle(["true"]), probe)) == ["EROFS", "EROFS"]


def test_readonly_and_masked_paths_on_files_and_missing_paths(bundle, rootfs):
    (rootfs / "etc/secret").mkdir()
    (rootfs / "etc/secret/key").write_text("k")
    b = bundle(["true"], root={"readonly": False}, linux={
        "readonlyPaths": ["/etc/passwd", "/does/not/exist"],
        "maskedPaths": ["/etc/secret", "/etc/group", "/no/such/path"]})

    def probe():
        return [try_write("/etc/passwd"), try_write("/etc/hostname"), os.listdir("/etc/secret"),
                open("/etc/group").read(), try_write("/etc/secret/x")]
    assert ok(run_in(b, probe)) == ["EROFS", "ok", [], "", "EROFS"]
    assert (rootfs / "etc/secret/key").read_text() == "k"


# --- spec mounts ----------------------------------------------------------------------

def test_bind_mounts_ro_and_rw(bundle, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("hi")
    extra = [{"destination": "/ro", "type": "bind", "source": str(src), "options": ["rbind", "ro"]},
             {"destination": "/rw", "type": "bind", "source": str(src), "options": ["bind"]},
             {"destination": "/etc/hello.txt", "type": "bind", "source": str(src / "hello"),
              "options": ["bind", "ro", "nosuid", "nodev"]}]
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"] += extra

    def probe():
        m = mounts_by_point(mountinfo_text())
        return {"ro": try_write("/ro/new"), "rw": try_write("/rw/new"),
                "read": open("/ro/hello").read(), "file": open("/etc/hello.txt").read(),
                "file_opts": m["/etc/hello.txt"].options}
    res = ok(Container(spec, str(b)).run(probe))
    assert res["ro"] == "EROFS" and res["rw"] == "ok" and res["read"] == "hi" and res["file"] == "hi"
    assert {"ro", "nosuid", "nodev"} <= set(res["file_opts"].split(","))
    assert (src / "new").read_text() == "x"


def test_recursive_read_only_bind(bundle, rootfs):
    b = bundle(["true"], root={"readonly": False})
    spec = load_spec(b)
    spec["mounts"] += [
        {"destination": "/data", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs"},
        # rbind of a tree that has a submount; "ro" alone would leave /view/sub writable.
        {"destination": "/view", "type": "bind", "source": str(rootfs / "data"), "options": ["rbind", "rro"]},
        {"destination": "/view2", "type": "bind", "source": str(rootfs / "data"), "options": ["rbind", "ro"]},
    ]
    res = ok(Container(spec, str(b)).run(
        lambda: [try_write("/view/x"), try_write("/view/sub/x"), try_write("/view2/x"),
                 try_write("/view2/sub/x"), try_write("/data/sub/y")]))
    assert res == ["EROFS", "EROFS", "EROFS", "ok", "ok"]


def test_mount_propagation_options(bundle):
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"] += [{"destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["shared"]},
                       {"destination": "/unb", "type": "tmpfs", "source": "tmpfs", "options": ["unbindable"]}]
    res = mounts_by_point(ok(Container(spec, str(b)).run(mountinfo_text)))
    assert any(o.startswith("shared:") for o in res["/shared"].optional)
    assert "unbindable" in res["/unb"].optional
    assert not any(o.startswith("shared:") for o in res["/proc"].optional)


def test_tmpfs_options_reach_the_kernel(bundle):
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "noexec", "size=1m", "mode=700", "ro"]})
    m = mounts_by_point(ok(Container(spec, str(b)).run(mountinfo_text)))["/scratch"]
    assert {"ro", "nosuid", "noexec"} <= set(m.options.split(","))
    assert "size=1024k" in m.super_options and "mode=700" in m.super_options


def test_tmpcopyup_keeps_image_contents(bundle, rootfs):
    (rootfs / "etc/app").mkdir()
    (rootfs / "etc/app/conf").write_text("v1")
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"].append({"destination": "/etc/app", "type": "tmpfs", "source": "tmpfs",
                           "options": ["tmpcopyup"]})
    res = ok(Container(spec, str(b)).run(lambda: [open("/etc/app/conf").read(), try_write("/etc/app/new")]))
    assert res == ["v1", "ok"]
    assert not (rootfs / "etc/app/new").exists()


# --- symlink escapes ---------------------------------------------------------------------

def test_destination_symlinks_stay_inside_the_rootfs(bundle, rootfs, tmp_path):
    host_dir = tmp_path / "hostside"
    host_dir.mkdir()
    (rootfs / "evil_abs").symlink_to("/etc")
    (rootfs / "evil_rel").symlink_to("../../../../../../../../etc")
    (rootfs / "evil_host").symlink_to(str(host_dir))           # dangling inside the rootfs
    host_dir2 = tmp_path / "hostside2"
    host_dir2.mkdir()
    (rootfs / "evil_file").symlink_to(str(host_dir2 / "planted"))
    src = tmp_path / "payload"
    src.write_text("payload")
    b = bundle(["true"], root={"readonly": False})
    spec = load_spec(b)
    spec["mounts"] += [
        {"destination": "/evil_abs/a", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/evil_rel/b", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/evil_host", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/evil_file", "type": "bind", "source": str(src), "options": ["bind"]},
    ]
    res = mounts_by_point(ok(Container(spec, str(b)).run(mountinfo_text)))
    assert {"/etc/a", "/etc/b", str(host_dir), str(host_dir2 / "planted")} <= set(res)
    # The host saw nothing: no directory made in its /etc, no file planted beside us.
    assert not os.path.exists("/etc/a") and not os.path.exists("/etc/b")
    assert list(host_dir.iterdir()) == [] and list(host_dir2.iterdir()) == []
    # ... and the mount points were made inside the rootfs instead.
    assert (rootfs / "etc/a").is_dir() and (rootfs / str(host_dir).lstrip("/")).is_dir()
    assert (rootfs / str(host_dir2).lstrip("/") / "planted").is_file()


def test_proc_destinations_are_checked_after_resolving(bundle, rootfs, tmp_path):
    src = tmp_path / "f"
    src.write_text("fake")
    (rootfs / "myproc").symlink_to("/proc")
    for dest in ("/proc/kmsg", "/myproc/sysrq-trigger", "/proc/../proc/self/attr"):
        b = bundle(["true"])
        spec = load_spec(b)
        spec["mounts"].append({"destination": dest, "type": "bind", "source": str(src), "options": ["bind"]})
        res = Container(spec, str(b)).run()
        assert res.get("error") == "ConfigError", (dest, res)
        assert res["where"] == f"mounts[{len(spec['mounts']) - 1}]" and "inside /proc" in res["message"]
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"].append({"destination": "/proc/uptime", "type": "bind", "source": str(src), "options": ["bind"]})
    assert ok(Container(spec, str(b)).run(lambda: open("/proc/uptime").read())) == "fake"


def test_failure_names_the_mount(bundle, tmp_path):
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path / "missing"),
                           "options": ["rbind"]})
    res = Container(spec, str(b)).run()
    assert res["error"] == "SysCallError" and res["where"] == f"mounts[{len(spec['mounts']) - 1}]"
    assert "missing" in res["message"] and res["errno"] == errno.ENOENT


def test_unknown_filesystem_type_names_the_mount(bundle):
    b = bundle(["true"])
    spec = load_spec(b)
    spec["mounts"].append({"destination": "/x", "type": "nosuchfs", "source": "none"})
    res = Container(spec, str(b)).run()
    assert res["where"] == f"mounts[{len(spec['mounts']) - 1}]" and "nosuchfs on /x" in res["message"]


# --- /dev ---------------------------------------------------------------------------------

def _dev_listing():
    out = {}
    for name in sorted(os.listdir("/dev")):
        st = os.lstat("/dev/" + name)
        if stat.S_ISLNK(st.st_mode):
            out[name] = ["link", os.readlink("/dev/" + name)]
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            out[name] = [oct(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), st.st_uid, st.st_gid]
        else:
            out[name] = ["dir" if stat.S_ISDIR(st.st_mode) else "file"]
    return out


def test_dev_contents_and_modes(bundle):
    b = bundle(["true"], linux={"devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 1000, "gid": 1001},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640}]})
    res = ok(run_in(b, _dev_listing))
    chr_ = oct(stat.S_IFCHR | 0o666)
    assert res["null"] == [chr_, 1, 3, 0, 0]
    assert res["zero"] == [chr_, 1, 5, 0, 0]
    assert res["full"] == [chr_, 1, 7, 0, 0]
    assert res["random"] == [chr_, 1, 8, 0, 0]
    assert res["urandom"] == [chr_, 1, 9, 0, 0]
    assert res["tty"] == [chr_, 5, 0, 0, 0]
    assert res["fuse"] == [oct(stat.S_IFCHR | 0o600), 10, 229, 1000, 1001]
    assert res["myfifo"][0] == oct(stat.S_IFIFO | 0o640)
    assert res["ptmx"] == ["link", "pts/ptmx"]
    assert res["fd"] == ["link", "/proc/self/fd"]
    assert res["stdin"] == ["link", "/proc/self/fd/0"]
    assert res["stderr"] == ["link", "/proc/self/fd/2"]
    assert {"pts", "shm", "mqueue"} <= set(res)
    assert "console" not in res


def test_dev_nodes_work_and_ptmx_gives_a_container_pty(bundle):
    def probe():
        with open("/dev/zero", "rb") as f:
            zero = f.read(4)
        master, slave = _container_pty()
        os.close(master)
        return [zero.hex(), try_write("/dev/null"), slave, os.listdir("/dev/pts")]
    res = ok(run_in(bundle(["true"]), probe))
    assert res[0] == "00000000" and res[1] == "ok"
    assert res[2] == "/dev/pts/0"  # a fresh devpts instance numbers from 0
    assert "ptmx" in res[3]


def test_stdio_on_host_dev_null_is_reopened_inside(bundle):
    def pre():
        fd = os.open("/dev/null", os.O_RDWR)
        os.dup2(fd, 0)
        os.close(fd)

    def probe():
        return [os.fstat(0).st_dev == os.stat("/dev/null").st_dev, os.fstat(0).st_rdev == os.stat("/dev/null").st_rdev]
    assert ok(run_in(bundle(["true"]), probe, pre=pre)) == [True, True]


def test_console_is_the_given_pty(bundle):
    master, slave = os.openpty()
    try:
        st = os.fstat(slave)

        def probe():
            c = os.stat("/dev/console")
            return [stat.S_ISCHR(c.st_mode), c.st_rdev]
        res = ok(run_in(bundle(["true"]), probe, console_path=os.ttyname(slave)))
        assert res == [True, st.st_rdev]
    finally:
        os.close(master)
        os.close(slave)


def test_console_must_be_a_pty(bundle, tmp_path):
    res = run_in(bundle(["true"]), console_path="/dev/null")
    assert res["error"] == "SysCallError" and "not a pty" in res["message"]
    assert res["where"] == "process.terminal"


def test_bind_console_after_pivot_refuses_a_planted_symlink(bundle, rootfs):
    # The image's own /dev (bind-mounted) carries console -> core_pattern
    # (the CVE-2025-52565 pattern): binding the pty must not follow it.
    from hutch.fs.devices import bind_console
    (rootfs / "mydev").mkdir()
    (rootfs / "mydev/console").symlink_to("/proc/sys/kernel/core_pattern")
    b = bundle(["true"], root={"readonly": False})
    spec = load_spec(b)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    spec["mounts"].append({"destination": "/dev", "type": "bind", "source": str(rootfs / "mydev"),
                           "options": ["rbind"]})
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []
    spec["mounts"].append({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                           "options": ["newinstance", "ptmxmode=0666"]})

    def probe():
        master, slave = _container_pty()
        try:
            bind_console(slave)
            return "mounted"
        except SysCallError as exc:
            return [type(exc).__name__, errno.errorcode[exc.errno]]
    assert ok(Container(spec, str(b)).run(probe)) == ["SysCallError", "ELOOP"]
    assert (rootfs / "mydev/console").is_symlink()


def _container_pty() -> tuple[int, str]:
    """A pty from the container's own devpts (after pivot_root): (master fd, slave path)."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(master, hs.TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, 0x80045430, b"\0" * 4))[0]  # TIOCGPTN
    return master, f"/dev/pts/{number}"


def test_bind_console_after_pivot(bundle):
    from hutch.fs.devices import bind_console

    def probe():
        master, slave = _container_pty()
        bind_console(slave)
        return [os.stat("/dev/console").st_rdev == os.stat(slave).st_rdev, os.major(os.stat(slave).st_rdev)]
    assert ok(run_in(bundle(["true"]), probe)) == [True, 136]


def test_bind_mounted_dev_is_left_alone(bundle, rootfs):
    (rootfs / "mydev").mkdir()
    b = bundle(["true"], root={"readonly": False})
    spec = load_spec(b)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    spec["mounts"].append({"destination": "/dev", "type": "bind", "source": str(rootfs / "mydev"),
                           "options": ["rbind"]})
    spec["linux"]["maskedPaths"] = []
    assert ok(Container(spec, str(b)).run(lambda: os.listdir("/dev"))) == []


# --- sysctl, pivot variants, cgroups --------------------------------------------------------

def test_sysctl_is_written_in_the_container_namespaces(bundle):
    b = bundle(["true"], linux={"sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}})

    def probe():
        return [open("/proc/sys/net/ipv4/ip_forward").read().strip(),
                open("/proc/sys/kernel/shmmni").read().strip()]
    host = [open("/proc/sys/net/ipv4/ip_forward").read().strip(), open("/proc/sys/kernel/shmmni").read().strip()]
    assert ok(run_in(b, probe)) == ["1", "1234"]
    assert [open("/proc/sys/net/ipv4/ip_forward").read().strip(),
            open("/proc/sys/kernel/shmmni").read().strip()] == host


def test_host_sysctl_is_refused_before_writing(bundle):
    b = bundle(["true"], linux={"sysctl": {"kernel.panic": "5"}})
    res = run_in(b)
    assert res["error"] == "ConfigError" and res["where"] == "linux.sysctl.kernel.panic"


def test_no_pivot_moves_the_root(bundle):
    res = mounts_by_point(ok(run_in(bundle(["true"]), mountinfo_text, no_pivot=True)))
    assert {"/", "/proc", "/dev", "/sys"} <= set(res)
    assert "/work" not in res and "/mnt/sandboxing/model_tools_env/v1/python" not in res


def test_cgroup_mount_on_a_v1_host(bundle):
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("the host is cgroup v2 only")
    res = mounts_by_point(ok(run_in(bundle(["true"]), mountinfo_text)))
    assert res["/sys/fs/cgroup"].fstype == "tmpfs" and per_mount_ro(res["/sys/fs/cgroup"])
    host = {m.mount_point.rsplit("/", 1)[1] for m in read_mountinfo() if m.fstype == "cgroup"}
    inside = {p.rsplit("/", 1)[1] for p, m in res.items() if m.fstype == "cgroup"}
    assert inside == host and inside
    assert all(per_mount_ro(m) and m.root == "/" for m in res.values() if m.fstype == "cgroup")


def test_cgroup_mount_without_cgroup_namespace_binds_our_own_cgroup(bundle):
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("the host is cgroup v2 only")
    b = bundle(["true"])
    spec = load_spec(b)
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "cgroup"]
    res = mounts_by_point(ok(Container(spec, str(b), flags=CONTAINER_NS & ~hs.CLONE_NEWCGROUP).run(mountinfo_text)))
    own = {}
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.strip().split(":", 2)
        own[ctrls] = path
    memory = res["/sys/fs/cgroup/memory"]
    assert memory.fstype == "cgroup" and memory.root == own["memory"] and per_mount_ro(memory)


def test_cgroup_mount_on_a_v2_host(bundle):
    """On a unified host, type "cgroup" is a cgroup2 mount (the host check is forced to
    say v2; cgroup2 itself is real here: the hybrid host has it at /sys/fs/cgroup/unified)."""
    from hutch.syscall import mountapi

    def pre():
        mountapi.statfs_type = lambda path: mountapi.CGROUP2_SUPER_MAGIC
    res = mounts_by_point(ok(run_in(bundle(["true"]), mountinfo_text, pre=pre)))
    cg = res["/sys/fs/cgroup"]
    assert cg.fstype == "cgroup2" and per_mount_ro(cg) and cg.root == "/"
    assert not any(p.startswith("/sys/fs/cgroup/") for p in res)


def test_rootfs_propagation_private(bundle):
    b = bundle(["true"], linux={"rootfsPropagation": "private"})
    res = mounts_by_point(ok(run_in(b, mountinfo_text)))
    assert not any(o.startswith(("shared:", "master:")) for o in res["/"].optional)


def test_rshared_root_under_a_shared_parent(bundle):
    # pivot_root refuses a shared parent mount: hutch makes the parent private first.
    b = bundle(["true"], linux={"rootfsPropagation": "rshared"})
    res = mounts_by_point(ok(run_in(b, mountinfo_text,
                                    pre=lambda: hs.mount(None, "/", None, hs.MS_SHARED | hs.MS_REC))))
    assert any(o.startswith("shared:") for o in res["/"].optional)


# --- the built-in host root -------------------------------------------------------------------

def test_builtin_host_root(bundle, tmp_path):
    b = bundle(["true"], root={"path": "hutch:host", "readonly": True})
    spec = load_spec(b)
    spec["root"]["path"] = "hutch:host"

    def probe():
        py = subprocess.run(["/usr/bin/python3", "-c",
                             "import os,sys; print(sys.version_info[0], os.path.isdir('/usr/lib'))"],
                            capture_output=True, text=True, timeout=60)
        return {"py": [py.returncode, py.stdout.strip(), py.stderr[-300:]],
                "tmp": try_write("/tmp/x"), "vartmp": try_write("/var/tmp/x"), "run": try_write("/run/x"),
                "usr": try_write("/usr/x"), "etc": try_write("/etc/hutch-test-x"), "root": try_write("/x"),
                "ls": sorted(os.listdir("/")), "home": os.listdir("/root"),
                "bin": os.path.islink("/bin") and os.readlink("/bin")}
    c = Container(spec, str(b))
    try:
        res = ok(c.start(probe))
        assert not any(".hostroot" in m.mount_point for m in read_mountinfo())  # private to the container
    finally:
        c.stop()
    assert res["py"][:2] == [0, "3 True"], res["py"]
    assert [res["tmp"], res["vartmp"], res["run"]] == ["ok", "ok", "ok"]
    assert [res["usr"], res["etc"], res["root"]] == ["EROFS", "EROFS", "EROFS"]
    assert {"usr", "etc", "tmp", "proc", "dev", "sys", "root", "home"} <= set(res["ls"])
    assert "work" not in res["ls"] and res["home"] == []
    if os.path.islink("/bin"):
        assert res["bin"] == os.readlink("/bin")
    assert not os.path.exists("/tmp/x") or True  # host /tmp is not the container's
    assert not os.path.exists("/etc/hutch-test-x")


# --- user namespaces ----------------------------------------------------------------------------

def test_user_namespace_binds_devices_and_keeps_locked_flags(bundle, rootfs):
    os.chmod(rootfs.parent, 0o755)
    b = bundle(["true"])
    spec = load_spec(b)
    spec["linux"]["namespaces"].append({"type": "user"})

    def probe():
        m = mounts_by_point(mountinfo_text())
        return {"null_mounted": "/dev/null" in m, "null": _dev_listing()["null"],
                "root": try_write("/x"), "keys": open("/proc/keys").read(),
                "sys": m["/sys"].fstype, "sys_ro": per_mount_ro(m["/sys"])}
    res = ok(Container(spec, str(b), userns=True).run(probe))
    assert res["null_mounted"] and res["null"][1:3] == [1, 3]
    assert res["root"] == "EROFS" and res["keys"] == "" and res["sys"] == "sysfs" and res["sys_ro"]


def test_user_namespace_without_netns_binds_sys(bundle, rootfs):
    os.chmod(rootfs.parent, 0o755)
    b = bundle(["true"])
    spec = load_spec(b)
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    spec["linux"]["namespaces"].append({"type": "user"})
    res = ok(Container(spec, str(b), userns=True, flags=CONTAINER_NS & ~hs.CLONE_NEWNET).run(
        lambda: [try_write("/sys/kernel/x"), os.path.isdir("/sys/kernel")]))
    assert res == ["EROFS", True]


def test_builtin_host_root_does_not_double_mount_spec_paths(bundle):
    b = bundle(["true"])
    spec = load_spec(b)
    spec["root"] = {"path": "hutch:host", "readonly": False}
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
    points = [m.mount_point for m in parse_mountinfo(ok(Container(spec, str(b)).run(mountinfo_text)))]
    assert points.count("/tmp") == 1 and points.count("/run") == 1


def test_user_namespace_with_the_builtin_host_root(bundle):
    b = bundle(["true"])
    spec = load_spec(b)
    spec["root"]["path"] = "hutch:host"
    spec["linux"]["namespaces"].append({"type": "user"})

    def probe():
        py = subprocess.run(["/usr/bin/python3", "-c", "print(6*7)"], capture_output=True, text=True, timeout=60)
        return [py.stdout.strip(), try_write("/tmp/x"), try_write("/usr/x"), try_write("/x")]
    assert ok(Container(spec, str(b), userns=True).run(probe)) == ["42", "ok", "EROFS", "EROFS"]


# --- differential: runc on the same bundle ---------------------------------------------------------

def _normalise(text: str) -> set[tuple[str, str, bool]]:
    return {(m.mount_point, m.fstype, per_mount_ro(m)) for m in parse_mountinfo(text)}


@pytest.mark.peer
def test_same_mount_table_as_runc(bundle, runc_bin, rootfs):
    b = bundle(["cat", "/proc/self/mountinfo"])
    cid = f"hutch-test-fs-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([runc_bin, "run", "--bundle", str(b), cid], capture_output=True, text=True,
                          timeout=60)
    subprocess.run([runc_bin, "delete", "--force", cid], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    theirs = _normalise(proc.stdout)
    ours = _normalise(ok(run_in(b, mountinfo_text)))
    # runc 1.1 leaves the cgroup tmpfs writable despite "ro"; hutch makes it read-only.
    theirs = {(p, t, True if (p, t) == ("/sys/fs/cgroup", "tmpfs") else ro) for p, t, ro in theirs}
    assert ours == theirs, f"only hutch: {sorted(ours - theirs)}; only runc: {sorted(theirs - ours)}"


@pytest.mark.peer
def test_same_dev_as_runc(bundle, runc_bin):
    b = bundle(["ls", "-ln", "/dev"])
    cid = f"hutch-test-fs-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([runc_bin, "run", "--bundle", str(b), cid], capture_output=True, text=True,
                          timeout=60)
    subprocess.run([runc_bin, "delete", "--force", cid], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    theirs = {}
    for line in proc.stdout.splitlines()[1:]:
        parts = line.split()
        name = parts[-3] if parts[0].startswith("l") else parts[-1]
        theirs[name] = parts[0][0] + parts[0][1:10]
    ours = {name: v for name, v in ok(run_in(b, lambda: {
        n: stat.filemode(os.lstat("/dev/" + n).st_mode) for n in os.listdir("/dev")})).items()}
    assert ours == theirs
