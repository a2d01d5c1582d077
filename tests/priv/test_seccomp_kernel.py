"""Compiled seccomp filters loaded into the real kernel, observed from a forked child."""

from __future__ import annotations

import errno
import json
import os
import platform

import pytest

from hutch.errors import SysCallError
from hutch import syscall as hsys
from hutch.security import seccomp as sc
from hutch.security.process import finalize_process, prepare_process
from test_security_process import BUSYBOX, exec_in_child, in_child, open_dir, status_fields  # noqa: F401

pytestmark = [pytest.mark.priv,
              pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"),
                                 reason="no syscall table for this machine")]

DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]}

PERSONALITY_ONLY_QUERY = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM,
     "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_NE"}]}]}


def test_install_filter_denies_mkdir_with_errno_ret(tmp_path):
    def child():
        hsys.prctl(hsys.PR_SET_NO_NEW_PRIVS, 1)
        sc.install_filter(sc.compile_filter(DENY_MKDIR))
        try:
            os.mkdir(tmp_path / "denied")
        except OSError as err:
            return [err.errno, status_fields()["Seccomp"]]
        return None
    assert in_child(child) == [errno.EACCES, "2"]
    assert not (tmp_path / "denied").exists()


@pytest.mark.parametrize("nnp", [True, False])
def test_finalize_installs_the_filter_with_and_without_no_new_privs(open_dir, nnp):
    """Without no_new_privs and without CAP_SYS_ADMIN in the final sets the kernel
    only accepts the filter because finalize loads it while the runtime still has it."""
    process = {"user": {"uid": 1000, "gid": 1000}, "noNewPrivileges": nnp,
               "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}}
    script = ("grep -E 'Seccomp|NoNewPrivs|CapEff' /proc/self/status; "
              f"mkdir {open_dir}/d; echo rc=$?")

    def setup(linux):
        prepare_process(process, linux)
        finalize_process(process, linux)
    # Control: the same identity without the filter may create the directory.
    code, out = exec_in_child(lambda: setup({}), [BUSYBOX, "sh", "-c", script])
    assert "rc=0" in out and os.path.isdir(f"{open_dir}/d"), out
    os.rmdir(f"{open_dir}/d")
    code, out = exec_in_child(lambda: setup({"seccomp": DENY_MKDIR}),
                              [BUSYBOX, "sh", "-c", script])
    assert "SETUP FAILED" not in out, out
    status = status_fields(out)
    assert status["Seccomp"] == "2" and status["Seccomp_filters"] == "1"
    assert status["NoNewPrivs"] == ("1" if nnp else "0")
    assert "Permission denied" in out and "rc=1" in out
    assert not os.path.exists(f"{open_dir}/d")


def test_argument_filter_on_personality():
    def child():
        hsys.prctl(hsys.PR_SET_NO_NEW_PRIVS, 1)
        sc.install_filter(sc.compile_filter(PERSONALITY_ONLY_QUERY))
        current = hsys.personality(0xFFFFFFFF)  # the query form: allowed
        try:
            hsys.personality(0x0008)             # a change: denied
        except SysCallError as err:
            return [current, err.errno]
        return [current, None]
    current, err = in_child(child)
    assert err == errno.EPERM
    assert current & 0xFF == 0


def test_python_runs_under_an_argument_filter(tmp_path):
    """A whole Python interpreter under the filter: the query works, the change fails."""
    script = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              "libc.personality.argtypes = [ctypes.c_ulong]\n"
              "print(libc.personality(0xffffffff) & 0xff)\n"
              "print(libc.personality(8), ctypes.get_errno())\n")
    import sys

    def setup():
        finalize_process({"noNewPrivileges": True,
                          "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "permitted")}},
                         {"seccomp": PERSONALITY_ONLY_QUERY})
    code, out = exec_in_child(setup, [sys.executable, "-I", "-S", "-c", script])
    assert code == 0, out
    assert out.split() == ["0", "-1", str(errno.EPERM)]


def test_default_deny_profile_from_containers_common(tmp_path):
    """The engines' default profile (caps-conditional rules left out): busybox works,
    chroot(2) is refused although the process has CAP_SYS_CHROOT."""
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("containers-common's seccomp.json is not installed")
    with open(path) as f:
        source = json.load(f)
    calls = [{k: v for k, v in c.items() if k in ("names", "action", "args", "errnoRet")}
             for c in source["syscalls"] if applies_without_caps(c)]
    profile = {"defaultAction": source["defaultAction"],
               "defaultErrnoRet": source.get("defaultErrnoRet"), "syscalls": calls}
    process = {"noNewPrivileges": True,
               "capabilities": {k: ["CAP_SYS_CHROOT", "CAP_KILL"]
                                for k in ("bounding", "effective", "permitted")}}
    script = f"echo hello; mkdir {tmp_path}/x && echo made; chroot / true; echo chroot=$?"

    def without_filter():
        finalize_process(process, {})

    def with_filter():
        finalize_process(process, {"seccomp": profile})
    _, out = exec_in_child(without_filter, [BUSYBOX, "sh", "-c", script])
    assert "chroot=0" in out, out
    os.rmdir(tmp_path / "x")
    _, out = exec_in_child(with_filter, [BUSYBOX, "sh", "-c", script])
    assert "hello" in out and "made" in out, out
    assert "chroot=" in out and "chroot=0" not in out, out
    assert "Operation not permitted" in out


def applies_without_caps(rule: dict) -> bool:
    """Would an engine put this rule in the profile of a process with no extra caps on
    this machine?  (The includes/excludes filtering docker/podman do before runc.)"""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if includes.get("caps") or includes.get("minKernel"):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    return arch not in (excludes.get("arches") or [])


def test_notify_action_is_refused_before_anything_changes():
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    with pytest.raises(Exception) as info:
        in_child(finalize_process, {"noNewPrivileges": True}, {"seccomp": profile})
    assert info.value.where == "linux.seccomp.syscalls[0].action"
