"""The command-line surface engines rely on beyond the lifecycle verbs: ``--log`` /
``--log-format json`` (containerd's shim reads it), ``spec``, ``features``, and the rule
that no runtime process stays resident for a detached container."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers.oci import Runtime, oci, ref_oci, new_id  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def with_log(oci: Runtime, log: Path, fmt: str | None) -> Runtime:
    extra = ("--log", str(log)) + (("--log-format", fmt) if fmt else ())
    return Runtime(oci.path, oci.root, global_args=extra)


def test_log_json_records_the_error(oci, bundle, tmp_path):
    log = tmp_path / "log.json"
    b = bundle(["true"])
    config = json.loads((b / "config.json").read_text())
    config["root"]["path"] = "/nonexistent/rootfs"
    (b / "config.json").write_text(json.dumps(config))
    cid = new_id()
    res = with_log(oci, log, "json").create(cid, b)
    assert res.returncode == 1
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    errors = [r for r in records if r.get("level") == "error"]
    assert len(errors) == 1, records
    assert errors[0]["msg"] and "time" in errors[0]
    assert oci.ids() == []


def test_log_text_records_the_error(oci, tmp_path):
    log = tmp_path / "log.txt"
    res = with_log(oci, log, None).state(new_id())
    assert res.returncode == 1
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "level=error" in lines[0], lines


def test_log_json_global_options_before_every_verb(oci, bundle, tmp_path):
    """containerd's shim puts --root/--log/--log-format in front of every command."""
    log = tmp_path / "log.json"
    rt = with_log(oci, log, "json")
    cid = new_id()
    assert rt.create(cid, bundle(["sleep", "1000"])).returncode == 0
    assert rt.start(cid).returncode == 0
    assert json.loads(rt.state(cid).stdout)["status"] == "running"
    assert json.loads(rt.ps(cid, "json").stdout)
    assert rt.kill(cid, "9").returncode == 0
    assert rt.wait_status(cid, "stopped") == "stopped"
    assert rt.delete(cid).returncode == 0
    for line in log.read_text().splitlines() if log.exists() else []:
        json.loads(line)  # whatever it logged is JSON, one record per line


def test_spec_writes_a_runnable_config(oci, tmp_path, busybox_rootfs):
    res = oci.cmd("spec", "--bundle", str(tmp_path))
    assert res.returncode == 0, res.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["ociVersion"].startswith("1.")
    assert config["process"]["args"] == ["sh"]
    assert config["process"]["terminal"] is True
    assert config["root"] == {"path": "rootfs", "readonly": True}
    kinds = {ns["type"] for ns in config["linux"]["namespaces"]}
    assert {"pid", "network", "ipc", "uts", "mount"} <= kinds and "user" not in kinds
    # a second spec refuses to overwrite
    again = oci.cmd("spec", "--bundle", str(tmp_path))
    assert again.returncode == 1
    # and the generated config runs once it has a rootfs and no terminal
    shutil.copytree(busybox_rootfs, tmp_path / "rootfs", symlinks=True)
    config["process"].update(terminal=False, args=["echo", "spec-ok"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    run = oci.run(new_id(), tmp_path)
    assert (run.returncode, run.stdout) == (0, "spec-ok\n"), run.stderr


def test_spec_rootless_adds_a_user_namespace(oci, tmp_path):
    res = oci.cmd("spec", "--rootless", "--bundle", str(tmp_path))
    assert res.returncode == 0, res.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    kinds = {ns["type"] for ns in config["linux"]["namespaces"]}
    assert "user" in kinds and "network" not in kinds
    assert config["linux"]["uidMappings"] and config["linux"]["gidMappings"]


def test_features(oci):
    res = oci.cmd("features")
    assert res.returncode == 0, res.stderr
    features = json.loads(res.stdout)
    assert features["ociVersionMin"].startswith("1.")
    assert features["ociVersionMax"].startswith("1.")
    assert {"prestart", "createRuntime", "poststop"} <= set(features["hooks"])
    assert {"pid", "network", "mount", "user"} <= set(features["linux"]["namespaces"])
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]


def _cmdlines_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{entry}: {cmd}")
    return found


def test_no_runtime_process_stays_resident(oci, bundle):
    """After create+start of a detached container only the container's own process is
    left: no runtime monitor, and its parent is not a runtime process."""
    cid = new_id()
    assert oci.create(cid, bundle(["sleep", "1000"])).returncode == 0
    assert oci.start(cid).returncode == 0
    pid = oci.state_json(cid)["pid"]
    assert _cmdlines_mentioning(cid) == []
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1000"]
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        parent = f.read()
    assert os.path.basename(oci.path).encode() not in parent, parent


def test_kill_and_start_of_stopped_or_unknown_container_fail(oci, bundle):
    cid = new_id()
    assert oci.create(cid, bundle(["true"])).returncode == 0
    assert oci.start(cid).returncode == 0
    assert oci.wait_status(cid, "stopped") == "stopped"
    assert oci.kill(cid, "KILL").returncode == 1
    assert oci.start(cid).returncode == 1
    assert oci.start(new_id()).returncode == 1
    assert oci.kill(new_id(), "KILL").returncode == 1
