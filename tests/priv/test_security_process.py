"""prepare_process / finalize_process on the real kernel, each in a forked child that
reads back what the kernel reports (/proc/self/status, getrlimit, getresuid, ...)."""

from __future__ import annotations

import ctypes
import json
import os
import resource

import pytest

from hutch import syscall as hsys
from hutch.errors import ConfigError, HutchError
from hutch.security import caps as capmod
from hutch.security.process import finalize_process, prepare_process

pytestmark = pytest.mark.priv

BUSYBOX = "/bin/busybox"


def in_child(fn, *args):
    """Run fn in a forked child; return its JSON-able result or raise its error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            out = {"ok": fn(*args)}
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
            out = {"error": type(err).__name__, "message": str(err),
                   "where": getattr(err, "where", None)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = json.loads(f.read() or '{"error": "died", "message": "", "where": null}')
    os.waitpid(pid, 0)
    if "error" in out:
        raise ChildError(out["error"], out["message"], out["where"])
    return out["ok"]


class ChildError(Exception):
    def __init__(self, kind, message, where):
        super().__init__(f"{kind}: {where}: {message}")
        self.kind, self.message, self.where = kind, message, where


def exec_in_child(setup, argv) -> tuple[int, str]:
    """fork; setup() in the child; execve argv with stdout+stderr to a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            setup()
            os.execv(argv[0], argv)
        except BaseException as err:  # noqa: BLE001
            os.write(2, f"SETUP FAILED: {err}\n".encode())
        os._exit(99)
    os.close(w)
    with os.fdopen(r) as f:
        output = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.fixture
def open_dir():
    """A directory any uid can reach and write (pytest's tmp_path is root-only)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="hutch-sec-", dir="/tmp")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def status_fields(text: str | None = None) -> dict[str, str]:
    if text is None:
        with open("/proc/self/status") as f:
            text = f.read()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())
            if k.strip() in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                             "Seccomp", "Seccomp_filters", "Groups")}


def expected_status(sets: capmod.CapSets) -> dict[str, str]:
    return {k: f"{v:016x}" for k, v in sets.as_status().items()}


def have_cap(name: str) -> bool:
    return bool(hsys.capget()[1] >> capmod.CAPABILITIES[name] & 1)


# --- prepare_process -------------------------------------------------------------------

def test_rlimits_are_set():
    soft_nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    process = {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
                           {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                           {"type": "RLIMIT_NPROC", "soft": soft_nproc, "hard": soft_nproc}]}

    def child():
        prepare_process(process, {})
        return [resource.getrlimit(r) for r in
                (resource.RLIMIT_NOFILE, resource.RLIMIT_CORE, resource.RLIMIT_NPROC)]
    assert in_child(child) == [[512, 1000], [0, 0], [soft_nproc, soft_nproc]]


def test_rlimit_above_the_hard_limit_is_a_clear_error():
    if have_cap("CAP_SYS_RESOURCE"):
        pytest.skip("the runtime may raise hard limits here")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    process = {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]}
    with pytest.raises(ChildError) as info:
        in_child(prepare_process, process, {})
    assert info.value.where == "process.rlimits[0]"
    assert "CAP_SYS_RESOURCE" in info.value.message


def test_oom_score_adj():
    def child():
        prepare_process({"oomScoreAdj": 345}, {})
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read())
    assert in_child(child) == 345


@pytest.mark.parametrize("umask,expected", [(0o027, 0o027), (None, 0o022)])
def test_umask(umask, expected):
    def child():
        os.umask(0o077)
        user = {"uid": 0, "gid": 0} if umask is None else {"uid": 0, "gid": 0, "umask": umask}
        prepare_process({"user": user}, {})
        return os.umask(0)
    assert in_child(child) == expected


def test_io_priority():
    libc = ctypes.CDLL(None, use_errno=True)
    nr_ioprio_get = {"x86_64": 252, "aarch64": 31}[os.uname().machine]

    def child():
        prepare_process({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}}, {})
        return libc.syscall(nr_ioprio_get, 1, 0)
    assert in_child(child) >> 13 == 3  # IOPRIO_CLASS_IDLE


@pytest.mark.parametrize("policy,nice,expected", [("SCHED_BATCH", 5, os.SCHED_BATCH),
                                                  ("SCHED_IDLE", 0, os.SCHED_IDLE)])
def test_scheduler(policy, nice, expected):
    def child():
        prepare_process({"scheduler": {"policy": policy, "nice": nice}}, {})
        return [os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)]
    assert in_child(child) == [expected, nice]


def test_personality_linux32_shows_in_uname():
    code, out = exec_in_child(lambda: prepare_process({}, {"personality": {"domain": "LINUX32"}}),
                              [BUSYBOX, "uname", "-m"])
    assert code == 0, out
    assert out.strip() in ("i686", "armv8l", "armv7l")


def test_apparmor_profile_refused_without_apparmor():
    from hutch.security.process import apparmor_enabled
    if apparmor_enabled():
        pytest.skip("AppArmor is active on this host")
    with pytest.raises(ConfigError) as info:
        prepare_process({"apparmorProfile": "docker-default"}, {})
    assert info.value.where == "process.apparmorProfile"
    assert "apparmor is not enabled on this host" in str(info.value)


# --- finalize_process ----------------------------------------------------------------

CAPS_A = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SYS_ADMIN"]


@pytest.mark.parametrize("user,caps,nnp", [
    ({"uid": 0, "gid": 0}, {k: list(CAPS_A) for k in ("bounding", "effective", "permitted")}, True),
    ({"uid": 0, "gid": 0}, {"bounding": CAPS_A, "effective": CAPS_A[:2], "permitted": CAPS_A[:3],
                            "inheritable": ["CAP_KILL", "CAP_CHOWN"], "ambient": ["CAP_KILL"]}, False),
    ({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]},
     {"bounding": CAPS_A, "effective": ["CAP_CHOWN", "CAP_KILL"], "permitted": CAPS_A,
      "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}, True),
    ({"uid": 65534, "gid": 65534}, {}, True),
])
def test_identity_and_each_capability_set(user, caps, nnp):
    process = {"user": user, "capabilities": caps, "noNewPrivileges": nnp}

    def child():
        prepare_process(process, {})
        finalize_process(process, {})
        return {"status": status_fields(), "uid": os.getresuid(), "gid": os.getresgid(),
                "groups": sorted(os.getgroups())}
    got = in_child(child)
    want = capmod.from_process(process)
    status = got["status"]
    assert {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == \
        expected_status(want)
    assert status["NoNewPrivs"] == ("1" if nnp else "0")
    assert got["uid"] == [user["uid"]] * 3
    assert got["gid"] == [user["gid"]] * 3
    assert got["groups"] == sorted(user.get("additionalGids", []))


@pytest.mark.parametrize("uid,nnp", [(0, True), (0, False), (1000, True), (1000, False)])
def test_sets_after_exec_follow_the_kernel_rules(uid, nnp):
    caps = {"bounding": CAPS_A, "effective": CAPS_A[:3], "permitted": CAPS_A[:3],
            "inheritable": ["CAP_KILL", "CAP_CHOWN"], "ambient": ["CAP_KILL"]}
    process = {"user": {"uid": uid, "gid": uid}, "capabilities": caps, "noNewPrivileges": nnp}

    def setup():
        prepare_process(process, {})
        finalize_process(process, {})
    code, out = exec_in_child(setup, [BUSYBOX, "cat", "/proc/self/status"])
    assert code == 0, out
    status = status_fields(out)
    want = capmod.after_exec(capmod.from_process(process), uid, nnp)
    assert {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == \
        expected_status(want)


def test_ambient_without_inheritable_is_skipped_not_fatal():
    process = {"capabilities": {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"],
                                "effective": ["CAP_KILL"], "ambient": ["CAP_KILL"]}}

    def child():
        finalize_process(process, {})
        return status_fields()["CapAmb"]
    assert int(in_child(child), 16) == 0


def test_unavailable_capability_is_a_clear_error():
    if have_cap("CAP_SYS_RESOURCE"):
        pytest.skip("the runtime has every capability here")
    process = {"capabilities": {k: ["CAP_SYS_RESOURCE"] for k in ("bounding", "permitted")}}
    with pytest.raises(ChildError) as info:
        in_child(finalize_process, process, {})
    assert info.value.where == "process.capabilities.permitted"
    assert "CAP_SYS_RESOURCE" in info.value.message


def test_bad_config_changes_nothing():
    """Validation happens before the first change: the child keeps its identity."""
    process = {"user": {"uid": 1000, "gid": 1000}, "noNewPrivileges": True,
               "capabilities": {"effective": ["CAP_KILL"], "permitted": []}}

    def child():
        try:
            finalize_process(process, {})
        except HutchError as err:
            return [err.where, os.getuid(), status_fields()["NoNewPrivs"]]
        return None
    assert in_child(child) == ["process.capabilities.effective", 0, "0"]


def test_runtime_permitted_mask_is_what_the_kernel_reports():
    assert capmod.runtime_permitted_mask() == capmod.read_status_caps().permitted
