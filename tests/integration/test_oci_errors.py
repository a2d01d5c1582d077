"""Bad input: the runtime exits 1 (as runc does), prints one line, and leaves nothing:
no container in ``list``, no process, no cgroup, no mount."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers.oci import cgroups_named, oci, processes_mentioning, ref_oci, new_id, stderr_lines  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def host_mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


def assert_refused_cleanly(oci, cid: str, res, bundle_dir) -> None:
    assert res.returncode == 1, f"rc={res.returncode} stderr={res.stderr!r}"
    errors = [line for line in stderr_lines(res) if "level=warning" not in line]
    assert len(errors) == 1, f"expected one error line, got {res.stderr!r}"
    assert oci.ids() == [], f"left in list: {oci.ids()}"
    assert oci.state(cid).returncode != 0
    assert cgroups_named(cid) == []
    assert host_mounts_mentioning(str(bundle_dir)) == []
    assert processes_mentioning(cid) == []


def write_config(bundle_dir: Path, mutate) -> None:
    path = bundle_dir / "config.json"
    config = json.loads(path.read_text())
    mutate(config)
    path.write_text(json.dumps(config))


CASES = {
    "malformed-json": lambda b: (b / "config.json").write_text('{"ociVersion": "1.0.2", "process": '),
    "config-not-an-object": lambda b: (b / "config.json").write_text('["not", "an", "object"]'),
    "missing-rootfs": lambda b: write_config(b, lambda c: c["root"].update(path="/nonexistent/rootfs")),
    "args-missing": lambda b: write_config(b, lambda c: c["process"].pop("args")),
    "args-empty": lambda b: write_config(b, lambda c: c["process"].update(args=[])),
    "relative-cwd": lambda b: write_config(b, lambda c: c["process"].update(cwd="relative")),
    "bad-mount-type": lambda b: write_config(b, lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "nosuchfs", "source": "x"})),
    "bad-mount-source": lambda b: write_config(b, lambda c: c["mounts"].append(
        {"destination": "/mnt/b", "type": "bind", "source": "/nonexistent/src", "options": ["bind"]})),
    "program-not-found": lambda b: write_config(b, lambda c: c["process"].update(args=["/no/such/program"])),
    "apparmor-profile-without-apparmor": lambda b: write_config(
        b, lambda c: c["process"].update(apparmorProfile="hutch-no-such-profile")),
    "selinux-label-without-selinux": lambda b: write_config(
        b, lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_refused_cleanly(oci, ref_oci, bundle, case):
    b = bundle(["sleep", "1000"])
    CASES[case](b)
    cid = new_id()
    res = oci.create(cid, b)
    assert_refused_cleanly(oci, cid, res, b)
    if ref_oci is not None:  # differential: runc refuses the same bundle the same way
        ref_id = new_id()
        assert_refused_cleanly(ref_oci, ref_id, ref_oci.create(ref_id, b), b)


@pytest.mark.parametrize("case", ["bad-mount-type", "missing-rootfs"])
def test_bad_config_is_refused_by_run_too(oci, bundle, case):
    b = bundle(["true"])
    CASES[case](b)
    cid = new_id()
    res = oci.run(cid, b)
    assert_refused_cleanly(oci, cid, res, b)


def test_missing_bundle_directory(oci, tmp_path):
    cid = new_id()
    res = oci.create(cid, tmp_path / "no-such-bundle")
    assert_refused_cleanly(oci, cid, res, tmp_path / "no-such-bundle")


def test_unknown_oci_version_major(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 does not check ociVersion")
    b = bundle(["sleep", "1000"], ociVersion="2.0.0")
    cid = new_id()
    res = oci.create(cid, b)
    assert_refused_cleanly(oci, cid, res, b)
    assert "ociVersion" in res.stderr


def test_unknown_capability(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 ignores unknown capabilities with a warning")
    caps = {"bounding": ["CAP_KILL", "CAP_BOGUS"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
    b = bundle(["sleep", "1000"], process={"capabilities": caps})
    cid = new_id()
    res = oci.create(cid, b)
    assert_refused_cleanly(oci, cid, res, b)
    assert "CAP_BOGUS" in res.stderr and "capabilities" in res.stderr


def test_unknown_command_and_missing_id(oci):
    res = oci.cmd("no-such-command")
    assert res.returncode != 0
    for verb in ("start", "state", "delete", "kill"):
        res = oci.cmd(verb)
        assert res.returncode == 1, verb
        assert res.stdout == "" or "usage" in res.stdout.lower(), verb
