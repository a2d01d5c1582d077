"""Differential: the same process section and seccomp profile under `runc run` and
under hutch's prepare_process/finalize_process in a forked child must leave the
program with the same capability sets, no_new_privs, seccomp mode, limits and umask."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid

import pytest

from hutch.security.process import finalize_process, prepare_process
from test_security_process import exec_in_child, open_dir  # noqa: F401

pytestmark = [pytest.mark.priv, pytest.mark.peer]

FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
          "Seccomp_filters", "ulimit_n", "ulimit_Hn", "umask", "mkdir", "uid", "gid")
SCRIPT = ("cat /proc/self/status; echo ulimit_n: $(ulimit -n); echo ulimit_Hn: $(ulimit -Hn); "
          "echo umask: $(umask); echo uid: $(id -u); echo gid: $(id -g); "
          "mkdir made-here 2>/dev/null; echo mkdir: $?")
DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                            "errnoRet": errno.EACCES}]}
SOME = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID",
        "CAP_AUDIT_WRITE"]

CASES = {
    "runc-spec-defaults": {},
    "all-five-sets": {"process": {
        "capabilities": {"bounding": SOME, "effective": SOME[:3], "permitted": SOME[:4],
                         "inheritable": ["CAP_KILL", "CAP_CHOWN"], "ambient": ["CAP_KILL"]},
        "noNewPrivileges": False, "user": {"uid": 0, "gid": 0, "umask": 0o027},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192}]}},
    "non-root-with-ambient-and-seccomp": {
        "process": {"user": {"uid": 1000, "gid": 1000},
                    "capabilities": {"bounding": SOME, "effective": SOME, "permitted": SOME,
                                     "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}},
        "linux": {"seccomp": DENY_MKDIR}},
    "seccomp-without-no-new-privs": {
        "process": {"noNewPrivileges": False,
                    "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective",
                                                               "permitted")}},
        "linux": {"seccomp": DENY_MKDIR}},
    "no-capabilities-at-all": {"process": {"capabilities": None}},
}


def parse(output: str) -> dict[str, str]:
    values = {}
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in FIELDS:
            values[key.strip()] = value.strip()
    return values


def run_runc(runc_bin: str, bundle_dir, state_root) -> str:
    cid = f"hutch-sec-{uuid.uuid4().hex[:10]}"
    try:
        proc = subprocess.run([runc_bin, "--root", str(state_root), "run", "--bundle",
                               str(bundle_dir), cid], capture_output=True, text=True, timeout=60,
                              preexec_fn=lambda: os.umask(0o077))
    finally:
        subprocess.run([runc_bin, "--root", str(state_root), "delete", "--force", cid],
                       capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_hutch(config: dict, workdir) -> str:
    def setup():
        os.umask(0o077)
        os.chdir(workdir)
        prepare_process(config["process"], config["linux"])
        finalize_process(config["process"], config["linux"])
    # The host's static busybox: the rootfs copy sits under root-only pytest dirs.
    code, out = exec_in_child(setup, ["/bin/busybox", "sh", "-c", SCRIPT])
    assert code == 0, out
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_result_as_runc(case, bundle, rootfs, runc_bin, tmp_path, open_dir):
    overrides = dict(CASES[case])
    overrides["root"] = {"readonly": False}
    overrides["process"] = dict(overrides.get("process", {}), cwd="/tmp")
    bundle_dir = bundle(["sh", "-c", SCRIPT], **overrides)
    config = json.loads((bundle_dir / "config.json").read_text())

    theirs = parse(run_runc(runc_bin, bundle_dir, tmp_path / "runc-root"))
    ours = parse(run_hutch(config, open_dir))
    assert set(theirs) == set(FIELDS), theirs
    assert ours == theirs
