#!/usr/bin/env python3
"""Latency of changing a running container's limits: `hutch update` vs `runc update`,
and of the library path (create + apply + destroy) hutch's launcher uses.

Run as root from the repository: .venv/bin/python bench/cgroups_update.py [ROUNDS]
Needs runc and a busybox binary (/bin/busybox) for the runc container's rootfs.
Prints medians and the ratio hutch/runc (lower is better for hutch)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import hutch.cgroups as cg
from hutch.oci import state as st
from hutch.syscall import proc

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
HUTCH = os.path.join(os.path.dirname(sys.executable), "hutch")
RUNC = shutil.which("runc") or "/usr/sbin/runc"


def median_ms(cmd_or_fn, rounds=ROUNDS) -> float:
    times = []
    for i in range(rounds):
        t0 = time.perf_counter()
        if callable(cmd_or_fn):
            cmd_or_fn(i)
        else:
            subprocess.run(cmd_or_fn(i) if callable(cmd_or_fn) else cmd_or_fn, check=True,
                           stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def runc_container(tmp: str) -> tuple[str, str]:
    rootfs = os.path.join(tmp, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin", "sleep"))
    subprocess.run([RUNC, "spec"], cwd=tmp, check=True)
    with open(os.path.join(tmp, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sleep", "3600"]
    config["linux"]["cgroupsPath"] = f"/hutch-bench-runc-{uuid.uuid4().hex[:6]}"
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f)
    cid = f"hutch-bench-{uuid.uuid4().hex[:6]}"
    root = os.path.join(tmp, "runc-root")
    with open(os.devnull, "w") as null:
        subprocess.run([RUNC, "--root", root, "run", "-d", "--bundle", tmp, cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=null, stderr=null)
    return root, cid


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="hutch-bench-")
    runc_root = cid = None
    m = None
    child = None
    try:
        runc_root, cid = runc_container(tmp)
        # a hutch "container": a sleeping process in a hutch-made cgroup, recorded in a state dir
        hroot = os.path.join(tmp, "hutch-root")
        hid = "hutch-bench"
        m = cg.for_container(hid, f"/hutch-bench-{uuid.uuid4().hex[:6]}")
        m.create()
        child = subprocess.Popen(["sleep", "3600"])
        m.add_pid(child.pid)
        os.makedirs(os.path.join(hroot, hid))
        st.save(hroot, st.State(id=hid, bundle=tmp, pid=child.pid,
                                pid_start=proc.start_time(child.pid), status="running",
                                cgroup=m.to_state()))
        sizes = ["256m", "300m"]
        runc_ms = median_ms(lambda i: subprocess.run(
            [RUNC, "--root", runc_root, "update", "--memory", sizes[i % 2], "--pids-limit", "100", cid],
            check=True))
        hutch_ms = median_ms(lambda i: subprocess.run(
            [HUTCH, "--root", hroot, "update", "--memory", sizes[i % 2], "--pids-limit", "100", hid],
            check=True))
        print(f"update  runc {runc_ms:7.1f} ms   hutch {hutch_ms:7.1f} ms   ratio {hutch_ms / runc_ms:.2f}")

        resources = {"memory": {"limit": 256 << 20}, "cpu": {"shares": 512, "quota": 50000},
                     "pids": {"limit": 100}, "devices": [{"allow": False, "access": "rwm"}]}

        def lifecycle(i):
            lm = cg.for_container("b", f"/hutch-bench-lc-{i}")
            lm.create()
            lm.apply(resources)
            lm.destroy()
        lib_ms = median_ms(lifecycle)
        print(f"library create+apply+destroy (8 hierarchies + unified): {lib_ms:.2f} ms")
    finally:
        if child:
            child.kill()
            child.wait()
        if m:
            m.wait_empty()
            m.destroy()
        if cid:
            subprocess.run([RUNC, "--root", runc_root, "delete", "-f", cid], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
