"""Conformance gaps closed against runc 1.1.5 (issue 10): the same bundle and command line
through hutch and runc, the outcomes compared.  Each test also states the behaviour it
expects, so it fails against a runtime that gets it wrong (HUTCH_TEST_RUNTIME=/usr/sbin/runc
proves the expectation is runc's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers.oci import Runtime, new_id, oci, ref_oci, runtimes  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def with_globals(rt: Runtime, *extra: str) -> Runtime:
    return Runtime(rt.path, rt.root, global_args=extra)


def set_config(bundle_dir: Path, mutate) -> Path:
    path = bundle_dir / "config.json"
    config = json.loads(path.read_text())
    mutate(config)
    path.write_text(json.dumps(config))
    return bundle_dir


# -- 1. --log with stdio read-only on /dev/null (containerd's CRI plugin, pod sandboxes) ----

def create_with_readonly_stdio(rt: Runtime, log: Path, cid: str, bundle_dir: Path) -> int:
    """`--log LOG --log-format json create` with fds 0, 1 and 2 open read-only on /dev/null."""
    argv = [rt.path, "--root", rt.root, "--log", str(log), "--log-format", "json",
            "create", "--bundle", str(bundle_dir), cid]
    with open(os.devnull, "rb") as ro:
        return subprocess.run(argv, stdin=ro, stdout=ro, stderr=ro, timeout=20).returncode


def test_create_error_reaches_the_json_log_when_stdio_is_read_only(oci, ref_oci, bundle, tmp_path):
    b = set_config(bundle(["true"]), lambda c: c["root"].update(path="/nonexistent/rootfs"))
    records = {}
    for rt in runtimes(oci, ref_oci):
        log = tmp_path / f"{rt.name}-log.json"
        cid = new_id()
        assert create_with_readonly_stdio(rt, log, cid, b) == 1, rt.name
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        assert len(lines) == 1, (rt.name, lines)
        record = json.loads(lines[0])
        # runc's (logrus) record: exactly these keys, in this order, compact JSON.
        assert list(record) == ["level", "msg", "time"], (rt.name, record)
        assert record["level"] == "error" and "/nonexistent/rootfs" in record["msg"], (rt.name, record)
        assert LOG_TIME.match(record["time"]), (rt.name, record)
        assert lines[0].startswith('{"level":"error","msg":'), (rt.name, lines[0])
        assert rt.ids() == [], rt.name
        records[rt.name] = record
    assert len(records) == len(runtimes(oci, ref_oci))


def test_create_succeeds_with_read_only_stdio(oci, ref_oci, bundle, tmp_path):
    """The same stdio on a good config: created, exit 0, nothing logged as an error."""
    b = bundle(["sleep", "1000"])
    for rt in runtimes(oci, ref_oci):
        log = tmp_path / f"{rt.name}-ok.json"
        cid = new_id()
        assert create_with_readonly_stdio(rt, log, cid, b) == 0, (rt.name, log.read_text())
        assert rt.status(cid) == "created", rt.name
        errors = [line for line in log.read_text().splitlines() if '"level":"error"' in line]
        assert errors == [], (rt.name, errors)
        assert rt.delete(cid, force=True).returncode == 0


# -- 2. --log-format and --log are checked before any command -------------------------------

@pytest.mark.parametrize("case", ["bad-format", "bad-format-equals", "log-unopenable",
                                  "log-is-a-directory"])
def test_bad_log_options_fail_every_verb(oci, ref_oci, tmp_path, case):
    extra = {
        "bad-format": ("--log-format", "xml"),
        "bad-format-equals": ("--log-format=yaml",),
        "log-unopenable": ("--log", str(tmp_path / "no" / "such" / "dir" / "log.json")),
        "log-is-a-directory": ("--log", str(tmp_path)),
    }[case]
    for rt in runtimes(oci, ref_oci):
        res = with_globals(rt, *extra).list()
        assert res.returncode == 1, (rt.name, res.stdout, res.stderr)
        assert res.stdout == "", (rt.name, res.stdout)
        assert res.stderr.strip(), rt.name


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_good_log_options_are_accepted_and_the_file_created(oci, ref_oci, tmp_path, fmt):
    for rt in runtimes(oci, ref_oci):
        log = tmp_path / f"{rt.name}-{fmt}.log"
        res = with_globals(rt, "--log", str(log), f"--log-format={fmt}").list()
        assert res.returncode == 0, (rt.name, res.stderr)
        assert log.exists() and oct(log.stat().st_mode & 0o777) == oct(0o644), rt.name


def test_text_log_record_matches_runc(oci, ref_oci, tmp_path):
    for rt in runtimes(oci, ref_oci):
        log = tmp_path / f"{rt.name}.txt"
        assert with_globals(rt, "--log", str(log)).state(new_id()).returncode == 1
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        assert len(lines) == 1, (rt.name, lines)
        assert re.match(r'^time="[^"]+" level=error msg="[^"]*does not exist"$', lines[0]), (rt.name, lines)


# -- 3. OCI `run` value flags in both spellings ----------------------------------------------

RUN_SPELLINGS = {
    "preserve-fds-space": lambda b, p: ["--preserve-fds", "0"],
    "preserve-fds-equals": lambda b, p: ["--preserve-fds=0"],
    "pid-file-space": lambda b, p: ["--pid-file", str(p)],
    "pid-file-equals": lambda b, p: [f"--pid-file={p}"],
    "bundle-short": lambda b, p: ["-b", str(b), "--preserve-fds", "0"],
    "bundle-long-equals": lambda b, p: [f"--bundle={b}", "--preserve-fds", "0"],
}


@pytest.mark.parametrize("case", sorted(RUN_SPELLINGS))
def test_oci_run_value_flags_in_both_spellings(oci, ref_oci, bundle, tmp_path, case):
    """From inside the bundle (as `runc run ID` is used), the flag value is no positional."""
    b = bundle(["true"])
    for rt in runtimes(oci, ref_oci):
        cid = new_id()
        pid_file = tmp_path / f"{rt.name}-{case}.pid"
        res = rt.cmd("run", *RUN_SPELLINGS[case](b, pid_file), cid, cwd=b)
        assert res.returncode == 0, (rt.name, res.stderr)
        if "pid-file" in case:
            assert pid_file.read_text().strip().isdigit(), rt.name
        rt.delete(cid, force=True)


def test_oci_run_preserve_fds_passes_the_fd(oci, ref_oci, bundle, tmp_path):
    b = bundle(["sh", "-c", "echo through-fd-3 >&3"])
    for rt in runtimes(oci, ref_oci):
        out = tmp_path / f"{rt.name}-fd3.txt"
        cid = new_id()
        # A shell opens fd 3 for the runtime (never dup2 over fds in the test process: pytest's).
        argv = ["sh", "-c", 'exec "$@" 3>"$OUT"', "sh", *rt.argv("run", "--preserve-fds", "1", cid)]
        res = subprocess.run(argv, cwd=b, env={**os.environ, "OUT": str(out)}, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, (rt.name, res.stderr)
        assert out.read_text() == "through-fd-3\n", rt.name
        rt.delete(cid, force=True)
