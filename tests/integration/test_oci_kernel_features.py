"""Kernel features of config.json that runc 1.1.5 lacks or handles differently (issue 10):
what the container sees, next to runc 1.1.5 (and crun 1.8 where runc 1.1.5 lacks the
feature), with the differences written down where hutch follows newer runc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.oci import Runtime, oci, ref_oci, new_id, runtimes  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

FIRST_POLICY = ["sh", "-c", "head -n 1 /proc/self/numa_maps | cut -d ' ' -f 2"]


def online_nodes() -> str:
    return Path("/sys/devices/system/node/online").read_text().strip()


# -- linux.memoryPolicy ------------------------------------------------------------------------
@pytest.mark.parametrize("policy, shown", [
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]},
     "prefer=relative:0"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_DEFAULT"}, "default"),
])
def test_memory_policy_is_applied(oci, ref_oci, bundle, policy, shown):
    """The policy the kernel reports for the container's first mapping (what runc 1.3's
    own tests read). runc 1.1.5 has no memoryPolicy: it ignores the field."""
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy (runc 1.3 applies it)")
    b = bundle(FIRST_POLICY, linux={"memoryPolicy": policy})
    res = oci.run(new_id(), b)
    assert (res.returncode, res.stdout.strip()) == (0, shown), res.stderr
    if ref_oci is not None:
        res = ref_oci.run(new_id(), b)
        assert (res.returncode, res.stdout.strip()) == (0, "default"), res.stderr


def test_memory_policy_reaches_exec(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy")
    cid = new_id()
    b = bundle(["sleep", "30"], linux={"memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0"}})
    assert oci.create(cid, b).returncode == 0
    res = oci.exec(cid, *FIRST_POLICY)
    assert (res.returncode, res.stdout.strip()) == (0, "interleave:0"), res.stderr


@pytest.mark.parametrize("policy, where", [
    ({"mode": "MPOL_BOGUS"}, "linux.memoryPolicy.mode"),
    ({"nodes": "0"}, "linux.memoryPolicy.mode"),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0-x"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "3-1"}, "linux.memoryPolicy.nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_BOGUS"]},
     "linux.memoryPolicy.flags[0]"),
    ({"mode": "MPOL_BIND", "nodes": "0",
      "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}, "linux.memoryPolicy.flags"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
     "linux.memoryPolicy.flags"),
])
def test_invalid_memory_policy_is_refused_at_validation(oci, bundle, tmp_path, policy, where):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy")
    cid = new_id()
    res = oci.create(cid, bundle(["true"], linux={"memoryPolicy": policy}))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and where + ":" in res.stderr, res.stderr
    assert oci.status(cid) is None     # nothing half-created


def test_memory_policy_on_a_missing_node_names_the_online_ones(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 ignores linux.memoryPolicy")
    missing = max(int(part.split("-")[-1]) for part in online_nodes().split(",")) + 1
    cid = new_id()
    res = oci.run(cid, bundle(["true"], linux={"memoryPolicy": {"mode": "MPOL_BIND",
                                                                "nodes": str(missing)}}))
    assert res.returncode == 1
    assert "linux.memoryPolicy" in res.stderr and f"online here: {online_nodes()}" in res.stderr
