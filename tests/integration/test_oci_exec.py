"""`exec` into a running container, as conmon and containerd's shim use it."""

from __future__ import annotations

import json
import os
import re

import pytest

from helpers.oci import oci, ref_oci, new_id, process_alive, wait_gone  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CAP_KILL, CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN, CAP_AUDIT_WRITE = 5, 10, 21, 29
DEFAULT_MASK = (1 << CAP_KILL) | (1 << CAP_NET_BIND_SERVICE) | (1 << CAP_AUDIT_WRITE)


@pytest.fixture
def container(oci, bundle):
    """A running container (pid 1 sleeps) with a writable root; yields its id."""
    cid = new_id()
    b = bundle(["sleep", "1000"], root={"readonly": False})
    res = oci.create(cid, b)
    assert res.returncode == 0, res.stderr
    assert oci.start(cid).returncode == 0
    return cid


def cap_sets(status_text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16)
            for line in status_text.splitlines() if line.startswith("Cap")}


def test_exec_args_output_and_exit_code(oci, container):
    res = oci.exec(container, "sh", "-c", "echo hello; echo oops >&2; exit 5")
    assert res.returncode == 5
    assert res.stdout == "hello\n"
    assert "oops" in res.stderr


def test_exec_joins_every_namespace_of_the_container(oci, container):
    init_pid = oci.state_json(container)["pid"]
    kinds = ["mnt", "net", "ipc", "uts", "pid", "cgroup"]
    res = oci.exec(container, "sh", "-c", "for n in %s; do readlink /proc/self/ns/$n; done" % " ".join(kinds))
    assert res.returncode == 0, res.stderr
    inside = res.stdout.split()
    outside = [os.readlink(f"/proc/{init_pid}/ns/{k}") for k in kinds]
    assert inside == outside
    # and it is not the host's
    assert inside[1] != os.readlink("/proc/self/ns/net")


def test_exec_sees_the_container_root(oci, container, rootfs):
    (rootfs / "only-in-rootfs").write_text("yes\n")
    res = oci.exec(container, "cat", "/only-in-rootfs")
    assert (res.returncode, res.stdout) == (0, "yes\n")


def test_exec_process_file(oci, container, tmp_path):
    process = {
        "terminal": False,
        "user": {"uid": 65534, "gid": 65534},
        "args": ["sh", "-c", "echo $FOO; pwd; id -u; id -g; exit 3"],
        "env": ["PATH=/bin:/usr/bin", "FOO=from-process-file"],
        "cwd": "/tmp",
    }
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps(process))
    res = oci.exec(container, opts=("--process", str(pfile)))
    assert res.returncode == 3, res.stderr
    assert res.stdout.split() == ["from-process-file", "/tmp", "65534", "65534"]


def test_exec_env_cwd_user(oci, container):
    res = oci.exec(container, "sh", "-c", "echo $FOO $BAR; pwd; id -u; id -g",
                   opts=("--env", "FOO=foo", "--env", "BAR=bar", "--cwd", "/tmp", "--user", "1000:1001"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["foo", "bar", "/tmp", "1000", "1001"]


def test_exec_inherits_container_env_and_caps(oci, container):
    res = oci.exec(container, "sh", "-c", "echo $TERM; grep ^Cap /proc/self/status")
    assert res.returncode == 0, res.stderr
    first, _, rest = res.stdout.partition("\n")
    assert first == "xterm"
    caps = cap_sets(rest)
    assert caps["CapEff"] == DEFAULT_MASK
    assert caps["CapBnd"] == DEFAULT_MASK


def test_exec_cap_adds_a_capability(oci, container):
    res = oci.exec(container, "grep", "^Cap", "/proc/self/status", opts=("--cap", "CAP_SYS_ADMIN"))
    assert res.returncode == 0, res.stderr
    caps = cap_sets(res.stdout)
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[name] == DEFAULT_MASK | (1 << CAP_SYS_ADMIN), name


def test_exec_unknown_cap_is_reported(oci, container):
    """runc 1.1 warns and ignores an unknown capability; an error is fine too, silence not."""
    res = oci.exec(container, "true", opts=("--cap", "CAP_NOT_A_CAP"))
    assert "CAP_NOT_A_CAP" in res.stderr


def test_exec_detach_pid_file(oci, container, tmp_path):
    pid_file = tmp_path / "exec.pid"
    res = oci.exec(container, "sleep", "777", opts=("--detach", "--pid-file", str(pid_file)))
    assert res.returncode == 0, res.stderr
    pid = int(pid_file.read_text().strip())
    assert process_alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"777"]
    init_pid = oci.state_json(container)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init_pid}/ns/pid")
    # The detached process is killed with the container.
    assert oci.delete(container, force=True).returncode == 0
    assert wait_gone(pid)


def test_exec_into_unknown_or_stopped_container_fails(oci, bundle):
    assert oci.exec(new_id(), "true").returncode != 0
    cid = new_id()
    assert oci.create(cid, bundle(["true"])).returncode == 0
    assert oci.start(cid).returncode == 0
    assert oci.wait_status(cid, "stopped") == "stopped"
    res = oci.exec(cid, "echo", "never")
    assert res.returncode != 0
    assert "never" not in res.stdout


def test_exec_missing_program_fails(oci, container):
    res = oci.exec(container, "/no/such/program")
    assert res.returncode != 0


# umask left out: runc 1.1's exec ignores process.user.umask (it keeps 0022).
EXEC_PROBE = ("env | sort; id; pwd; grep -E '^(Cap|NoNewPrivs|Seccomp:|Groups)' /proc/self/status; "
              "cat /proc/self/oom_score_adj; grep -E 'open files|processes' /proc/self/limits; "
              "cat /proc/sys/kernel/hostname")


def test_exec_process_matches_runc(oci, ref_oci, bundle):
    """An exec'd process gets the container's process settings (env, user, cwd, caps,
    rlimits, oom score, no_new_privs): the same as runc gives it."""
    from helpers.oci import runtimes
    b = bundle(["sleep", "1000"], hostname="exec-host",
               process={"user": {"uid": 1000, "gid": 1000, "additionalGids": [10], "umask": 0o077},
                        "cwd": "/tmp", "env": ["PATH=/bin", "ONLY=config"], "oomScoreAdj": 300,
                        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 333, "hard": 444},
                                    {"type": "RLIMIT_NPROC", "soft": 555, "hard": 666}]})
    outs = []
    for rt in runtimes(oci, ref_oci):
        cid = new_id()
        assert rt.create(cid, b).returncode == 0
        assert rt.start(cid).returncode == 0
        res = rt.exec(cid, "sh", "-c", EXEC_PROBE)
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        outs.append(res.stdout)
        assert rt.delete(cid, force=True).returncode == 0
    out = outs[0]
    assert "ONLY=config" in out and "uid=1000 gid=1000 groups=10\n/tmp\n" in out
    assert "exec-host" in out
    assert re.search(r"Max open files\s+333\s+444\s", out), out
    if len(outs) == 2:
        # runc 1.1.5's exec now and then hands the process a soft NOFILE limit raised to
        # the hard one (its Go runtime raises its own at start, a race in runc, seen here
        # in about 1 run in 4): compare everything else.
        assert _without_nofile(outs[0]) == _without_nofile(outs[1])


def _without_nofile(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("Max open files"))
