"""The state is the truth: what a container owns is recorded before it is made and undone
on delete, also after a crash; exec, kill, delete and hooks use the config the container
was created with, never the bundle's; a damaged state or config fails closed.

The exec tests run against runc too (HUTCH_TEST_RUNTIME=/usr/sbin/runc), which keeps its
config in its state the same way; the crash and damage tests are hutch's own (they use
its fault-injection switch and its state layout)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers.oci import cgroups_named, new_id, oci, processes_mentioning, ref_oci, stderr_lines, wait_gone  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CAP_SYS_ADMIN = 21
# mkdir refused with EPERM: whether an exec runs under the container's filter shows.
SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
PROBE = ("grep -E '^(Seccomp|CapEff):' /proc/self/status; "
         "mkdir /tmp/probe-dir 2>/dev/null && echo mkdir-allowed || echo mkdir-refused")


def _cap_eff(text: str) -> int:
    return int(next(line for line in text.splitlines() if line.startswith("CapEff")).split()[1], 16)


@pytest.fixture
def confined(oci, bundle):
    """A running container with a seccomp filter and the default capabilities."""
    cid = new_id()
    b = bundle(["sleep", "1000"], root={"readonly": False}, linux={"seccomp": SECCOMP})
    assert oci.create(cid, b).returncode == 0
    assert oci.start(cid).returncode == 0
    return cid, b


def _looser(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    config["linux"].pop("seccomp", None)
    config["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN", "CAP_KILL"] for k in
                                         ("bounding", "effective", "permitted")}
    config_path.write_text(json.dumps(config))


def _assert_confined(res) -> None:
    assert res.returncode == 0, res.stderr
    assert "Seccomp:\t2" in res.stdout
    assert not _cap_eff(res.stdout) & (1 << CAP_SYS_ADMIN)
    assert "mkdir-refused" in res.stdout


def test_exec_keeps_the_created_config_when_the_bundle_is_rewritten(oci, confined):
    cid, b = confined
    _looser(b / "config.json")
    res = oci.exec(cid, "sh", "-c", PROBE)
    if oci.is_runc:
        # runc 1.1.5 reads the bundle's config.json again at exec: the rewritten file's
        # CAP_SYS_ADMIN reaches the exec'd process (its seccomp filter stays).  hutch
        # uses the config the container was created with.
        assert res.returncode == 0 and _cap_eff(res.stdout) & (1 << CAP_SYS_ADMIN)
        return
    _assert_confined(res)


def test_exec_keeps_the_created_config_when_the_bundle_is_gone(oci, confined):
    cid, b = confined
    (b / "config.json").unlink()
    res = oci.exec(cid, "sh", "-c", PROBE)
    if oci.is_runc:
        assert res.returncode != 0 and "config.json not found" in res.stderr   # runc 1.1.5
    else:
        _assert_confined(res)
    res = oci.kill(cid, "KILL")
    assert res.returncode == 0, res.stderr
    assert oci.wait_status(cid, "stopped") == "stopped"
    assert oci.delete(cid).returncode == 0


# -- hutch's own state layout from here on ---------------------------------------------------

@pytest.fixture
def hutch_oci(oci):
    if oci.is_runc:
        pytest.skip("hutch's state layout and fault switch")
    return oci


def _assert_nothing_left(oci, cid: str) -> None:
    assert not (Path(oci.root) / cid).exists()
    assert not (Path(oci.root) / f".{cid}.lock").exists()
    assert cgroups_named(cid) == []
    for pid in processes_mentioning(cid):
        assert wait_gone(pid, timeout=5), f"process {pid} of {cid} still runs"


def test_saved_config_damaged_exec_refuses_and_force_delete_still_cleans(hutch_oci, bundle):
    cid = new_id()
    b = bundle(["sleep", "1000"], linux={"resources": {"memory": {"limit": 64 << 20}}})
    assert hutch_oci.create(cid, b).returncode == 0
    assert hutch_oci.start(cid).returncode == 0
    saved = Path(hutch_oci.root) / cid / "config.json"
    saved.write_text('{"ociVersion": "1.0.2", "process": {')
    res = hutch_oci.exec(cid, "true")
    assert res.returncode == 1
    lines = stderr_lines(res)
    assert len(lines) == 1 and "saved config" in lines[0] and "config.json" in lines[0], res.stderr
    assert hutch_oci.status(cid) == "running"
    saved.unlink()
    res = hutch_oci.exec(cid, "true")
    assert res.returncode == 1 and len(stderr_lines(res)) == 1, res.stderr
    assert hutch_oci.delete(cid).returncode == 1              # running, and no config for hooks
    res = hutch_oci.delete(cid, force=True)
    assert res.returncode == 0, res.stderr
    _assert_nothing_left(hutch_oci, cid)


def test_damaged_state_is_listed_with_a_warning_and_force_delete_removes_what_it_owns(hutch_oci, bundle):
    cid = new_id()
    b = bundle(["sleep", "1000"], linux={"resources": {"memory": {"limit": 64 << 20}}})
    assert hutch_oci.create(cid, b).returncode == 0
    assert hutch_oci.start(cid).returncode == 0
    assert cgroups_named(cid)
    (Path(hutch_oci.root) / cid / "state.json").write_text("{\"id\": \"" + cid + "\", \"pid\": ")
    res = hutch_oci.list()
    assert res.returncode == 0 and cid in res.stdout and "unknown" in res.stdout
    assert len(stderr_lines(res)) == 1 and "warning" in res.stderr and cid in res.stderr
    for verb in (("state", cid), ("kill", cid, "KILL"), ("delete", cid)):
        res = hutch_oci.cmd(*verb)
        assert res.returncode == 1 and len(stderr_lines(res)) == 1 and "unreadable" in res.stderr, verb
    res = hutch_oci.delete(cid, force=True)
    assert res.returncode == 0, res.stderr
    _assert_nothing_left(hutch_oci, cid)


def test_entries_written_but_never_made_are_cleaned_without_error(hutch_oci, tmp_path):
    """A crash between writing an entry and making the thing: undo finds nothing, quietly."""
    cid = new_id()
    directory = Path(hutch_oci.root) / cid
    directory.mkdir(parents=True)
    (directory / "state.json").write_text(json.dumps(
        {"id": cid, "bundle": str(tmp_path), "status": "creating", "pid": 0}))
    never = tmp_path / "never-made"
    entries = [{"kind": "cgroup", "driver": "v1", "name": f"hutch/{cid}",
                "paths": {"memory": f"/sys/fs/cgroup/memory/hutch/{cid}"}, "created": []},
               {"kind": "process", "pid": 2 ** 22 - 3, "start": 1},
               {"kind": "file", "key": f"file:{never}", "path": str(never)},
               {"kind": "mount", "key": f"mount:{never}", "path": str(never)}]
    (directory / "owned.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    res = hutch_oci.delete(cid, force=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    _assert_nothing_left(hutch_oci, cid)


def _create_steps() -> list[str]:
    from hutch.faults import STEPS
    return [s for s in STEPS if s.startswith("create.")]


@pytest.mark.parametrize("step", _create_steps())
def test_create_killed_at_each_step_leaves_what_delete_force_removes(hutch_oci, bundle, tmp_path, step):
    """SIGKILL at every step of create (the list comes from the code), with a cgroup, a
    prestart hook (so the setup stage runs) and a pid file; then delete --force."""
    cid = new_id()
    hook_log = tmp_path / "hooks.log"
    b = bundle(["sleep", "1000"],
               linux={"resources": {"memory": {"limit": 64 << 20}, "pids": {"limit": 64}}},
               hooks={"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo prestart >> {hook_log}"]}]})
    mounts_before = Path("/proc/self/mountinfo").read_text().count("\n")
    res = hutch_oci.create(cid, b, "--pid-file", str(tmp_path / "pid"),
                           env=dict(os.environ, HUTCH_FAULT=step))
    assert res.returncode == -9, (step, res.returncode, res.stderr)
    res = hutch_oci.list()
    assert res.returncode == 0 and "Traceback" not in res.stderr
    res = hutch_oci.delete(cid, force=True)
    assert res.returncode == 0, (step, res.stderr)
    assert "Traceback" not in res.stderr
    _assert_nothing_left(hutch_oci, cid)
    assert Path("/proc/self/mountinfo").read_text().count("\n") == mounts_before


def test_delete_killed_half_way_is_finished_by_the_next(hutch_oci, bundle):
    cid = new_id()
    b = bundle(["sleep", "1000"], linux={"resources": {"memory": {"limit": 64 << 20}}})
    assert hutch_oci.create(cid, b).returncode == 0
    assert hutch_oci.start(cid).returncode == 0
    res = hutch_oci.cmd("delete", "--force", cid, env=dict(os.environ, HUTCH_FAULT="delete.undone"))
    assert res.returncode == -9
    assert (Path(hutch_oci.root) / cid).exists() and cgroups_named(cid) == []
    assert hutch_oci.delete(cid, force=True).returncode == 0
    _assert_nothing_left(hutch_oci, cid)


def test_the_journal_names_the_cgroup_and_process_before_start(hutch_oci, bundle):
    cid = new_id()
    b = bundle(["sleep", "1000"], linux={"resources": {"memory": {"limit": 64 << 20}}})
    assert hutch_oci.create(cid, b).returncode == 0
    lines = (Path(hutch_oci.root) / cid / "owned.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in lines]
    # the process is named as soon as it exists; its cgroup is made (and named) while it
    # builds its root filesystem, before it joins it
    assert kinds[0] == "process" and "cgroup" in kinds
    pid = hutch_oci.state_json(cid)["pid"]
    assert any(json.loads(line).get("pid") == pid for line in lines)
    assert hutch_oci.delete(cid, force=True).returncode == 0
    _assert_nothing_left(hutch_oci, cid)


@pytest.mark.parametrize("damage", [b"\xff\xfe not utf-8", b"[]", b"{}", b"null",
                                    b'{"id": "ID", "bundle": "/", "pid": "1"}',
                                    b'{"id": "ID", "bundle": "/", "annotations": []}',
                                    b'{"id": "someone-else", "bundle": "/"}'])
def test_every_kind_of_damaged_state_is_one_line_and_force_delete_works(hutch_oci, bundle, damage):
    cid = new_id()
    assert hutch_oci.create(cid, bundle(["sleep", "1000"])).returncode == 0
    (Path(hutch_oci.root) / cid / "state.json").write_bytes(damage.replace(b"ID", cid.encode()))
    for verb in (("state", cid), ("kill", cid, "KILL"), ("exec", cid, "true")):
        res = hutch_oci.cmd(*verb)
        assert res.returncode == 1 and len(stderr_lines(res)) == 1, (verb, res.stderr)
    res = hutch_oci.list("json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["status"] == "unknown"
    assert hutch_oci.delete(cid, force=True).returncode == 0
    _assert_nothing_left(hutch_oci, cid)
